"""What a config must agree with about one lm-eval task or group, from its parsed YAML.

From the configs `TaskFinder` (`task_finder`) finds comes what a config must agree with: the
`metric,filter` keys a task reports (`metric_list` x `filter_list`, lm-eval's defaults per
`output_type`, a group's `aggregate_metric_list`), whether it runs generated code
(`unsafe_code`) or times out with signal.alarm, and the folders lm-eval must index to load it.
A group is followed down to its tasks (`_Describer`). No dataset is opened, no task module
imported; `resolve` checks the configured tasks against these `TaskInfo`s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY
from lm_eval.tasks._factory import GROUP_FIELD_NAMES
from lm_eval.tasks._index import Entry, Kind

from parammix_core.evaluate.task_finder import TaskFinder


@dataclass
class TaskInfo:
    """What a config must agree with about one lm-eval task or group."""

    name: str
    kind: str  # "task" or "group"
    config: dict[str, Any]  # the merged YAML, includes followed, functions as paths
    path: Path | None
    metrics: set[str] = field(default_factory=set)  # "metric,filter" keys it reports
    metrics_known: bool = True  # False: a metric function names its results at run time
    unsafe_code: bool = False
    main_thread_only: bool = False  # its Python times out with signal.alarm
    folders: set[Path] = field(default_factory=set)  # what lm-eval must index to load it
    leaves: list[TaskInfo] = field(default_factory=list)  # a group's tasks
    problems: list[str] = field(default_factory=list)

    @property
    def output_type(self) -> str:
        return self.config.get("output_type") or "generate_until"


def _is_function(value: object) -> bool:
    # lm-eval's loader turns `!function utils.f` into the path "<task folder>/utils.f"
    return isinstance(value, str) and os.sep in value


def _function_name(value: str) -> str:
    return value.rsplit(".", 1)[-1]


def _metric_names(cfg: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The metric names a task's results carry, and whether that list is certain."""
    metric_list = cfg.get("metric_list")
    if metric_list is None:
        return list(DEFAULT_METRIC_REGISTRY.get(cfg.get("output_type") or "generate_until")), True
    names, known = [], True
    for item in metric_list:
        metric = item.get("metric") if isinstance(item, dict) else None
        if not _is_function(metric):
            names.append(str(metric))
        elif _function_name(metric) == "pass_at_k" and "k" in item:
            # lm-eval's code tasks: Hugging Face's code_eval returns {"pass@k": ...} per k
            names += [f"pass@{k}" for k in _as_list(item["k"])]
        else:  # a function returning a number reports under its name; a dict, under its keys
            names.append(_function_name(metric))
            known = False
    return names, known


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _filter_names(cfg: Mapping[str, Any]) -> list[str]:
    filters = cfg.get("filter_list")
    if not filters:
        return ["none"]
    return [f["name"] if isinstance(f, dict) else str(f) for f in _as_list(filters)]


def _describe_task(name: str, entry: Entry, overrides: Mapping[str, Any]) -> TaskInfo:
    cfg = {**(entry.cfg or {}), **overrides}
    info = TaskInfo(name, "task", cfg, entry.yaml_path)
    if entry.kind is Kind.PY_TASK:  # a Python class decides its metrics
        info.metrics_known = False
    else:
        names, info.metrics_known = _metric_names(cfg)
        info.metrics = {f"{m},{f}" for m in names for f in _filter_names(cfg)}
    info.unsafe_code = bool(cfg.get("unsafe_code"))
    info.main_thread_only = _needs_main_thread(cfg)
    if entry.yaml_path is not None:
        info.folders.add(entry.yaml_path.parent)
    return info


# signal.alarm (and math_verify's parse/verify, which use it) raise outside a main thread.
_SIGNAL_TIMEOUTS = re.compile(rb"signal\.alarm|\bmath_verify\b")


def _function_modules(value: object) -> set[str]:
    """The Python files a config's `!function` references live in."""
    if isinstance(value, dict):
        return set().union(*map(_function_modules, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_function_modules, value)) if value else set()
    if _is_function(value):
        return {value.rsplit(".", 1)[0] + ".py"}
    return set()


def _needs_main_thread(cfg: Mapping[str, Any]) -> bool:
    """Whether the task's own Python (process_results, metrics, filters) uses signal.alarm
    timeouts, itself or through math_verify (minerva_math, leaderboard_math_hard)."""
    return any(
        os.path.isfile(m) and _SIGNAL_TIMEOUTS.search(Path(m).read_bytes())
        for m in _function_modules(cfg)
    )


class _Describer:
    """Turns found entries into `TaskInfo`s, following groups and tags down to their tasks."""

    def __init__(self, finder: TaskFinder) -> None:
        self.finder = finder

    def describe(
        self, name: str, entry: Entry, overrides: Mapping[str, Any], seen: tuple[str, ...] = ()
    ) -> TaskInfo:
        if entry.kind is Kind.GROUP:
            return self._describe_group(name, entry, overrides, (*seen, name))
        return _describe_task(name, entry, overrides)

    def _members(
        self, name: str, entry: Entry, overrides: Mapping[str, Any], seen: tuple[str, ...]
    ) -> tuple[list[TaskInfo], list[str]]:
        """The leaf tasks under a group (with the overrides lm-eval would apply) and problems."""
        cfg = entry.cfg or {}
        inherited = {**{k: v for k, v in cfg.items() if k not in GROUP_FIELD_NAMES}, **overrides}
        children = []
        for item in _as_list(cfg.get("task") or []):
            if isinstance(item, dict):
                child = item.get("group") or item.get("task")
                extra = {k: v for k, v in item.items() if k not in ("group", "task")}
                children.append((child, {**inherited, **extra}, item))
            else:
                children.append((item, inherited, None))
        found = self.finder.find({c for c, _, _ in children if isinstance(c, str)})
        leaves, problems = [], []
        for child, child_overrides, inline in children:
            sub = found.get(child) if isinstance(child, str) else None
            if sub is None and inline is not None:  # defined inline, in the group's own YAML
                kind = Kind.GROUP if "group" in inline else Kind.TASK
                sub = Entry(child, kind, None, inline)
            if child in seen:
                problems.append(f"group {name!r} contains itself through {child!r}")
            elif sub is None:
                problems.append(f"group {name!r} names {child!r}, which lm-eval does not know")
            elif sub.kind is Kind.TAG:
                tagged = self.finder.find(sorted(sub.tags))
                for task in sorted(sub.tags):
                    if tagged[task] is not None:
                        leaves.append(_describe_task(task, tagged[task], child_overrides))
            elif sub.kind is Kind.GROUP:
                inner = self._describe_group(child, sub, child_overrides, (*seen, child))
                leaves += inner.leaves
                problems += inner.problems
            else:
                leaves.append(_describe_task(child, sub, child_overrides))
        return leaves, problems

    def _describe_group(
        self, name: str, entry: Entry, overrides: Mapping[str, Any], seen: tuple[str, ...]
    ) -> TaskInfo:
        leaves, problems = self._members(name, entry, overrides, seen)
        cfg = dict(entry.cfg or {})
        info = TaskInfo(name, "group", cfg, entry.yaml_path, leaves=leaves, problems=problems)
        info.unsafe_code = any(leaf.unsafe_code for leaf in leaves)
        info.main_thread_only = any(leaf.main_thread_only for leaf in leaves)
        aggregates = _as_list(cfg.get("aggregate_metric_list") or [])
        info.metrics_known = not aggregates or all(leaf.metrics_known for leaf in leaves)
        info.folders = {f for leaf in leaves for f in leaf.folders}
        if entry.yaml_path is not None:
            info.folders.add(entry.yaml_path.parent)
        reported = set().union(*(leaf.metrics for leaf in leaves)) if leaves else set()
        for agg in aggregates:
            metric = agg.get("metric") if isinstance(agg, dict) else None
            filters = agg.get("filter_list") if isinstance(agg, dict) else None
            if filters is None:  # lm-eval aggregates every filter its tasks report the metric on
                keys = {k for k in reported if k.split(",", 1)[0] == metric}
            else:
                keys = {f"{metric},{f}" for f in _as_list(filters)}
            info.metrics |= keys
        return info
