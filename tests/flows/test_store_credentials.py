"""Store credentials from a Prefect Secret block; never from a config."""

from pathlib import Path

import pytest
import s3fs
from prefect.blocks.system import Secret

from flows.cli import main
from parammix_core.config import ConfigError, Experiment, parse_experiment
from parammix_core.store import ArtifactRef, StoreError
from tasks.common import block_credentials, open_store


@pytest.fixture
def no_env_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    block_credentials.cache_clear()


def test_credentials_from_a_prefect_secret_block(
    prefect_api, s3_server, s3_bucket: str, no_env_credentials, tmp_path: Path
):
    Secret(value={"key": s3_server.access_key, "secret": s3_server.secret_key}).save(
        "pm-store-credentials", overwrite=True
    )
    store_cfg = {
        "url": f"s3://{s3_bucket}/store",
        "storage_options": {"endpoint_url": s3_server.endpoint},
    }
    exp = parse_experiment({"store": store_cfg})
    with pytest.raises(StoreError, match="no credentials found"):
        _ = open_store(exp).id  # no block named, nothing in the environment
    exp = parse_experiment({"store": {**store_cfg, "credentials_block": "pm-store-credentials"}})
    store = open_store(exp)
    ref = ArtifactRef.for_spec("t", "block", {"v": 1})
    src = store.staging(ref)
    (src / "x.json").write_text("[1]")
    store.publish(ref, src)
    assert store.load_json(ref, "x.json") == [1]
    assert s3_server.secret_key not in exp.model_dump_json() + repr(store)


def test_a_secret_block_without_key_and_secret_is_refused(prefect_api, no_env_credentials):
    Secret(value="just-a-string").save("pm-bad-credentials", overwrite=True)
    exp = Experiment.model_validate({"store": {"credentials_block": "pm-bad-credentials"}})
    with pytest.raises(StoreError, match=r"pm-bad-credentials.*JSON with 'key' and 'secret'"):
        open_store(exp)


def test_a_missing_secret_block_names_the_field(prefect_api, no_env_credentials):
    exp = Experiment.model_validate({"store": {"credentials_block": "pm-no-such-block"}})
    with pytest.raises(
        StoreError, match=r"store\.credentials_block 'pm-no-such-block': no such Prefect Secret"
    ):
        open_store(exp)


@pytest.mark.parametrize(
    "options", [{"secret": "x"}, {"client_kwargs": {"aws_secret_access_key": "x"}}, {"key": "k"}]
)
def test_secrets_in_a_config_are_refused(options: dict):
    with pytest.raises(
        ConfigError, match=r"store\.storage_options: secrets are not accepted"
    ) as err:
        parse_experiment({"store": {"url": "s3://b/p", "storage_options": options}})
    assert "'x'" not in str(err.value)  # the value is never echoed


@pytest.mark.slow
def test_a_run_on_a_block_only_store_ends_with_its_summary(
    prefect_api, s3_server, s3_bucket: str, no_env_credentials, tmp_path: Path, capsys, monkeypatch
):
    """The flow completed, then `parammix run` opened the store for its summary without the
    block's keys: "no credentials found", exit 2 (audit 39)."""
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    Secret(value={"key": s3_server.access_key, "secret": s3_server.secret_key}).save(
        "pm-run-credentials", overwrite=True
    )
    sets = [
        f"store.url=s3://{s3_bucket}/run",
        f"store.storage_options={{endpoint_url: '{s3_server.endpoint}'}}",
        "store.credentials_block=pm-run-credentials",
        "validation.enabled=false",
        "final.enabled=false",
    ]
    argv = ["run", "--config", "micro", *(a for s in sets for a in ("--set", s))]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "\nchosen mixture: " in out and f"report: s3://{s3_bucket}/run/report/" in out
    assert s3_server.secret_key not in out
