"""Faults in a whole flow run: a transient error is retried, a permanent one fails the run
with its cause and leaves earlier artifacts reusable, an S3 server killed mid-run loses
nothing that was published. All on the micro config, in the session's Prefect harness."""

import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import s3fs
import torch
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.settings import get_current_settings

from flows.param_mix import param_mix
from parammix_core import stages
from parammix_core.config import Experiment, load_experiment
from parammix_core.store import Store

ROOT = Path(__file__).resolve().parents[2]


def micro(url: str, **store: object) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    return exp.model_copy(update={"store": exp.store.model_copy(update={"url": url, **store})})


def on_s3(server, monkeypatch: pytest.MonkeyPatch) -> Experiment:
    for name, value in server.env().items():  # credentials from the environment only
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    return micro(
        f"s3://{server.bucket('flow')}/store", storage_options={"endpoint_url": server.endpoint}
    )


def task_runs(flow_run_id) -> dict[str, tuple[str, int]]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: (r.state.name, r.run_count) for r in runs}


def published(store: Store) -> dict[str, str]:
    store.fs.invalidate_cache()
    return {m["key"]: m["created"] for m in store.artifacts()}


def rows(store: Store, refs: dict) -> pd.DataFrame:
    return store.load_parquet(refs["surrogates"], "rows.parquet").drop(columns=["seconds"])


@pytest.mark.slow
def test_transient_failure_is_retried_and_no_secret_is_written(
    prefect_api, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd
):
    clean_exp = micro(str(tmp_path / "clean"))
    clean_refs = param_mix(clean_exp)
    clean = stages.open_store(clean_exp)

    exp = on_s3(s3_server, monkeypatch)
    monkeypatch.setenv("PARAMMIX_FAIL_ONCE", "train_expert[math]")
    state = param_mix(exp, return_state=True)
    assert state.is_completed()
    runs = task_runs(state.state_details.flow_run_id)
    assert runs["train_expert[math]"] == ("Completed", 2)  # failed once, retried by Prefect
    refs = state.result()
    store = stages.open_store(exp)
    assert refs == clean_refs  # same config, same content addresses
    pd.testing.assert_frame_equal(rows(store, refs), rows(clean, clean_refs))
    math = refs["expert.math"]
    a = store.load_tensors(math, "model.safetensors")
    b = clean.load_tensors(math, "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert stages.load_choice(store, refs["choice"]).alpha == (
        stages.load_choice(clean, clean_refs["choice"]).alpha
    )
    assert_secret_written_nowhere(s3_server.secret_key, state, store, capfd)


def assert_secret_written_nowhere(secret: str, state, store: Store, capfd) -> None:
    """Grep everything the run wrote: logs, artifacts, results, database, store, cache, output."""
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = client.read_flow_run(flow_run_id)
    assert logs and artifacts  # the run did write both
    texts = [log.message for log in logs] + [repr(a.data) + str(a.description) for a in artifacts]
    texts += [run.model_dump_json(), str(state.result())]
    assert not [t for t in texts if secret in t]
    settings = get_current_settings()
    db = settings.server.database.connection_url.get_secret_value().split("///")[-1]
    assert Path(db).is_file(), db
    roots = [Path(db), settings.results.local_storage_path, store.cache_dir]
    files = [
        f
        for r in roots
        if Path(r).exists()
        for f in ([Path(r)] if Path(r).is_file() else Path(r).rglob("*"))
    ]
    assert not [f for f in files if f.is_file() and secret.encode() in f.read_bytes()]
    objects = store.fs.find(store.root)
    assert objects and not [o for o in objects if secret.encode() in store.fs.cat_file(o)]
    out, err = capfd.readouterr()
    assert secret not in out + err


@pytest.mark.slow
def test_permanent_failure_names_its_cause_and_keeps_earlier_artifacts(prefect_api, tmp_path: Path):
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    # damaged on the first run: a user's broken task that the preflight, which checks the
    # task's files by name, cannot see (a missing file is refused before anything trains)
    data_file = tmp_path / "docs.jsonl"
    data_file.write_text('{"q": "1 + 1 =", "choices": ["2", "3"], "answer": 0\n')
    (tasks_dir / "my_task.yaml").write_text(
        "task: my_task\n"
        "dataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {data_file}}}}}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: '{{q}}'\n"
        "doc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{answer}}'\n"
        "metric_list: [{metric: acc}]\n"
    )
    exp = micro(str(tmp_path / "store"))
    evaluation = exp.evaluation.model_copy(
        update={
            "include_path": str(tasks_dir),
            "tasks": [{"name": "my_task", "group": "math", "metric": "acc"}],
        }
    )
    exp = Experiment.model_validate({**exp.model_dump(), "evaluation": evaluation.model_dump()})
    state = param_mix(exp, return_state=True)
    assert state.is_failed()
    assert "docs.jsonl" in state.message or "docs.jsonl" in str(
        state.result(raise_on_failure=False)
    )
    runs = task_runs(state.state_details.flow_run_id)
    failed = {n: r for n, r in runs.items() if r[0] == "Failed"}
    assert failed and all(count == 1 for _, count in failed.values())  # not retried
    store = stages.open_store(exp)
    before = published(store)
    stage_names = {m["stage"] for m in store.artifacts()}
    assert {"data", "base", "expert"} <= stage_names

    data_file.write_text(
        "\n".join(
            f'{{"q": "{i} + 1 =", "choices": ["{i + 1}", "{i + 2}"], "answer": 0}}'
            for i in range(8)
        )
    )
    second = param_mix(exp, return_state=True)
    assert second.is_completed()
    after = published(store)
    assert {k: after[k] for k in before} == before  # reused, never rewritten
    runs = task_runs(second.state_details.flow_run_id)
    assert runs["train_expert[math]"][0] == "Cached"


@pytest.mark.slow
def test_s3_server_killed_mid_run_then_restarted(
    prefect_api, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    exp = on_s3(s3_server, monkeypatch)
    store = stages.open_store(exp)
    killed = threading.Event()

    def kill_after_first_expert() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if any(
                    m["stage"] == "expert"
                    for m in Store(exp.store.url, exp.store.storage_options).artifacts()
                ):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        s3_server.stop(kill=True)
        killed.set()
        time.sleep(3)
        s3_server.start()

    watcher = threading.Thread(target=kill_after_first_expert)
    watcher.start()
    state = param_mix(exp, return_state=True)
    watcher.join()
    assert killed.is_set()
    if not state.is_completed():  # the outage outlasted the retries: a rerun finishes it
        state = param_mix(exp, return_state=True)
    assert state.is_completed()
    before = published(store)
    again = param_mix(exp, return_state=True)
    assert again.result() == state.result()
    assert published(store) == before  # everything reused after the restart


@pytest.mark.slow
def test_an_artifact_lost_after_caching_is_named_and_verify_rebuilds_it(
    prefect_api, tmp_path: Path
):
    """A store restored from a backup keeps its identity, so Prefect's cache still names the
    artifacts it lost: the run says how to rebuild them, and `--verify` does."""
    exp = micro(str(tmp_path / "store"))
    off = {"validation": {"enabled": False}, "final": {"enabled": False}}
    exp = Experiment.model_validate({**exp.model_dump(), **off})
    refs = param_mix(exp)
    store = stages.open_store(exp)
    shutil.rmtree(Path(store.root) / refs["choice"].path)

    state = param_mix(exp, return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert f"{refs['choice'].path}: not in the store" in message
    assert "if a cached stage still names it, `parammix run --verify`" in message

    verified = exp.model_copy(
        update={"runtime": exp.runtime.model_copy(update={"verify_cached": True})}
    )
    assert param_mix(verified) == refs
    assert store.exists(refs["choice"])
