"""prefect-ray's task runner, with each task's Ray resources taken from the config by name.

Imported only when `runtime.task_runner` is `ray` (the `ray` extra: prefect-ray, ray[default]).
"""

from __future__ import annotations

from typing import Any

from prefect_ray.context import remote_options
from prefect_ray.task_runners import RayTaskRunner

from parammix_core.config.runtime import RayConfig, RayTaskResources


def ray_options(resources: RayTaskResources) -> dict[str, Any]:
    """Ray's `@ray.remote` options for one task kind."""
    options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.memory_mb is not None:
        options["memory"] = resources.memory_mb * 2**20
    return options


class ConfiguredRayTaskRunner(RayTaskRunner):
    """Runs every task as a Ray task; train_expert, merge_and_evaluate and the other tasks
    reserve `config.train_expert`, `.merge_and_evaluate` and `.other_tasks` respectively."""

    def __init__(self, config: RayConfig) -> None:
        init_kwargs: dict[str, Any] = {"runtime_env": config.runtime_env or None}
        if config.address is None and config.local_num_cpus is not None:
            init_kwargs["num_cpus"] = config.local_num_cpus
        super().__init__(address=config.address, init_kwargs=init_kwargs)
        self.config = config

    def resources(self, task_name: str) -> RayTaskResources:
        kinds = {
            "train_expert": self.config.train_expert,
            "merge_and_evaluate": self.config.merge_and_evaluate,
        }
        return kinds.get(task_name, self.config.other_tasks)

    def duplicate(self) -> ConfiguredRayTaskRunner:
        return type(self)(self.config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfiguredRayTaskRunner) and other.config == self.config

    __hash__ = None  # mutable, like its parent

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        with remote_options(**ray_options(self.resources(task.name))):
            return super().submit(task, parameters, wait_for, dependencies)
