"""The flow's task runner, chosen by `runtime.task_runner`: a local thread pool or Ray.

With Ray every task run is a Ray task, on a local instance the runner starts or on the cluster
at `runtime.ray.address`, reserving the resources configured for its kind (flows/ray_runner.py).
Stage results still travel through the store: a task returns store keys and metrics, so any
node that sees the store can run any task.
"""

from __future__ import annotations

import threading

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from parammix_core.config import Experiment, RuntimeConfig


def task_runner(runtime: RuntimeConfig) -> TaskRunner:
    """The runner `runtime` asks for; prefect-ray is imported only when chosen."""
    if runtime.task_runner == "ray":
        try:
            from flows.ray_runner import ConfiguredRayTaskRunner
        except ImportError as err:
            raise ImportError(
                f"runtime.task_runner: ray needs the ray extra (pip install -e '.[ray]'): {err}"
            ) from err
        return ConfiguredRayTaskRunner(runtime.ray)
    return ThreadPoolTaskRunner(max_workers=runtime.max_workers)


class ExperimentTaskRunner(TaskRunner):
    """The runner the run's own experiment asks for, chosen when its first task is submitted.

    A decorator fixes a flow's runner before any parameter is known, so a deployment's run
    (whose experiment arrives as a parameter) would always get the decorator's threads. Every
    stage task takes the experiment as `exp`: the first one submitted starts the runner its
    `runtime` names, and every task of the run goes to that runner.
    """

    def __init__(self) -> None:
        super().__init__()
        self._inner: TaskRunner | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> ExperimentTaskRunner:
        return type(self)()

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        return self.runner(parameters.get("exp")).submit(task, parameters, wait_for, dependencies)

    def runner(self, exp: object) -> TaskRunner:
        """The started runner of this run (from `exp.runtime`, the defaults without one)."""
        with self._lock:
            if self._inner is None:
                runtime = exp.runtime if isinstance(exp, Experiment) else RuntimeConfig()
                self._inner = task_runner(runtime).__enter__()
            return self._inner

    def __getstate__(self) -> dict:
        """Ray pickles the flow, runner included: a started runner and a lock stay behind."""
        return {**self.__dict__, "_inner": None, "_lock": None, "_started": False}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if self._inner is not None:
            self._inner.__exit__(exc_type, exc_value, traceback)
            self._inner = None
        super().__exit__(exc_type, exc_value, traceback)
