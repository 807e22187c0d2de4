"""What every stage task shares: the store-backed cache key, progress, result settings."""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import datasets
import torch
import transformers
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.blocks.system import Secret
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State
from tqdm import tqdm

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.failure import STAGE
from parammix_core.store import ArtifactRef, Store, StoreError, StoreUnavailable

# Results are small refs: JSON, never pickle. Stages that touch the store or train get retries.
RESULTS = {"persist_result": True, "result_serializer": "json"}


class InjectedFault(RuntimeError):
    """Raised by the first attempt of a task named in PARAMMIX_FAIL_ONCE."""


# What may pass by itself: an unreachable store or endpoint, a dropped connection, a timeout,
# the fault drill. Anything else (bad input, a damaged artifact, a corrupt file, a name the
# filesystem refuses, a bug) fails the run at once with its cause: a retry would only repeat it.
TRANSIENT = (StoreUnavailable, ConnectionError, TimeoutError, InjectedFault)


def is_transient(task: Any, task_run: Any, state: State) -> bool:
    """Retry only what may pass; never a bad input or a damaged artifact."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:  # a crashed run (no exception in hand): worth another attempt
        return True
    return isinstance(exc, TRANSIENT)


RETRIES = {"retries": 2, "retry_delay_seconds": [5, 30], "retry_condition_fn": is_transient}


def open_store(exp: Experiment) -> Store:
    """The experiment's store, with credentials from its Prefect Secret block if it names one."""
    return stages.open_store(exp, block_credentials(exp.store.credentials_block))


@functools.cache
def block_credentials(name: str | None) -> dict[str, str] | None:
    """{key, secret[, token]} from a Prefect Secret block (JSON); never logged."""
    if name is None:
        return None
    try:
        value = Secret.load(name).get()
    except ValueError as err:  # Prefect's "Unable to find block document named ..."
        raise StoreError(
            f"store.credentials_block {name!r}: no such Prefect Secret block ({err})"
        ) from None
    if not isinstance(value, dict) or not {"key", "secret"} <= set(value):
        raise StoreError(
            f"store.credentials_block {name!r}: the Secret must be JSON with 'key' and 'secret'"
        )
    return {k: str(value[k]) for k in ("key", "secret", "token") if k in value}


# Parameters that only name a task run (`train_mixed[uniform]`): never part of a key.
NAMING = ("exp", "index", "label")


def store_key(ref_fn: Callable[..., ArtifactRef]) -> Callable[[TaskRunContext, dict], str]:
    """Prefect cache key = the store address of the task's output (one hash for both).

    The store's identity is part of the key, so a result cached against one store is never
    reused against another (or a wiped one). With a wiped Prefect database the task runs,
    finds its artifact in the store and returns at once.
    """

    def cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        exp: Experiment = parameters["exp"]
        if exp.runtime.verify_cached:  # no cache hit: the stage re-hashes what it reuses
            return None
        args = {k: v for k, v in parameters.items() if k not in NAMING}
        try:
            store, ref = open_store(exp), ref_fn(exp, **args)
            key = f"{store.id}/{ref.path}"
        except Exception:  # the task fails on it too, naming it once: no second traceback
            return None  # under Prefect's "Error encountered when computing cache key"
        if context is not None and context.task_run.name in drilled():
            _warn_if_drill_is_moot(context.task_run.name, store, ref)
        return key

    return cache_key


def stage_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@task(**options)` whose failures carry the task run's name (`train_expert[math]`)
    as `STAGE`, so the CLI can say which stage failed without a traceback."""

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def named(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                context = TaskRunContext.get()
                if context is not None and not hasattr(err, STAGE):
                    setattr(err, STAGE, context.task_run.name)
                raise

        return task(**options)(named)

    return decorate


# Fault drill: task run names (comma-separated) whose first attempt fails, so a deployment
# can prove that its workers retry. Read from the flow run's environment, never from a config.
FAIL_ONCE_ENV = "PARAMMIX_FAIL_ONCE"


def drilled() -> set[str]:
    """The task run names PARAMMIX_FAIL_ONCE lists."""
    return {n.strip() for n in os.environ.get(FAIL_ONCE_ENV, "").split(",") if n.strip()}


def _warn_if_drill_is_moot(name: str, store: Store, ref: ArtifactRef) -> None:
    """A drilled task whose artifact is already published is a cache hit: it never runs, so
    the drill injects nothing and the run still reads Completed. Say so."""
    if store.manifest(ref) is not None:
        get_run_logger().warning(
            f"{FAIL_ONCE_ENV}: {name} is already in the store ({ref.path}), so it is a cache "
            "hit and no fault is injected; drill on a new store.url to see the retry"
        )


def fail_once_if_asked() -> None:
    """Fail this task run's first attempt if its name is listed in PARAMMIX_FAIL_ONCE."""
    wanted = drilled()
    context = TaskRunContext.get()
    if not wanted or context is None:
        return
    run = context.task_run
    if run.name in wanted and run.run_count <= 1:
        raise InjectedFault(f"{FAIL_ONCE_ENV}: first attempt of {run.name} fails on purpose")


def prepare(exp: Experiment) -> None:
    """Per-task process settings (the pool's threads share one torch); library bars off."""
    fail_once_if_asked()
    torch.set_num_threads(exp.runtime.torch_threads)
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def run_stage(
    exp: Experiment, description: str, stage: Callable[..., ArtifactRef], *args: Any
) -> tuple[Store, ArtifactRef]:
    """Run `stage(exp, store, *args, progress)` in a prepared task with a progress artifact;
    returns (store, ref) so the caller can publish artifacts from the result."""
    prepare(exp)
    store = open_store(exp)
    progress = StageProgress(exp, description)
    ref = stage(exp, store, *args, progress)
    progress.close()
    return store, ref


def artifact_key(exp: Experiment, what: str) -> str:
    """A Prefect artifact key of this experiment: the UI's Artifacts page keeps one history
    per key, so a bare `report` mixed every experiment's reports into one."""
    name = re.sub(r"[^a-z0-9]+", "-", exp.name.lower()).strip("-") or "experiment"
    return f"{name}-{what}"


class StageProgress:
    """Progress of a long stage: a Prefect progress artifact, log lines, a tqdm bar locally."""

    def __init__(self, exp: Experiment, description: str, every_seconds: float = 2.0) -> None:
        self.description = description
        self.every = every_seconds
        self.last = 0.0
        self.last_logged = -1
        self.logger = get_run_logger()
        self.artifact = create_progress_artifact(0.0, description=description)
        show = exp.runtime.progress and sys.stderr.isatty()
        # An explicit `disable` wins over TQDM_DISABLE, which silences the libraries' bars.
        self.bar = tqdm(desc=description, disable=not show, leave=False)

    def __call__(self, done: int, total: int, message: str) -> None:
        if total == 0:  # a report (what the stage found), never throttled
            self.logger.info(message)
            return
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        update_progress_artifact(self.artifact, 100.0 * done / max(total, 1))
        decile = int(10 * done / max(total, 1))
        if decile != self.last_logged:
            self.last_logged = decile
            self.logger.info(message)

    def close(self) -> None:
        update_progress_artifact(self.artifact, 100.0)
        self.bar.close()
