"""The flow on a local Ray instance: tasks reserve their configured resources, and the fan-out
gives exactly the thread pool's results."""

import os
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.param_mix import param_mix
from flows.runners import task_runner
from parammix_core import stages
from parammix_core.config import Experiment, load_experiment, parse_experiment
from parammix_core.config.runtime import RayConfig, RayTaskResources

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("prefect_ray")

ROOT = Path(__file__).resolve().parents[2]
RAY = RayConfig(
    merge_and_evaluate=RayTaskResources(num_cpus=0.5),
    train_expert=RayTaskResources(num_cpus=1, memory_mb=256),
)


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU Ray instance for this module; the flows' runners use it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def where() -> tuple[int, dict[str, float]]:
    return os.getpid(), ray.get_runtime_context().get_assigned_resources()


@task(name="train_expert")
def fake_expert() -> tuple[int, dict[str, float]]:
    return where()


@task(name="merge_and_evaluate")
def fake_merge() -> tuple[int, dict[str, float]]:
    return where()


@task(name="report")
def fake_report() -> tuple[int, dict[str, float]]:
    return where()


@flow
def resources_flow() -> list[tuple[int, dict[str, float]]]:
    return [t.submit().result() for t in (fake_expert, fake_merge, fake_report)]


def test_tasks_run_as_ray_tasks_with_their_configured_resources(prefect_api, local_ray):
    runtime = Experiment().runtime.model_copy(update={"task_runner": "ray", "ray": RAY})
    (pid_e, expert), (pid_m, merge), (pid_r, other) = resources_flow.with_options(
        task_runner=task_runner(runtime)
    )()
    assert os.getpid() not in {pid_e, pid_m, pid_r}  # each ran in a Ray worker process
    assert expert == {"CPU": 1.0, "memory": 256 * 2**20}
    assert merge == {"CPU": 0.5}
    assert other == {"CPU": 1.0}


def small_micro(store: Path, runner: str) -> Experiment:
    """The micro config's data, base, experts and mixture fan-out; no probe or validation."""
    data = load_experiment(ROOT / "configs" / "micro.yaml").model_dump(mode="json")
    data["probe"] = {**data["probe"], "enabled": False}
    data["validation"] = {**data["validation"], "enabled": False}
    data["final"] = {**data["final"], "enabled": False}
    data["store"]["url"] = str(store)
    data["runtime"] = {**data["runtime"], "task_runner": runner, "ray": RAY.model_dump()}
    return parse_experiment(data)


@pytest.mark.slow
def test_ray_runner_gives_the_thread_runners_results(prefect_api, local_ray, tmp_path: Path):
    on_ray = small_micro(tmp_path / "ray", "ray")
    on_threads = small_micro(tmp_path / "threads", "thread")
    refs = param_mix(on_ray)  # each on the runner its runtime names
    assert refs == param_mix(on_threads)
    ray_store, thread_store = stages.open_store(on_ray), stages.open_store(on_threads)
    rows = ray_store.load_parquet(refs["surrogates"], "rows.parquet")
    assert len(rows) == on_ray.search.n_mixtures
    same = thread_store.load_parquet(refs["surrogates"], "rows.parquet")
    assert rows.drop(columns="seconds").equals(same.drop(columns="seconds"))  # all but timings
    choice = stages.load_choice(ray_store, refs["choice"])
    assert choice == stages.load_choice(thread_store, refs["choice"])


def test_runner_choice():
    runtime = Experiment().runtime
    assert task_runner(runtime) == ThreadPoolTaskRunner(max_workers=runtime.max_workers)
    assert task_runner(runtime) != ThreadPoolTaskRunner(max_workers=runtime.max_workers + 1)
    runner = task_runner(runtime.model_copy(update={"task_runner": "ray", "ray": RAY}))
    assert runner.resources("train_expert") == RAY.train_expert
    assert runner.resources("anything else") == RayTaskResources()
    assert runner.duplicate() == runner
    assert runner.address is None and runner.init_kwargs["runtime_env"] is None
