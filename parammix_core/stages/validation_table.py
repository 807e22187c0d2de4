"""The validation's table: how the merges rank mixtures against the real runs, computed from
the scores the validate_proxy stage stored, each time they are read.

The scores are the expensive part (every merge and real run evaluated); the comparison is a
fraction of a second. Computing it on read keeps it out of the stage's code version, so a
change to the statistics re-keys the report only, never a scored run.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from parammix_core import proxy_validation
from parammix_core.noise import run_noise
from parammix_core.search.common import resolve_weights, scale_from_spec
from parammix_core.stages.evaluate import doc_matrix
from parammix_core.stages.finite import finite_json
from parammix_core.stages.validate import RUN_DOCS
from parammix_core.store import ArtifactRef, Store


class Task(NamedTuple):
    """What the analysis reads of an evaluation task."""

    name: str
    group: str


def load_validation(store: Store, ref: ArtifactRef) -> dict[str, Any]:
    """The stage's validation.json with its `analysis` (`proxy_validation.analyse`, NaN as
    None) computed from the stored rows."""
    info = store.load_json(ref, "validation.json")
    compare = info["compare"]
    analysis = proxy_validation.analyse(
        store.load_parquet(ref, "rows.parquet"),
        compare["domains"],
        [Task(name, group) for name, group in compare["tasks"]],
        compare["weights"],
        chosen=compare["chosen"],
        scale=scale_from_spec(compare["scale"]),
    )
    out = {**info, "analysis": finite_json(analysis)}
    if RUN_DOCS in (store.manifest(ref) or {}).get("files", {}):
        tasks = [Task(name, group) for name, group in compare["tasks"]]
        pairs = run_pairs(store.load_parquet(ref, RUN_DOCS), [t.name for t in tasks])
        noise = {t: run_noise(*p) for t, p in pairs.items()}
        out["task_noise"] = finite_json(noise)
        if pairs and len(pairs) == len(tasks) and info.get("utility_scale", "raw") == "raw":
            utility = utility_run_noise(pairs, noise, tasks, compare["weights"])
            out["utility_noise"] = finite_json(utility)
    return out


def run_pairs(docs: pd.DataFrame, tasks: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per task, the per-document scores (R, D) of the first runs and of the reruns of the R
    mixtures trained twice; {} when none was."""
    by_kind = {kind: part.set_index("mixture") for kind, part in docs.groupby("kind")}
    if "rerun" not in by_kind or "mix" not in by_kind:
        return {}
    twice = sorted(set(by_kind["rerun"].index) & set(by_kind["mix"].index))
    first, second = (by_kind[k].loc[twice] for k in ("mix", "rerun"))
    out = {}
    for task in tasks:
        pair = doc_matrix(first, task), doc_matrix(second, task)
        if pair[0] is not None:
            out[task] = pair
    return out


def utility_run_noise(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    task_noise: dict[str, dict[str, float]],
    tasks: list[Task],
    weights,
) -> dict[str, float]:
    """The raw utility's run-to-run noise sd, the part its tasks' documents explain and the
    noise with twice the documents on every task. The utility is linear in the task scores
    (weighted group means of task means) and different tasks' documents move independently,
    so their variances (`task_noise`, `noise.run_noise`) add with the utility's coefficients
    squared."""
    groups = list(dict.fromkeys(t.group for t in tasks))
    w = resolve_weights(groups, weights)
    size = Counter(t.group for t in tasks)
    coef = {t.name: w[t.group] / sum(w.values()) / size[t.group] for t in tasks}
    diff = sum(c * (pairs[t][0] - pairs[t][1]).mean(axis=1) for t, c in coef.items())
    noise = float(np.std(diff, ddof=1) / np.sqrt(2)) if len(diff) >= 3 else math.nan
    documents = math.sqrt(sum((c * task_noise[t]["documents_sd"]) ** 2 for t, c in coef.items()))
    doubled = math.sqrt(max(noise**2 - documents**2 / 2, 0.0)) if math.isfinite(noise) else math.nan
    return {"noise_sd": noise, "documents_sd": documents, "doubled_sd": doubled}
