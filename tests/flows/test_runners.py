"""A run's task runner comes from its own experiment, deployments' runs included."""

import pickle
import threading
import time

import pytest
from prefect import flow, task, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.evaluate_mixtures import evaluate_mixtures
from flows.param_mix import param_mix
from flows.runners import ExperimentTaskRunner
from parammix_core.config import Experiment


class Peak:
    """How many tasks ran at once."""

    def __init__(self) -> None:
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.now -= 1


PEAK = Peak()


@task
def hold(exp: Experiment, i: int) -> int:
    with PEAK:
        time.sleep(0.3)
    return i


@flow(task_runner=ExperimentTaskRunner())
def fan_out(exp: Experiment) -> list[int]:
    """As a deployment calls a flow: the experiment is a parameter, the runner is fixed."""
    return hold.map(unmapped(exp), range(4)).result()


@pytest.mark.parametrize(("workers", "most"), [(1, 1), (3, 3)])
def test_a_runs_tasks_get_the_workers_its_experiment_names(prefect_api, workers, most):
    """Before, every deployment run had the decorator's 2 threads whatever runtime.max_workers
    said (one GPU shared by two experts), and runtime.task_runner: ray was never used."""
    exp = Experiment.model_validate({"runtime": {"max_workers": workers}})
    PEAK.most = 0
    assert fan_out(exp) == [0, 1, 2, 3]
    assert PEAK.most == most


def test_the_pipelines_flows_take_the_runner_from_the_experiment():
    for pipeline in (param_mix, evaluate_mixtures):
        assert isinstance(pipeline.task_runner, ExperimentTaskRunner)


def test_the_runner_pickles_without_its_started_runner():
    """Ray pickles the flow run's context, the flow and its runner with it."""
    runner = ExperimentTaskRunner()
    with runner:
        runner.runner(Experiment())
        copy = pickle.loads(pickle.dumps(runner))
    assert copy._inner is None
    with copy:
        assert isinstance(copy.runner(Experiment()), ThreadPoolTaskRunner)
