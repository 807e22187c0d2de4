"""The flow's task runner, chosen by `runtime.task_runner`: a local thread pool or Ray.

With Ray every task run is a Ray task, on a local instance the runner starts or on the cluster
at `runtime.ray.address`, reserving the resources configured for its kind (flows/ray_runner.py).
Stage results still travel through the store: a task returns store keys and metrics, so any
node that sees the store can run any task.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from parammix_core.config import RuntimeConfig


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
