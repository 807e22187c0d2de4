"""How sure a choice is: the chosen mixture's predicted gain over a baseline, with an interval.

Two things could make a predicted gain an accident: which mixtures happened to be evaluated,
and which documents happened to score them. The interval covers both with one bootstrap:
each replicate resamples the evaluated mixtures (rows) and, jointly for every mixture, the
documents of every task (so the pairing of mixtures on the same documents is kept), recomputes
the group scores, refits one surrogate per group and predicts the utility at the chosen
mixture and at each baseline. The interval is the replicates' central `level` share of
(chosen - baseline). When it holds zero, the data cannot tell the chosen mixture from the
baseline, and the run says so instead of presenting noise as a result.

The chosen mixture is the best of many candidates on the same documents, so noise that tilts
the scores in one direction also picks the mixture it flatters: on a flat surface a fixed
mixture's interval excluded zero 8-12 % of the time at 90 %, the chosen one's about 40 %.
Given the candidates it was picked among, the interval is therefore simultaneous over them
(`simultaneous_interval`): wide enough to hold every candidate's gain at once in `level` of
the replicates, so the one picked is held too.

`utility_intervals` gives any mixtures the same interval (their utility, and their gain over a
baseline) from the same bootstrap, so its calibration can be measured on held-out evaluated
mixtures (`search.calibration`, `benchmarks/interval_calibration.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from parammix_core.config import EvalTask

RESAMPLE = (
    "both",
    "documents",
)  # what a bootstrap replicate draws: rows and documents, or documents

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
"""fit(x (N, K), y (N,)) -> predict(x (M, K)) -> (M,): one group's surrogate."""


@dataclass(frozen=True)
class GainInterval:
    """Predicted utility gain of the chosen mixture over one baseline."""

    baseline: str
    gain: float  # from the surrogates fitted on all rows and documents
    low: float
    high: float
    level: float
    replicates: int

    @property
    def distinguishable(self) -> bool:
        """The interval lies on one side of zero."""
        return self.low > 0 or self.high < 0

    @property
    def outside(self) -> bool:
        """The fit on every row predicts a gain its own refits rarely reach: at the chosen
        mixture the surrogates depend on which mixtures and documents they saw."""
        return not self.low <= self.gain <= self.high

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def group_scores(
    per_doc: Mapping[str, np.ndarray], tasks: Sequence[EvalTask], docs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per group, the mean over its tasks of each task's mean over the documents `docs[task]`
    (indices, repeats allowed): the rows' group scores when `docs` holds every document."""
    out: dict[str, list[np.ndarray]] = {}
    for task in tasks:
        scores = per_doc[task.name][:, docs[task.name]].mean(axis=1)  # (N,)
        out.setdefault(task.group, []).append(scores)
    return {g: np.mean(s, axis=0) for g, s in out.items()}


def bootstrap_utility(
    alphas: np.ndarray,
    per_doc: Mapping[str, np.ndarray],
    tasks: Sequence[EvalTask],
    weights: Mapping[str, float],
    at: np.ndarray,
    fits: Mapping[str, Fit],
    transform: Callable[[str, np.ndarray], np.ndarray],
    seed: int,
    replicates: int,
    resample: str = "both",
) -> np.ndarray:
    """The utility predicted at the query mixtures `at` (M, K) by each bootstrap replicate,
    shape (replicates, M): the one resampling behind every interval here.

    Each replicate draws the evaluated mixtures (rows) with replacement and, jointly for all
    of them, each task's documents, recomputes the group scores, refits every group's
    surrogate with `fits[group]` and predicts at `at`. `resample` "documents" keeps every
    row once and draws the documents only (the alternative `benchmarks/interval_calibration.py`
    measures beside the default "both"). Other arguments as in `gain_intervals`.
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample {resample!r}: expected one of {list(RESAMPLE)}")
    rng = np.random.default_rng(seed)
    n = len(alphas)
    draws = np.empty((replicates, len(at)))
    for r in range(replicates):
        rows = rng.integers(0, n, size=n) if resample == "both" else np.arange(n)
        docs = {
            t.name: rng.integers(0, per_doc[t.name].shape[1], per_doc[t.name].shape[1])
            for t in tasks
        }
        resampled = {k: v[rows] for k, v in per_doc.items()}
        draws[r] = predicted_utility(
            alphas[rows], resampled, tasks, weights, at, fits, transform, docs
        )
    return draws


def predicted_utility(
    alphas: np.ndarray,
    per_doc: Mapping[str, np.ndarray],
    tasks: Sequence[EvalTask],
    weights: Mapping[str, float],
    at: np.ndarray,
    fits: Mapping[str, Fit],
    transform: Callable[[str, np.ndarray], np.ndarray],
    docs: Mapping[str, np.ndarray],
) -> np.ndarray:
    """The utility at `at` (M,) predicted by surrogates fitted on the rows `alphas` with
    their group scores over the documents `docs` (indices per task, repeats allowed)."""
    scores = group_scores(per_doc, tasks, docs)
    total = sum(weights.values())
    return sum(weights[g] * transform(g, fits[g](alphas, y)(at)) for g, y in scores.items()) / total


def central_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` share of the replicates (R, M): low (M,), high (M,)."""
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail], axis=0)
    return low, high


def simultaneous_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """An interval for the first column of the replicates (R, 1 + C) that holds, in `level`
    of them, every column's deviation from its mean at once: the mean -+ q sd, q the `level`
    quantile of the largest |deviation| / sd over the columns (the max-t band). Columns that
    do not vary are left out of the maximum."""
    mean, sd = draws.mean(axis=0), draws.std(axis=0, ddof=1)
    varies = sd > 0
    if not varies[0]:
        return float(mean[0]), float(mean[0])
    z = np.abs(draws[:, varies] - mean[varies]) / sd[varies]
    q = float(np.quantile(z.max(axis=1), level))
    return float(mean[0] - q * sd[0]), float(mean[0] + q * sd[0])


@dataclass(frozen=True)
class Band:
    """Predictions at M query mixtures with their intervals, each (M,)."""

    predicted: np.ndarray  # from the surrogates fitted on all rows and documents
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class UtilityIntervals:
    """The predicted utility of the query mixtures and, when a baseline was given, their
    predicted gain over it, both with the bootstrap's central `level` interval."""

    utility: Band
    gain: Band | None
    level: float
    replicates: int


def utility_intervals(
    alphas: np.ndarray,
    per_doc: Mapping[str, np.ndarray],
    tasks: Sequence[EvalTask],
    weights: Mapping[str, float],
    at: np.ndarray,
    fits: Mapping[str, Fit],
    transform: Callable[[str, np.ndarray], np.ndarray],
    seed: int,
    replicates: int = 100,
    level: float = 0.9,
    baseline: np.ndarray | None = None,
    resample: str = "both",
) -> UtilityIntervals:
    """The predicted utility of arbitrary mixtures `at` (M, K) with the bootstrap interval
    `gain_intervals` gives the chosen mixture; with `baseline` (K,), also each mixture's gain
    over it, replicate by replicate (so what both share cancels), from the same replicates.
    Other arguments as in `gain_intervals`."""
    query = at if baseline is None else np.vstack([at, baseline])
    every = {t.name: np.arange(per_doc[t.name].shape[1]) for t in tasks}
    draws = bootstrap_utility(
        alphas, per_doc, tasks, weights, query, fits, transform, seed, replicates, resample
    )
    point = predicted_utility(alphas, per_doc, tasks, weights, query, fits, transform, every)
    m = len(at)
    utility = Band(point[:m], *central_interval(draws[:, :m], level))
    gain = None
    if baseline is not None:
        gains = draws[:, :m] - draws[:, m:]
        gain = Band(point[:m] - point[m], *central_interval(gains, level))
    return UtilityIntervals(utility, gain, level, replicates)


def gain_intervals(
    alphas: np.ndarray,
    per_doc: Mapping[str, np.ndarray],
    tasks: Sequence[EvalTask],
    weights: Mapping[str, float],
    chosen: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    point: Mapping[str, float],
    fits: Mapping[str, Fit],
    transform: Callable[[str, np.ndarray], np.ndarray],
    seed: int,
    replicates: int = 100,
    level: float = 0.9,
    candidates: np.ndarray | None = None,
) -> dict[str, GainInterval]:
    """The chosen mixture's gain over each baseline with a bootstrap interval.

    Args:
        alphas: the evaluated mixtures, (N, K).
        per_doc: task -> per-document scores of every evaluated mixture, (N, D_task).
        tasks: the tasks and their groups (the utility's groups).
        weights: group -> utility weight.
        chosen: the chosen mixture, (K,); baselines: name -> mixture (K,).
        point: name -> the gain predicted by the full-data surrogates (the interval's centre).
        fits: group -> how its surrogate is fitted (the model that won its cross-validation).
        transform: puts a group's scores on the utility's scale (`choice.normaliser`).
        candidates: (C, K), the mixtures the choice was picked among (a sample of them):
            the interval is then simultaneous over them (`simultaneous_interval`); None: the
            central interval of a mixture fixed in advance.
    """
    names = list(baselines)
    picked = np.empty((0, len(chosen))) if candidates is None else candidates
    at = np.vstack([chosen, *[baselines[b] for b in names], *picked])  # (1 + B + C, K)
    utility = bootstrap_utility(
        alphas, per_doc, tasks, weights, at, fits, transform, seed, replicates
    )
    mixtures = np.hstack([utility[:, :1], utility[:, 1 + len(names) :]])  # (R, 1 + C)
    out = {}
    for i, b in enumerate(names):
        gains = mixtures - utility[:, 1 + i : 2 + i]
        if candidates is None:
            low, high = (float(v[0]) for v in central_interval(gains[:, :1], level))
        else:
            low, high = simultaneous_interval(gains, level)
        out[b] = GainInterval(b, float(point[b]), low, high, level, replicates)
    return out


def verdict(intervals: Mapping[str, GainInterval], help_text: str, on_merges: bool = False) -> str:
    """One plain sentence on whether the chosen mixture beats the baselines beyond noise.

    `on_merges`: the gains are the merges' (the surrogates of merge scores), a biased proxy
    whose own noise says nothing of real training's, so a win is claimed for the merges only.
    """
    parts = [f"{b} {iv.gain:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]" for b, iv in intervals.items()]
    level = next(iter(intervals.values())).level
    on = " on the merges" if on_merges else ""
    head = f"Predicted utility gain of the chosen mixture{on} ({level:.0%} interval): " + "; ".join(
        parts
    )
    unstable = [b for b, iv in intervals.items() if iv.outside]
    caveat = (
        f" The gain over {' and '.join(unstable)} lies outside its own interval: the "
        "surrogates refitted on resampled mixtures and documents disagree with the fit on all "
        "of them at this mixture, so its point gain is not to be trusted; the interval is."
        if unstable
        else ""
    )
    if all(iv.low > 0 for iv in intervals.values()) and on_merges:
        return (
            head + ". Its merge beats theirs beyond the merges' noise (resampled mixtures and "
            "documents); only real runs can say whether real training follows (the "
            "validation's, with `validation.enabled`)." + caveat
        )
    if all(iv.low > 0 for iv in intervals.values()):
        return head + ". The chosen mixture is predicted to beat them beyond the noise." + caveat
    if "uniform" in intervals and not intervals["uniform"].distinguishable:
        return (
            head + ". No mixture is distinguishable from uniform at this budget: "
            "the interval holds zero." + caveat + " " + help_text
        )
    return head + ". Not every baseline is beaten beyond the noise." + caveat
