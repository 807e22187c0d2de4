"""Is the choice's interval calibrated? Held-out mixtures against their predicted intervals.

K-fold over the evaluated mixtures (the vertices and the uniform mixture always stay in the
training folds, as they anchor every surrogate and the gain): each fold's held-out mixtures
get the interval `uncertainty.utility_intervals` gives, from surrogates chosen and fitted on
the training folds exactly as the pipeline does (linear where it wins cross-validation, else
LightGBM), for their utility and for their gain over uniform. A calibrated 90 % interval holds
the held-out mixture's measured value about 90 % of the time.

The measured value is itself an estimate: every mixture is scored on one sample of documents.
Two checks tell a too-narrow interval from a noisy target:
- same documents: fit and target on every document. The target's document noise is shared
  with the training rows (each mixture is scored on the same documents), so this tests the
  interval against the surface the surrogates were fitted to.
- fresh documents (split-half): fit on one random half of every task's documents, measure the
  held-out mixture on the other half, so the target's document noise is independent of the fit. A
  calibrated interval for the true utility then covers the noisy target less often than
  nominal; widened by the target's own standard error (from its per-document scores, in
  quadrature, normal approximation) it should cover it at the nominal rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from sklearn.model_selection import KFold

from parammix_core import simplex
from parammix_core.config import EvalTask
from parammix_core.noise import group_noise, reference_row
from parammix_core.search.common import Transform, normaliser
from parammix_core.search.uncertainty import Fit, group_scores, utility_intervals
from parammix_core.surrogate import fit_surrogates, lightgbm_predictor, linear_fit

Choose = Callable[[np.ndarray, Mapping[str, np.ndarray]], dict[str, Fit]]
"""choose(alphas (N, K), group -> scores (N,)) -> group -> how its surrogate is fitted."""


class CalibrationError(ValueError):
    """Evaluated mixtures that cannot be split into held-out folds."""


@dataclass(frozen=True)
class HeldOut:
    """Held-out mixtures' predicted intervals and measured values, each (M,)."""

    low: np.ndarray
    high: np.ndarray
    measured: np.ndarray
    measured_se: np.ndarray  # the measured value's standard error from its documents
    level: float

    def coverage(self, widen: bool = False) -> float:
        """Share of measured values inside the interval; `widen` adds the target's own
        standard error in quadrature to each half-width (normal approximation)."""
        centre, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        if widen:
            z = norm.ppf(0.5 + self.level / 2)
            half = np.sqrt(half**2 + (z * self.measured_se) ** 2)
        return float(np.mean(np.abs(self.measured - centre) <= half))

    @property
    def mean_width(self) -> float:
        return float(np.mean(self.high - self.low))


def held_out_folds(alphas: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Row indices held out per fold; the vertices and the uniform mixture never are."""
    k = alphas.shape[1]
    anchors = np.vstack([simplex.vertices(k), simplex.uniform(k)])
    is_anchor = (np.abs(alphas[:, None, :] - anchors[None]).max(axis=2) < 1e-9).any(axis=1)
    if np.abs(alphas[reference_row(alphas)] - simplex.uniform(k)).max() >= 1e-9:
        raise CalibrationError("the uniform mixture was not evaluated: no gain to check")
    free = np.flatnonzero(~is_anchor)
    if folds < 2 or len(free) < folds:
        raise CalibrationError(
            f"--folds {folds}: needs 2 <= folds <= the {len(free)} evaluated mixtures that are "
            "neither a vertex nor uniform"
        )
    split = KFold(n_splits=folds, shuffle=True, random_state=seed).split(free)
    return [free[test] for _, test in split]


def cross_validated(
    alphas: np.ndarray,
    per_doc: Mapping[str, np.ndarray],
    tasks: Sequence[EvalTask],
    weights: Mapping[str, float],
    normalise: str,
    fit_docs: Mapping[str, np.ndarray],
    target_docs: Mapping[str, np.ndarray],
    folds: int,
    choose: Choose,
    seed: int,
    replicates: int,
    level: float,
    resample: str = "both",
) -> dict[str, HeldOut]:
    """ "utility" and "gain" (over uniform) of every held-out mixture, over all folds.

    Args:
        alphas: the evaluated mixtures (N, K); per_doc: task -> (N, D_task) scores.
        fit_docs, target_docs: task -> document indices the surrogates are fitted on and the
            held-out mixtures are measured on.
        choose: the surrogates per group from a training fold's rows (`pipeline_fits`).
        resample: what each bootstrap replicate draws (`uncertainty.RESAMPLE`).
    """
    ref = reference_row(alphas)
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {"utility": [], "gain": []}
    for fold, test in enumerate(held_out_folds(alphas, folds, seed)):
        train = np.setdiff1d(np.arange(len(alphas)), test)
        fitted = {t: v[train][:, fit_docs[t]] for t, v in per_doc.items()}
        scores = group_scores(fitted, tasks, {t: np.arange(v.shape[1]) for t, v in fitted.items()})
        noise = group_noise(alphas[train], fitted, tasks)
        transform = normaliser(normalise, scores, {g: n["paired_stderr"] for g, n in noise.items()})
        iv = utility_intervals(
            alphas[train],
            fitted,
            tasks,
            weights,
            alphas[test],
            choose(alphas[train], scores),
            transform,
            seed=seed + fold,
            replicates=replicates,
            level=level,
            baseline=alphas[ref],
            resample=resample,
        )
        utility, gain = _measured(per_doc, tasks, weights, transform, target_docs, test, ref)
        parts["utility"].append((iv.utility.low, iv.utility.high, *utility))
        parts["gain"].append((iv.gain.low, iv.gain.high, *gain))
    return {
        name: HeldOut(*(np.concatenate(col) for col in zip(*rows, strict=True)), level=level)
        for name, rows in parts.items()
    }


def pipeline_fits(cv_folds: int, seed: int) -> Choose:
    """The pipeline's rule: per group, linear where it wins `cv_folds`-fold cross-validation
    on the rows (`SurrogateSet.uses_linear`), else LightGBM."""

    def choose(alphas: np.ndarray, scores: Mapping[str, np.ndarray]) -> dict[str, Fit]:
        targets = {f"group.{g}": y for g, y in scores.items()}
        cv = fit_surrogates(alphas, targets, cv_folds, seed)
        return {
            g: linear_fit if cv.uses_linear(f"group.{g}") else lightgbm_predictor(seed)
            for g in scores
        }

    return choose


def _measured(
    per_doc: Mapping[str, np.ndarray],
    tasks: Sequence[EvalTask],
    weights: Mapping[str, float],
    transform: Transform,
    docs: Mapping[str, np.ndarray],
    rows: np.ndarray,
    ref: int,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((utility, its se), (gain over row `ref`, its se)) of `rows` measured on `docs`; the
    standard errors from the per-document scores (paired against `ref` for the gain),
    carried through the transform by its local slope."""
    total = sum(weights.values())
    utility, base_utility = np.zeros(len(rows)), 0.0
    var = {"utility": np.zeros(len(rows)), "gain": np.zeros(len(rows))}
    for group in dict.fromkeys(t.group for t in tasks):
        own = [t.name for t in tasks if t.group == group]
        mine = {t: per_doc[t][rows][:, docs[t]] for t in own}  # (M, D_t)
        base = {t: per_doc[t][ref, docs[t]] for t in own}  # (D_t,)
        score = np.mean([mine[t].mean(axis=1) for t in own], axis=0)  # (M,)
        w = weights[group] / total
        utility += w * transform(group, score)
        base_utility += w * transform(group, np.array([np.mean([base[t].mean() for t in own])]))[0]
        slope2 = (w * _slope(transform, group, score)) ** 2
        var["utility"] += slope2 * sum(_se2(mine[t]) for t in own) / len(own) ** 2
        var["gain"] += slope2 * sum(_se2(mine[t] - base[t]) for t in own) / len(own) ** 2
    gain = utility - base_utility
    return (utility, np.sqrt(var["utility"])), (gain, np.sqrt(var["gain"]))


def _se2(scores: np.ndarray) -> np.ndarray:
    """Squared standard error of each row's mean over its documents, (M,)."""
    return scores.var(axis=1, ddof=1) / scores.shape[1]


def _slope(transform: Transform, group: str, y: np.ndarray, step: float = 1e-4) -> np.ndarray:
    return (transform(group, y + step) - transform(group, y - step)) / (2 * step)
