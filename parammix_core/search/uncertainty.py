"""How sure a choice is: the chosen mixture's predicted gain over a baseline, with an interval.

Two things could make a predicted gain an accident: which mixtures happened to be evaluated,
and which documents happened to score them. The interval covers both with one bootstrap:
each replicate resamples the evaluated mixtures (rows) and, jointly for every mixture, the
documents of every task (so the pairing of mixtures on the same documents is kept), recomputes
the group scores, refits one surrogate per group and predicts the utility at the chosen
mixture and at each baseline. The interval is the replicates' central `level` share of
(chosen - baseline). When it holds zero, the data cannot tell the chosen mixture from the
baseline, and the run says so instead of presenting noise as a result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from parammix_core.config import EvalTask

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
    """
    rng = np.random.default_rng(seed)
    n = len(alphas)
    names = list(baselines)
    at = np.vstack([chosen, *[baselines[b] for b in names]])  # (1 + B, K)
    total = sum(weights.values())
    gains = np.empty((replicates, len(names)))
    for r in range(replicates):
        rows = rng.integers(0, n, size=n)
        docs = {
            t.name: rng.integers(0, per_doc[t.name].shape[1], per_doc[t.name].shape[1])
            for t in tasks
        }
        scores = group_scores({k: v[rows] for k, v in per_doc.items()}, tasks, docs)
        utility = (
            sum(weights[g] * transform(g, fits[g](alphas[rows], y)(at)) for g, y in scores.items())
            / total
        )
        gains[r] = utility[0] - utility[1:]
    tail = (1 - level) / 2
    low, high = np.quantile(gains, [tail, 1 - tail], axis=0)
    return {
        b: GainInterval(b, float(point[b]), float(low[i]), float(high[i]), level, replicates)
        for i, b in enumerate(names)
    }


def verdict(intervals: Mapping[str, GainInterval], help_text: str) -> str:
    """One plain sentence on whether the chosen mixture beats the baselines beyond noise."""
    parts = [f"{b} {iv.gain:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]" for b, iv in intervals.items()]
    level = next(iter(intervals.values())).level
    head = f"predicted utility gain of the chosen mixture ({level:.0%} interval): " + "; ".join(
        parts
    )
    if all(iv.low > 0 for iv in intervals.values()):
        return head + ". The chosen mixture is predicted to beat them beyond the noise."
    if "uniform" in intervals and not intervals["uniform"].distinguishable:
        return (
            head + ". No mixture is distinguishable from uniform at this budget: "
            "the interval holds zero. " + help_text
        )
    return head + ". Not every baseline is beaten beyond the noise."
