"""Shared test setup: offline, one torch thread, deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

torch.set_num_threads(1)

import prefect.main  # noqa: E402, F401 (Prefect's logging set up now, on the session's streams)
import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from parammix_core.s3local import LocalS3  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """One real SeaweedFS S3 server on 127.0.0.1 for the whole session."""
    server = LocalS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: LocalS3) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return s3_server.bucket("test")


@pytest.fixture(scope="session")
def prefect_api():
    """One in-process Prefect API for every test of the session that runs flows (entering it
    takes ~15 s). Prefect is imported with this module, before any test captures the
    terminal, so its console handler writes to the session's streams, not a closed one."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
