"""Resolve the configured lm-eval tasks before anything runs: names, metrics, splits, code.

`TaskFinder` (`task_finder`) finds each name's definition reading only the YAML files that
name it; `task_info` turns each into a `TaskInfo`: the `metric,filter` keys a task reports,
whether it runs generated code, the folders lm-eval must index to load it. Here each
configured task is checked against it: its metric (or the continuous metrics computed for its
output type, `continuous`), code execution, threads, and the dataset splits its `data_files`
must stand in for. No dataset is opened, no task module imported.

`resolve_tasks` does this for a list of `EvalTask`s and collects every problem with the field
it concerns (`evaluation.tasks.0.metric`); `check_evaluation` is the preflight of
`parammix validate-config` and `parammix run`; the `Evaluator` loads what `resolve_tasks`
resolved, with the per-task overrides (`data_files`, `max_gen_toks`) on top of lm-eval's own
configs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lm_eval.api.metrics  # noqa: F401  (fills the registries below)
from lm_eval.api.registry import HIGHER_IS_BETTER_REGISTRY, METRIC_AGGREGATION_REGISTRY
from lm_eval.tasks._index import Kind
from lm_eval.tasks._yaml_loader import load_yaml

from parammix_core.config import ConfigError, EvalTask, Experiment
from parammix_core.evaluate.continuous import METRICS_BY_OUTPUT, continuous_for, is_continuous
from parammix_core.evaluate.suite import BUILTIN_TASKS
from parammix_core.evaluate.task_finder import TaskFinder, data_file_paths, lm_eval_tasks_dir
from parammix_core.evaluate.task_info import TaskInfo, _Describer

# `datasets` builders by file extension, compressed or not, for `data_files`.
DATA_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


# --- checking an EvalTask against what lm-eval reports --------------------------------------


def metric_key(metric: str, keys: Iterable[str]) -> str | None:
    """The `metric,filter` key a configured metric reads: itself when it names a filter, else
    `metric,none`, else the only filter reporting that metric; None when there is none or the
    choice is ambiguous."""
    if "," in metric:
        return metric if metric in keys else None
    same = sorted(k for k in keys if k.split(",", 1)[0] == metric)
    if f"{metric},none" in same:
        return f"{metric},none"
    return same[0] if len(same) == 1 else None


def _metric_problem(task: EvalTask, info: TaskInfo) -> str | None:
    computed = continuous_for(info.kind, info.output_type)
    if is_continuous(task.metric):
        return None if task.metric in computed else _continuous_problem(task, info, computed)
    if not info.metrics_known or metric_key(task.metric, info.metrics) is not None:
        return None
    if not info.metrics:
        return (
            f"{info.name} is a group without aggregate_metric_list: it reports no score of "
            "its own; name its tasks instead"
        )
    keys = ", ".join(sorted(info.metrics)) or "no metric of its own"
    same = [k for k in sorted(info.metrics) if k.split(",", 1)[0] == task.metric]
    if "," not in task.metric and len(same) > 1:
        return (
            f"{info.name} reports {task.metric!r} under {len(same)} filters; name one as "
            f"metric,filter: {', '.join(same)}"
        )
    ours = f"; or computed by Param-Mix: {', '.join(computed)}" if computed else ""
    return f"{info.name} does not report {task.metric!r}; it reports (metric,filter): {keys}{ours}"


def _score_problem(task: EvalTask, info: TaskInfo, *, utility: bool) -> str | None:
    """Why an lm-eval metric cannot score a mixture: Param-Mix averages per-document values, so
    a corpus-level aggregate (perplexity, BLEU, F1) has none; and the utility is maximised, so
    the task's own metric must be higher-is-better (`utility`; an `also` metric is only shown)."""
    if info.kind != "task" or is_continuous(task.metric):
        return None
    name = task.metric.split(",", 1)[0]
    declared = next(
        (
            m
            for m in info.config.get("metric_list") or []
            if isinstance(m, Mapping) and m.get("metric") == name
        ),
        {},
    )
    aggregation = declared.get("aggregation", METRIC_AGGREGATION_REGISTRY.get(name, None))
    aggregation = getattr(aggregation, "__name__", aggregation)
    if aggregation is not None and aggregation != "mean":
        return (
            f"{name} of {info.name} is aggregated over all documents ({aggregation}), not a "
            "mean of per-document scores, which is what Param-Mix scores and averages: name a "
            "per-document metric, or neg_bpb / p_gold / margin_bpb (computed here)"
        )
    higher = declared.get("higher_is_better", HIGHER_IS_BETTER_REGISTRY.get(name, None))
    if utility and higher is False:
        return (
            f"{name} of {info.name} is lower-is-better (higher_is_better: false), and Param-Mix "
            "maximises the utility, so it would choose the worst mixture: name a metric where "
            "higher is better, or neg_bpb (computed here); show it beside with `also`"
        )
    return None


def _continuous_problem(task: EvalTask, info: TaskInfo, computed: tuple[str, ...]) -> str:
    """Why a continuous metric does not apply to this task, and what does."""
    if info.kind != "task":
        return (
            f"{task.metric} is computed per document of one task and {info.name} is a group; "
            "name its tasks instead"
        )
    valid = [*computed, *sorted(info.metrics)]
    needs = [t for t, metrics in METRICS_BY_OUTPUT.items() if task.metric in metrics]
    return (
        f"{task.metric} applies to output_type {' or '.join(needs)}, and {info.name} is "
        f"{info.output_type}; valid: {', '.join(valid)}"
    )


def _data_format(paths: Iterable[str]) -> str | None:
    formats = set()
    for path in paths:
        stem = path.lower()
        for suffix in _COMPRESSED:
            stem = stem.removesuffix(suffix)
        formats.add(DATA_FORMATS.get(os.path.splitext(stem)[1]))
    return formats.pop() if len(formats) == 1 else None


def _eval_split(cfg: Mapping[str, Any]) -> str | None:
    """The split lm-eval scores: the test split, else the validation split."""
    return cfg.get("test_split") or cfg.get("validation_split")


def _fewshot_split(cfg: Mapping[str, Any]) -> str | None:
    """The split lm-eval draws few-shot examples from; None when the task lists its own."""
    fewshot = cfg.get("fewshot_config") or {}
    split = fewshot.get("split") or cfg.get("fewshot_split")
    if split or fewshot.get("samples") is not None:
        return split
    return cfg.get("training_split") or cfg.get("validation_split") or cfg.get("test_split")


def shots(cfg: Mapping[str, Any], num_fewshot: int) -> int:
    """Few-shot examples per document: a YAML's explicit 0 wins, as in lm-eval."""
    return 0 if cfg.get("num_fewshot") == 0 else num_fewshot


def _data_files_problems(task: EvalTask, info: TaskInfo, num_fewshot: int) -> list[str]:
    """Every way `data_files` cannot stand in for the task's dataset (empty when it can)."""
    if info.kind != "task" or info.config.get("class") is not None:
        return [f"{info.name} is a {info.kind} of other tasks; give data_files to each task"]
    if info.config.get("custom_dataset") is not None:
        return [f"{info.name} builds its dataset in Python (custom_dataset); it reads no files"]
    files = task.data_files or {}
    problems = [
        f"{split}: no such file {path}" for split, path in files.items() if not glob.glob(path)
    ]
    if _data_format(files.values()) is None:
        problems.append(
            f"files must all be one of {', '.join(sorted(DATA_FORMATS))} (optionally "
            f"{', '.join(_COMPRESSED)}), got {', '.join(files.values())}"
        )
    cfg = info.config
    splits = {cfg.get(k) for k in _SPLIT_KEYS} | {(cfg.get("fewshot_config") or {}).get("split")}
    needed = {_eval_split(cfg)}
    if shots(cfg, num_fewshot) > 0:
        needed.add(_fewshot_split(cfg))
    for split in sorted(s for s in needed - set(files) if s):
        problems.append(f"{info.name} reads split {split!r}; give a file for it")
    for split in sorted(set(files) - splits):
        known = ", ".join(sorted(s for s in splits if s))
        problems.append(f"{split}: {info.name} reads no split {split!r} (its splits: {known})")
    return problems


def data_overrides(task: EvalTask, info: TaskInfo) -> dict[str, Any]:
    """lm-eval config keys that make the task read `task.data_files`: the dataset, and the
    splits not given set to None (they are not read: the scored split and the few-shot split
    in use are given, as `resolve_tasks` checked)."""
    files = {split: str(Path(path).absolute()) for split, path in task.data_files.items()}
    overrides: dict[str, Any] = {
        "dataset_path": _data_format(files.values()),
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
        "custom_dataset": None,
    }
    for key in _SPLIT_KEYS:
        if info.config.get(key) and info.config[key] not in files:
            overrides[key] = None
    fewshot = info.config.get("fewshot_config")
    if isinstance(fewshot, dict) and fewshot.get("split") and fewshot["split"] not in files:
        overrides["fewshot_config"] = {**fewshot, "split": None}
    return overrides


@dataclass(frozen=True)
class RunContext:
    """How the tasks will be run, which decides what is a problem."""

    allow_code_execution: bool = False
    num_fewshot: int = 0
    # Why scoring happens outside a process's main thread, when it does (None: main thread).
    worker_thread: str | None = None


@dataclass
class Problem:
    """One bad field of `evaluation` and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class Resolution:
    """The configured tasks as lm-eval knows them, and every problem found."""

    tasks: list[EvalTask]
    infos: dict[str, TaskInfo]
    problems: list[Problem]
    user_folders: list[Path]
    context: RunContext

    def folders(self) -> list[Path]:
        """What lm-eval must index: the folders of lm-eval's own groups named here, then the
        user's (last, so they win, as with lm-eval's include_path)."""
        own = {f for i in self.infos.values() if i.kind == "group" for f in i.folders}
        return [*sorted(own - set(self.user_folders)), *self.user_folders]

    def specs(self) -> list[str | dict[str, Any]]:
        """What `TaskManager.load` gets: a group by name; a task as its full config (lm-eval's
        YAML, functions resolved) with the configured overrides and few-shot count on top."""
        specs: list[str | dict[str, Any]] = []
        for task in self.tasks:
            info = self.infos[task.name]
            if info.kind == "group":
                specs.append(task.name)
                continue
            cfg = load_yaml(info.path, resolve_func=True) if info.path else dict(info.config)
            overrides: dict[str, Any] = {"num_fewshot": shots(cfg, self.context.num_fewshot)}
            if task.data_files:
                overrides.update(data_overrides(task, info))
            if task.max_gen_toks is not None:
                kwargs = dict(cfg.get("generation_kwargs") or {})
                overrides["generation_kwargs"] = {**kwargs, "max_gen_toks": task.max_gen_toks}
            specs.append({**cfg, **overrides})
        return specs


def _yaml_data_files_problems(info: TaskInfo) -> list[str]:
    """Local files the task's own YAML reads (`dataset_kwargs.data_files`) that are not there:
    lm-eval would only find out when the first merge is scored, after all the training."""
    if info.path is None or info.path.is_relative_to(lm_eval_tasks_dir()):
        return []  # lm-eval's own tasks: their files are lm-eval's business
    kwargs = info.config.get("dataset_kwargs")
    files = data_file_paths(kwargs.get("data_files") if isinstance(kwargs, Mapping) else None)
    missing = [f for f in files if "://" not in f and not glob.glob(f) and not Path(f).exists()]
    where = f" ({info.path})" if info.path is not None else ""
    return [f"{info.name} reads {f}{where}, which does not exist" for f in missing]


def _task_problems(i: int, task: EvalTask, info: TaskInfo, context: RunContext) -> list[Problem]:
    where = f"evaluation.tasks.{i}"
    out = [Problem(f"{where}.name", p) for p in info.problems]
    if info.main_thread_only and context.worker_thread:
        out.append(
            Problem(
                f"{where}.name",
                f"{info.name} scores with signal.alarm timeouts (its Python, or math_verify's), "
                f"which work only in a process's main thread, and {context.worker_thread}",
            )
        )
    if info.unsafe_code and not context.allow_code_execution:
        out.append(
            Problem(
                f"{where}.name",
                f"{info.name} executes model-generated code (lm-eval marks it unsafe_code); set "
                "evaluation.allow_code_execution: true to run it, on a machine where that is safe",
            )
        )
    problem = _metric_problem(task, info) or _score_problem(task, info, utility=True)
    if problem:
        out.append(Problem(f"{where}.metric", problem))
    for j, metric in enumerate(task.also):
        shown = task.model_copy(update={"metric": metric})
        problem = (
            f"{metric} is computed by Param-Mix, not reported by lm-eval; `also` takes "
            "lm-eval's metrics (name it as the task's metric instead)"
            if is_continuous(metric)
            else _metric_problem(shown, info) or _score_problem(shown, info, utility=False)
        )
        if problem:
            out.append(Problem(f"{where}.also.{j}", problem))
    if task.data_files is not None:
        problems = _data_files_problems(task, info, context.num_fewshot)
        out += [Problem(f"{where}.data_files", p) for p in problems]
    elif info.kind == "task":
        out += [Problem(f"{where}.name", p) for p in _yaml_data_files_problems(info)]
    if task.max_gen_toks is not None and (
        info.kind != "task" or info.output_type != "generate_until"
    ):
        out.append(
            Problem(
                f"{where}.max_gen_toks",
                f"{info.name} does not generate (output_type {info.output_type}; "
                "max_gen_toks applies to generate_until tasks)",
            )
        )
    return out


def resolve_tasks(
    tasks: Sequence[EvalTask],
    include_path: str | Path | Sequence[str | Path] | None,
    context: RunContext = RunContext(),
    builtin: bool = False,
) -> Resolution:
    """Find every task; check its metric, code execution, threads, data files and overrides.

    Args:
        tasks: the configured tasks.
        include_path: the user's task folder(s), searched before lm-eval's own tasks.
        context: how they will run (code execution allowed, few-shot count, thread).
        builtin: also know the built-in suite's tasks (before its folder is generated).
    """
    folders = [include_path] if isinstance(include_path, str | Path) else include_path or []
    folders = [Path(f) for f in folders]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:  # lm-eval would skip it silently and report every name as unknown
        problem = Problem("evaluation.include_path", f"no such task folder(s) {missing}")
        return Resolution(list(tasks), {}, [problem], folders, context)
    finder = TaskFinder(folders, builtin=builtin)
    found = finder.find([t.name for t in tasks])
    describer = _Describer(finder)
    infos, problems = {}, []
    for i, task in enumerate(tasks):
        entry = found[task.name]
        if entry is None:
            problems.append(Problem(f"evaluation.tasks.{i}.name", finder.unknown(task.name)))
        elif entry.kind is Kind.TAG:
            members = ", ".join(sorted(entry.tags))
            problems.append(
                Problem(
                    f"evaluation.tasks.{i}.name",
                    f"{task.name!r} is an lm-eval tag, which has no score of its own; "
                    f"list its tasks instead: {members}",
                )
            )
        else:
            infos[task.name] = describer.describe(task.name, entry, {})
            problems += _task_problems(i, task, infos[task.name], context)
    return Resolution(list(tasks), infos, problems, folders, context)


def check_evaluation(exp: Experiment, source: str) -> Resolution:
    """The preflight: every configured task resolved and checked as `merge_and_evaluate` will
    load it; ConfigError naming `source` and each bad field otherwise."""
    evaluation = exp.evaluation
    threads = exp.runtime.task_runner == "thread"
    context = RunContext(
        allow_code_execution=evaluation.allow_code_execution,
        num_fewshot=evaluation.num_fewshot,
        worker_thread="parammix run scores in worker threads (runtime.task_runner: thread)"
        if threads
        else None,
    )
    builtin = evaluation.include_path is None and any(
        t.name in BUILTIN_TASKS for t in evaluation.tasks
    )
    resolution = resolve_tasks(evaluation.tasks, evaluation.include_path, context, builtin)
    resolution.problems[:0] = [
        Problem(
            f"evaluation.tasks.{i}.docs",
            f"{t.name} is not a generated built-in task: its documents are its dataset's "
            "(`docs` sets how many the built-in suite writes)",
        )
        for i, t in enumerate(evaluation.tasks)
        if t.docs is not None and not (builtin and t.name in BUILTIN_TASKS)
    ]
    if resolution.problems:
        lines = [f"{source}: {len(resolution.problems)} invalid evaluation field(s)"]
        lines += [f"  {p}" for p in resolution.problems]
        raise ConfigError("\n".join(lines))
    return resolution
