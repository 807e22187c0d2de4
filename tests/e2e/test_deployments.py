"""The product as users run it: deployed flows, a worker, retries, artifacts, the UI, schedules."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateName,
)

from tasks.common import artifact_key
from tests.e2e.conftest import FAULT, FinishedRun, Stack
from tests.e2e.servers import BIN, ROOT, child, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1440,1100",
    "--virtual-time-budget=20000",
]


def test_run_completes_with_its_stages(finished_run: FinishedRun):
    run = finished_run.run
    assert run.state.name == "Completed", run.state
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    names = {t.name for t in tasks}
    for domain in finished_run.exp.domains:
        assert f"train_expert[{domain}]" in names
    n_batches = -(-finished_run.exp.search.n_mixtures // finished_run.exp.search.batch_size)
    assert {f"merge_and_evaluate[batch {i}]" for i in range(n_batches)} <= names
    # Completed, or Cached where the run asks the same question twice (e.g. a refit).
    assert all(t.state.is_completed() for t in tasks), {t.name: t.state.name for t in tasks}


def test_injected_fault_was_retried(finished_run: FinishedRun):
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[finished_run.run.id]))
        )
        faulty = next(t for t in tasks if t.name == FAULT)
        history = [s.name for s in client.read_task_run_states(faulty.id)]
    assert faulty.run_count == 2
    assert history[-3:] == ["AwaitingRetry", "Retrying", "Completed"], history
    others = [t for t in tasks if t.name != FAULT]
    assert all(t.run_count == 1 for t in others), {t.name: t.run_count for t in others}


def test_artifacts_published(finished_run: FinishedRun):
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[finished_run.run.id])
            )
        )
    named = artifact_key(finished_run.exp, "")  # each experiment keeps its own histories
    by_key = {a.key.removeprefix(named): a for a in artifacts if a.key}
    assert all(a.key.startswith(named) for a in artifacts if a.key), sorted(by_key)
    for key in ("domains", "evaluated-batch-0", "surrogate-fit", "chosen-mixture", "report"):
        assert key in by_key, sorted(by_key)
    assert "Chosen mixture" in by_key["report"].data
    progress = [a for a in artifacts if a.type == "progress"]
    unfinished = {
        f"{a.description} ({a.task_run_id})": a.data for a in progress if float(a.data) != 100.0
    }
    assert progress and not unfinished, unfinished
    images = by_key["report"].data.count("](data:image/png;base64,")
    assert images >= 3, images
    assert not [a.key for a in artifacts if not a.description]  # every card says what it is
    assert "summary" in by_key and "chosen mixture:" in by_key["summary"].data


def test_ui_shows_run(finished_run: FinishedRun):
    """Headless Chromium renders the run page (its DOM names the run and its state) and a
    figure artifact's page (the PNG is an image in the page)."""
    stack: Stack = finished_run.stack
    if stack.server.database != "sqlite":
        pytest.skip("the UI reads the same API on either database; checked once, on SQLite")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    flags = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={stack.workdir / 'chromium-profile'}"]

    def browse(page: str, *what: str) -> str:
        done = subprocess.run([*flags, *what, page], capture_output=True, text=True, timeout=120)
        return done.stdout

    def rendered(page: str, ready) -> str:
        """The page's DOM once `ready` holds, loaded up to three times: on a loaded machine
        the UI's API calls can outlast Chromium's virtual time budget (seen once in CI, with a
        default run beside it: the artifact page's DOM held no image yet)."""
        for _ in range(3):
            dom = browse(page, "--dump-dom")
            if ready(dom):
                break
        return dom

    page = f"{stack.server.ui}/runs/flow-run/{finished_run.run.id}"
    dom = rendered(page, lambda d: finished_run.run.name in d and "Completed" in d)
    assert finished_run.run.name in dom
    assert "Completed" in dom
    shot = stack.workdir / "flow-run.png"
    browse(page, f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[finished_run.run.id])
            )
        )
    report = next(a for a in artifacts if a.key == artifact_key(finished_run.exp, "report"))
    figure = f"{stack.server.ui}/artifacts/artifact/{report.id}"
    imgs = re.compile(r"<img[^>]+src=\"([^\"]+)\"")
    images = imgs.findall(rendered(figure, lambda d: len(imgs.findall(d)) >= 3))
    assert len(images) >= 3, images  # chosen mixture, surrogate fit, landscapes, probe
    broken = [src[:80] for src in images if not loadable_image(src)]
    assert broken == [], broken

    keep = os.environ.get("PARAMMIX_E2E_SCREENSHOTS")  # e.g. /tmp/shots, to refresh the docs
    if keep:
        shutil.copy(shot, Path(keep) / "flow-run.png")
        browse(figure, f"--screenshot={Path(keep) / 'artifact-landscape.png'}")


def loadable_image(src: str) -> bool:
    """Would a browser show this `<img src>`: a valid PNG data URI, or an http(s) URL that
    answers with an image (never a path on the worker's disk or a relative store path)."""
    if src.startswith("data:image/png;base64,"):
        data = base64.b64decode(src.split(",", 1)[1])
        return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    if src.startswith(("http://", "https://")):
        answer = httpx.get(src, timeout=30)
        return answer.status_code == 200 and answer.headers["content-type"].startswith("image/")
    return False


def test_parameters_validated(stack: Stack):
    """The experiment config is the deployment's parameter schema: bad values are refused."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("param-mix/on-demand")
        schema = deployment.parameter_openapi_schema
        assert "exp" in schema["properties"]
        with pytest.raises(Exception, match=r"exp\.search\.n_mixtures"):
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"exp": {"search": {"n_mixtures": 0}}}
            )


def test_cron_deployment_has_scheduled_runs(stack: Stack):
    with get_client(sync_client=True) as client:
        weekly = client.read_deployment_by_name("param-mix/weekly-full-run")
        assert [s.schedule.cron for s in weekly.schedules] == ["0 2 * * 0"]
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[weekly.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"]))
            ),
        )
    assert len(runs) >= 3
    times = sorted(r.expected_start_time for r in runs)
    assert all(t.weekday() == 6 and t.hour == 2 and t.minute == 0 for t in times)


def test_parammix_serve_registers_its_deployments(stack: Stack):
    """`parammix serve` against the real server: its deployments appear with the config."""
    if stack.server.database != "sqlite":
        pytest.skip("the serve path does not depend on the server's database")
    cmd = [str(BIN / "parammix"), "serve", "--config", "configs/micro.yaml", "--weekly", "none"]
    log = stack.workdir / "serve.log"
    with child(cmd, log, stack.server.env), get_client(sync_client=True) as client:

        def served() -> bool:
            client.read_deployment_by_name("evaluate-mixtures/served-nightly")
            return True

        wait_for("parammix serve", served, 120, log)
        nightly = client.read_deployment_by_name("evaluate-mixtures/served-nightly")
        on_demand = client.read_deployment_by_name("param-mix/served")
    assert [s.schedule.cron for s in nightly.schedules] == ["0 3 * * *"]
    assert on_demand.parameters == {"config": str(ROOT / "configs" / "micro.yaml"), "overrides": []}
    assert not on_demand.schedules


@pytest.mark.parametrize(
    ("stop", "said"),
    [
        ("SIGTERM", "error: serve: terminated (SIGTERM); "),
        ("Ctrl-C", "error: serve: interrupted (Ctrl-C); "),
    ],
)
def test_a_stopped_serve_cancels_its_run_and_says_so(stack: Stack, stop: str, said: str):
    """SIGTERM (`docker stop` signals PID 1) or SIGINT (`kill -INT`) to serve, with a run in
    flight: the run is Cancelled in the UI (not left Running), the schedules paused, one error
    line, exit 143 / 130. (A terminal's Ctrl-C also reaches the flow-run process, which then
    gets two signals, the second one the runner's cancel: docs/prefect.md says what it prints.)
    Prefect 3.8's own serve left the run Running and exited 0 both ways (and printed
    "coroutine 'Runner.astop' was never awaited" on SIGTERM)."""
    if stack.server.database != "sqlite":
        pytest.skip("the serve path does not depend on the server's database")
    store = stack.workdir / f"store-{stop}"
    cmd = [str(BIN / "parammix"), "serve", "--config", "micro", "--set", f"store.url={store}"]
    log = stack.workdir / f"serve-{stop}.log"
    env = {**stack.server.env, "PARAMMIX_CACHE": str(stack.workdir / f"cache-{stop}")}
    with log.open("wb") as out:
        serve = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with get_client(sync_client=True) as client:

            def served() -> bool:  # this serve's deployment, not the one a test before left
                current = client.read_deployment_by_name("param-mix/served")
                return f"store.url={store}" in current.parameters["overrides"]

            wait_for("parammix serve", served, 120, log)
            deployment = client.read_deployment_by_name("param-mix/served")
            run = client.create_flow_run_from_deployment(deployment.id)
            wait_for(
                "a running flow run",
                lambda: client.read_flow_run(run.id).state.is_running(),
                120,
                log,
            )
            serve.send_signal(signal.SIGTERM if stop == "SIGTERM" else signal.SIGINT)
            code = serve.wait(120)
            state = client.read_flow_run(run.id).state
            weekly = client.read_deployment_by_name("param-mix/served-weekly")
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
    printed = log.read_text()
    assert code == (143 if stop == "SIGTERM" else 130), printed[-3000:]
    assert state.is_cancelled(), state
    assert weekly.paused
    assert printed.startswith("serving 5 deployments on ")
    errors = [line for line in printed.splitlines() if line.startswith("error:")]
    assert errors == [
        said + "the flow runs it had started were cancelled and its schedules paused "
        "(`parammix serve` again resumes them)"
    ]
    assert "never awaited" not in printed and "Traceback" not in printed
