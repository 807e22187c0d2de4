"""A real Prefect server (SQLite, or PostgreSQL), the project's deployments and a process worker.

One stack per database variant for the whole module; a micro run with one injected fault is
triggered once through the API and every test inspects it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings

from parammix_core.config import Experiment, apply_overrides, load_experiment
from tests.e2e.servers import ROOT, Server, postgres_cluster, prefect_server, process_worker

POOL = "parammix-process"
FAULT = "train_expert[math]"  # fails once, must be retried by the run


@dataclass
class Stack:
    server: Server
    workdir: Path
    timings: dict[str, float]


@dataclass
class FinishedRun:
    stack: Stack
    run: FlowRun
    exp: Experiment


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request, tmp_path_factory) -> Iterator[Stack]:
    """Server + work pool + `prefect deploy --all` + a worker, torn down even on failure."""
    workdir = tmp_path_factory.mktemp(f"e2e-{request.param}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        database_url = None
        if request.param == "postgresql":
            database_url = stack.enter_context(postgres_cluster(workdir))
            timings["postgres"] = time.perf_counter() - start
        server = stack.enter_context(prefect_server(workdir, database_url))
        timings["server"] = time.perf_counter() - start
        server.cli("work-pool", "create", POOL, "--type", "process")
        # Every deployment once (SQLite); the two the tests use on PostgreSQL, to save time.
        which = ["--all"]
        if request.param == "postgresql":
            which = ["--name", "on-demand", "--name", "weekly-full-run"]
        server.cli("deploy", *which, "--prefect-file", "deployments/prefect.yaml", timeout=300)
        timings["deployed"] = time.perf_counter() - start
        stack.enter_context(process_worker(server, POOL, workdir))
        timings["worker"] = time.perf_counter() - start
        stack.enter_context(temporary_settings({PREFECT_API_URL: server.url}))
        yield Stack(server, workdir, timings)
    print(f"\ne2e {request.param}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def micro_overrides(store: Path) -> list[str]:
    """The micro config without the real-training stages (the in-process flow test runs them):
    this test is about orchestration, and must stay within its time budget."""
    return ["validation.enabled=false", "final.enabled=false", f"store.url={store}"]


def micro(store: Path) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    return apply_overrides(exp, micro_overrides(store), "configs/micro.yaml")


@pytest.fixture(scope="module")
def finished_run(stack: Stack) -> FinishedRun:
    """param-mix/on-demand on the micro config, train_expert[math] failing its first attempt."""
    exp = micro(stack.workdir / "store")
    start = time.perf_counter()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("param-mix/on-demand")
        run = client.create_flow_run_from_deployment(
            deployment.id,
            # the short run form: a config file (relative to the worker's PARAMMIX_HOME) and
            # overrides, as `prefect deployment run --param config=configs/micro.yaml` sends
            parameters={
                "config": "configs/micro.yaml",
                "overrides": micro_overrides(stack.workdir / "store"),
            },
            job_variables={"env": {"PARAMMIX_FAIL_ONCE": FAULT}},
            name=f"e2e-micro-{stack.server.database}",
        )
        run = wait_final(client, run.id, timeout=300, log=stack.workdir / "worker.log")
    stack.timings["run"] = time.perf_counter() - start
    return FinishedRun(stack, run, exp)


def wait_final(client, run_id: UUID, timeout: float, log: Path) -> FlowRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(1)
    raise TimeoutError(
        f"flow run {run_id} not finished after {timeout:.0f} s\n{log.read_text()[-3000:]}"
    )
