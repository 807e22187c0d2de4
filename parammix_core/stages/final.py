"""Stage final_training: the mid-trained model the user wants, against the obvious baselines.

The base is trained on the chosen mixture for the final budget (`final.train`, several times an
expert's), and so are the uniform mixture and the natural proportions (domains in proportion to
their corpus size), each with `final.seeds` data-order seeds and otherwise identical settings
(`mixed.final_run`: a `transformers` checkpoint that `from_pretrained` loads). Every run is then
scored like the merges (benchmarks and held-out loss; `score_final_run`, its own artifact so an
edited task never retrains a run), and the summary says per capability group whether the chosen
mixture wins: the mixtures share their data-order seeds, so each difference is paired by seed
and judged by its t interval. The chosen mixture's first seed is *the* final model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from parammix_core import simplex
from parammix_core.config import Experiment
from parammix_core.data import load_prepared, natural_weights
from parammix_core.model import load_model, resolve_device
from parammix_core.report.final import BASELINES, NOT_JUDGED, UNTESTED, WITHIN, is_beside
from parammix_core.search.common import Transform, scale_from_spec, utility
from parammix_core.stages.common import Progress
from parammix_core.stages.evaluate import evaluation_spec, make_evaluator
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json


def baseline_mixtures(exp: Experiment, stats: Mapping[str, Any]) -> dict[str, list[float]]:
    """name -> mixture of the baselines: uniform and the natural proportions (from the data
    stats). The one definition, so a search that joins final training's runs finds their keys."""
    natural = natural_weights(dict(stats))
    return {
        "uniform": simplex.uniform(len(exp.domains)).tolist(),
        "natural": simplex.from_mapping(natural, exp.domains).tolist(),
    }


def final_mixtures(
    exp: Experiment, chosen: Mapping[str, float], stats: Mapping[str, Any]
) -> dict[str, list[float]]:
    """name -> mixture: the chosen one, then the baselines."""
    chosen_mixture = simplex.from_mapping(dict(chosen), exp.domains).tolist()
    return {"chosen": chosen_mixture, **baseline_mixtures(exp, stats)}


def final_seeds(exp: Experiment) -> list[int]:
    return [exp.seed + i for i in range(exp.final.seeds)]


def final_scores_ref(exp: Experiment, run: ArtifactRef, data: ArtifactRef) -> ArtifactRef:
    spec = {
        "run": run.key,
        "evaluation": evaluation_spec(exp),
        "domains": exp.domains,
        "data": data.key,
    }
    return ArtifactRef.for_spec("final", "scores", spec, code=code_version("final"))


def score_final_run(
    exp: Experiment,
    store: Store,
    run: ArtifactRef,
    data: ArtifactRef,
    progress: Progress | None = None,
) -> ArtifactRef:
    """A final run's checkpoint scored like the merges (benchmarks, held-out loss): apart from
    its training, so an edited task or metric rescores the run and never retrains it."""
    ref = final_scores_ref(exp, run, data)
    if store.exists(ref):
        return ref
    if progress is not None:
        progress(0, 1, "scoring final run")
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(run)), exp.model, device)
    metrics = make_evaluator(exp, store, data, prepared, model, device).evaluate()
    info = store.manifest(run)["info"]
    out = store.staging(ref)
    scores = {"run": run.key, "alpha": info["alpha"], "seed": info["seed"], "metrics": metrics}
    (out / "scores.json").write_text(canonical_json(scores))
    if progress is not None:
        progress(1, 1, "final run scored")
    return store.publish(ref, out, info={"run": run.key})


def final_summary_ref(
    exp: Experiment,
    runs: Mapping[str, Sequence[ArtifactRef]],
    scores: Mapping[str, Sequence[ArtifactRef]],
    utility_scale: Mapping[str, Any] | None = None,
) -> ArtifactRef:
    spec = {
        "runs": {name: [r.key for r in refs] for name, refs in runs.items()},
        "scores": {name: [r.key for r in refs] for name, refs in scores.items()},
        "utility_scale": dict(utility_scale or {}),
        "group_weights": exp.search.group_weights,
        "groups": exp.evaluation.groups,
    }
    return ArtifactRef.for_spec("final", "summary", spec, code=code_version("final"))


# The level of the paired interval a final-training win or loss must clear.
LEVEL = 0.9


def compare_runs(
    metrics: Mapping[str, Sequence[Mapping[str, float]]],
    domains: Sequence[str],
    groups: Sequence[str],
    weights: Mapping[str, float] | None = None,
    scale: Transform | None = None,
) -> pd.DataFrame:
    """Per metric (utility, groups, mean loss, losses, then each task's accuracy and `also`
    metrics where every run reports them): the chosen mixture's mean and seed sd, each
    baseline's, and the chosen-minus-baseline gain oriented so that positive is better, with
    the `LEVEL` t interval of the per-seed differences (runs i of every mixture share data-order
    seed i). A win or loss is called only when that interval excludes zero: "beyond the seed
    spread" (gain > the runs' combined sd) called 15 % of no-difference comparisons a win and
    15 % a loss with two seeds (review 38). `also.<task>.<metric>` rows are not judged (lm-eval
    does not say for every metric whether higher is better). The utility puts the groups on
    `scale` (the search's, `search.normaliser`) when given."""
    rows = []
    columns = ["utility"] * bool(groups) + [f"group.{g}" for g in groups]
    columns += ["mean_loss"] + [f"loss.{d}" for d in domains]
    runs = [m for ms in metrics.values() for m in ms]
    columns += [k for k in runs[0] if is_beside(k) and all(k in m for m in runs)]

    def values(name: str, column: str) -> np.ndarray:
        out = []
        for m in metrics[name]:
            if column == "utility":
                scores = {g: np.array([m[f"group.{g}"]]) for g in groups}
                if scale is not None:
                    scores = {g: scale(g, v) for g, v in scores.items()}
                out.append(float(utility(scores, dict(weights) if weights else None)[0]))
            elif column == "mean_loss":
                out.append(float(np.mean([m[f"loss.{d}"] for d in domains])))
            else:
                out.append(float(m[column]))
        return np.array(out)

    for column in columns:
        lower_wins = column == "mean_loss" or column.startswith("loss.")  # not group.glossary
        sign = -1.0 if lower_wins else 1.0
        chosen = values("chosen", column)
        row: dict[str, Any] = {
            "metric": column,
            "chosen": chosen.mean(),
            "chosen sd": _sd(chosen),
        }
        for name in BASELINES:
            if name not in metrics:
                continue
            base = values(name, column)
            low, high = paired_interval(sign * (chosen - base), LEVEL)
            row[name] = base.mean()
            row[f"{name} sd"] = _sd(base)
            row[f"gain vs {name}"] = sign * (chosen.mean() - base.mean())
            row[f"low vs {name}"], row[f"high vs {name}"] = low, high
            row[f"wins vs {name}"] = _call(column, low, high)
        rows.append(row)
    return pd.DataFrame(rows)


def _call(column: str, low: float, high: float) -> str:
    """yes / no / within noise from the paired interval; `also` rows are not judged."""
    if column.startswith("also."):
        return NOT_JUDGED
    if not math.isfinite(low):
        return UNTESTED
    return "yes" if low > 0 else "no" if high < 0 else WITHIN


def paired_interval(differences: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` t interval of the mean of per-seed differences (nan, nan with one
    seed; the mean itself when every seed differs by the same amount)."""
    n = len(differences)
    if n < 2:
        return math.nan, math.nan
    mean = float(differences.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * _sd(differences) / math.sqrt(n)
    return mean - half, mean + half


def _sd(v: np.ndarray) -> float:
    return float(np.std(v, ddof=1)) if len(v) > 1 else math.nan


def final_training(
    exp: Experiment,
    store: Store,
    runs: Mapping[str, Sequence[ArtifactRef]],
    scores: Mapping[str, Sequence[ArtifactRef]],
    utility_scale: Mapping[str, Any] | None = None,
) -> ArtifactRef:
    """The comparison table of the final runs (from their scores) and the address of the final
    model (the chosen mixture's first run); the utility on the choice's `utility_scale`."""
    ref = final_summary_ref(exp, runs, scores, utility_scale)
    if store.exists(ref):
        return ref
    if "chosen" not in runs or not runs["chosen"]:
        raise ValueError("final_training: no runs of the chosen mixture")
    loaded = {
        name: [store.load_json(r, "scores.json") for r in refs] for name, refs in scores.items()
    }
    metrics = {name: [s["metrics"] for s in found] for name, found in loaded.items()}
    table = compare_runs(
        metrics,
        exp.domains,
        exp.evaluation.groups,
        exp.search.group_weights or None,
        scale_from_spec(utility_scale),
    )
    out = store.staging(ref)
    table.to_parquet(out / "comparison.parquet", index=False)
    model = runs["chosen"][0]
    summary = {
        "model": model.path,
        "model_uri": store.uri(model),
        "alphas": {name: found[0]["alpha"] for name, found in loaded.items()},
        "seeds": len(runs["chosen"]),
        "utility_scale": (utility_scale or {}).get("normalise", "raw"),
    }
    (out / "final.json").write_text(canonical_json(summary))
    return store.publish(ref, out, info={"model": model.path})
