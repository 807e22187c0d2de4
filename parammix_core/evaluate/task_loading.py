"""lm-eval's task objects for the configured tasks, loaded once with every check passed.

Both the `Evaluator` (scores a model on them) and the search target (`evaluate.target`: the
tasks' gold answers as data that MixMin and MergeMix optimise) need the same objects, built the
same way: `resolve_tasks` checks names, metrics, splits, threads and code execution first; one
restricted `TaskManager` indexes only the folders those tasks live in; each configured task is
loaded on its own so that a data set lm-eval cannot read is reported with its task and files;
and `num_fewshot` is applied as lm-eval applies it (a YAML's explicit 0 wins).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lm_eval.tasks import TaskManager

from parammix_core.config import EvalTask
from parammix_core.evaluate.code_eval import code_eval_fallback
from parammix_core.evaluate.resolve import Resolution, RunContext, resolve_tasks
from parammix_core.evaluate.task_finder import data_file_paths, lm_eval_tasks_dir


class EvaluationError(ValueError):
    """A task, metric or input the evaluator cannot use; the message lists what is available."""


@dataclass
class LoadedTasks:
    """The task manager, each configured task's task or group object by name, and lm-eval's
    task dict over all of them (`{"tasks": {leaf name: task}, "groups": {...}}`)."""

    manager: TaskManager
    built: dict
    task_dict: dict

    def leaves(self, name: str) -> list:
        """The leaf task objects of a configured task (itself, or a group's members)."""
        if name in self.task_dict["groups"]:
            return list(self.task_dict["groups"][name].get_all_tasks())
        return [self.task_dict["tasks"][name]]


def _load_failure(
    i: int, task: EvalTask, err: Exception, lm_evals_own: bool, reads: Sequence[str] = ()
) -> str:
    """Why a task did not load; for lm-eval's own tasks, offline, the way out is data_files.
    `reads`: the files the task's own YAML names, which a user's damaged file is among."""
    cause = f"{type(err).__name__}: {err}"
    inner = err.__cause__ or err.__context__  # datasets' "An error occurred ..." says no more
    if inner is not None and str(inner) and str(inner) not in cause:
        cause += f"; {type(inner).__name__}: {str(inner).splitlines()[0][:300]}"
    if task.data_files:
        files = ", ".join(f"{split}: {path}" for split, path in task.data_files.items())
        return (
            f"evaluation.tasks.{i}.data_files: lm-eval's {task.name} could not read {files} "
            f"({cause}); each file must hold the data set's own columns"
        )
    hint = (
        f"; offline, give local copies of its data as evaluation.tasks.{i}.data_files, or "
        "let lm-eval download it: HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 in the environment"
    )
    source = f" from {', '.join(reads)}" if reads else ""
    return f"evaluation.tasks.{i}.name: lm-eval could not load {task.name}{source} ({cause})" + (
        hint if lm_evals_own else ""
    )


def _build(tasks: Sequence[EvalTask], manager: TaskManager, resolution: Resolution) -> dict:
    """lm-eval's task and group objects by task name, one configured task at a time."""
    built = {}
    for i, (task, spec) in enumerate(zip(tasks, resolution.specs(), strict=True)):
        try:
            loaded = manager.load([spec])
        except Exception as err:
            info = resolution.infos[task.name]
            own = info.path is not None and lm_eval_tasks_dir() in info.path.parents
            kwargs = info.config.get("dataset_kwargs")
            reads = data_file_paths(kwargs.get("data_files") if isinstance(kwargs, dict) else None)
            raise EvaluationError(_load_failure(i, task, err, own, reads)) from err
        built[task.name] = loaded["groups"].get(task.name) or loaded["tasks"][task.name]
    return built


def load_tasks(
    tasks: Sequence[EvalTask],
    include_path: str | Path | Sequence[str | Path] | None,
    num_fewshot: int,
    allow_code_execution: bool,
) -> LoadedTasks:
    """The configured tasks' lm-eval objects (datasets loaded), after `resolve_tasks` passed.

    Raises:
        EvaluationError: every problem `resolve_tasks` found, or the first task that did not
            load, naming its `evaluation.tasks.<i>` field.
    """
    thread = threading.current_thread()
    context = RunContext(
        allow_code_execution=allow_code_execution,
        num_fewshot=num_fewshot,
        worker_thread=None
        if thread is threading.main_thread()
        else f"this evaluator runs in thread {thread.name!r}",
    )
    resolution = resolve_tasks(tasks, include_path, context)
    if resolution.problems:
        raise EvaluationError("\n".join(map(str, resolution.problems)))
    manager = TaskManager(include_path=resolution.folders() or None, include_defaults=False)
    if allow_code_execution:
        os.environ["HF_ALLOW_CODE_EVAL"] = "1"  # read by code_eval (the hub's or ours)
        with code_eval_fallback():
            built = _build(tasks, manager, resolution)
    else:
        built = _build(tasks, manager, resolution)
    task_dict = manager.load(list(built.values()))  # lm-eval's own checks across them
    for task in task_dict["tasks"].values():
        if task.get_config("num_fewshot") != 0:  # a YAML's explicit 0 wins, as in lm-eval
            task.set_config(key="num_fewshot", value=num_fewshot)
    return LoadedTasks(manager, built, task_dict)
