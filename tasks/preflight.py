"""preflight: the flow's first task, so a run started from a deployment or the UI refuses a
bad task or input before anything trains, as `parammix run` does before it starts the flow."""

from __future__ import annotations

from prefect.cache_policies import NO_CACHE

from parammix_core.config import Experiment
from parammix_core.stages.preflight import preflight as check
from tasks.common import stage_task


@stage_task(name="preflight", task_run_name="preflight", cache_policy=NO_CACHE)
def preflight(exp: Experiment, source: str) -> None:
    """Every evaluation task and input of `exp` (named by `source` in the error) checked."""
    check(exp, source)
