"""What every search, and whatever judges a choice afterwards, shares: the utility over the
capability groups (their weights and common scales) and the per-domain bounds.

Evaluations, validation and final training import these and not the choice itself, so a
change to how the mixture is chosen or reported leaves their stored artifacts valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parammix_core import simplex
from parammix_core.config import Bounds


class SearchError(ValueError):
    """A search that cannot run: unknown groups or domains, missing surrogates, bad bounds."""


def resolve_weights(groups: list[str], weights: dict[str, float] | None) -> dict[str, float]:
    """Weight per group: equal when `weights` is None or empty, else exactly the given ones."""
    if not weights:
        return dict.fromkeys(groups, 1.0)
    unknown = sorted(set(weights) - set(groups))
    missing = [g for g in groups if g not in weights]
    if unknown or missing:
        raise SearchError(
            f"group weights: unknown group(s) {unknown}, missing group(s) {missing}; "
            f"groups are {list(groups)}"
        )
    bad = [g for g in groups if not weights[g] > 0]
    if bad:
        raise SearchError(f"group weights must be positive; not for {bad}")
    return {g: float(weights[g]) for g in groups}


Transform = Callable[[str, np.ndarray], np.ndarray]
"""transform(group, scores) -> the scores on the utility's common scale."""


def normaliser(
    mode: str,
    measured: Mapping[str, np.ndarray] | None = None,
    paired_se: Mapping[str, float] | None = None,
) -> Transform:
    """Put each group on a common scale, from its scores over the evaluated mixtures: as
    measured (raw), z-scores, percentile ranks (DeMix), or distances in units of the paired
    standard error against uniform (noise). Every mode is increasing in the score, so it
    changes how groups weigh against each other, never the order within a group."""
    if mode == "raw":
        return lambda group, y: np.asarray(y, dtype=float)
    if measured is None:
        raise SearchError(f"search.utility.normalise {mode!r} needs the evaluated scores")

    def spread(group: str) -> float:
        sd = float(np.std(measured[group], ddof=1)) if len(measured[group]) > 1 else 0.0
        if mode == "noise" and paired_se and paired_se.get(group, 0) > 0:
            return float(paired_se[group])
        return sd if sd > 0 else 1.0

    if mode in ("zscore", "noise"):
        centre = {g: float(np.mean(v)) for g, v in measured.items()}
        scale = {g: spread(g) for g in measured}
        return lambda group, y: (np.asarray(y, dtype=float) - centre[group]) / scale[group]
    if mode == "rank":
        ref = {g: np.sort(np.asarray(v, dtype=float)) for g, v in measured.items()}
        return lambda group, y: np.interp(y, ref[group], np.linspace(0, 1, len(ref[group])))
    raise SearchError(f"unknown normalisation {mode!r}")


def scale_spec(
    mode: str,
    measured: Mapping[str, np.ndarray] | None = None,
    paired_se: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """What `normaliser` needs, as JSON: a choice keeps it so that whatever judges the choice
    afterwards (validation, final training) scores the utility it optimised; {} for raw."""
    if mode == "raw":
        return {}
    return {
        "normalise": mode,
        "measured": {g: [float(x) for x in v] for g, v in (measured or {}).items()},
        "paired_se": {g: float(x) for g, x in (paired_se or {}).items()},
    }


def scale_from_spec(spec: Mapping[str, Any] | None) -> Transform | None:
    """The transform `scale_spec` describes; None (raw scores) for an empty spec."""
    if not spec:
        return None
    measured = {g: np.asarray(v, dtype=float) for g, v in spec["measured"].items()}
    return normaliser(spec["normalise"], measured, spec["paired_se"])


def utility(group_scores: dict[str, np.ndarray], weights: dict[str, float] | None) -> np.ndarray:
    """Weighted mean of the group scores, shape (N,); equal weights when `weights` is None."""
    if not group_scores:
        raise SearchError("no group scores to combine")
    w = resolve_weights(list(group_scores), weights)
    scores = [np.asarray(s, dtype=float) for s in group_scores.values()]
    shapes = {s.shape for s in scores}
    if len(shapes) != 1:
        raise SearchError(f"group scores differ in shape: {sorted(shapes)}")
    total = sum(w.values())
    return sum(w[g] * s for g, s in zip(group_scores, scores, strict=True)) / total


def search_bounds(domains: list[str], bounds: dict[str, Bounds]) -> tuple[np.ndarray, np.ndarray]:
    """Per-domain floors and caps (K,), (K,); a domain without bounds gets [0, 1]."""
    unknown = sorted(set(bounds) - set(domains))
    if unknown:
        raise SearchError(f"bounds for unknown domain(s) {unknown}; domains are {domains}")
    lo = np.array([bounds[d].min if d in bounds else 0.0 for d in domains])
    hi = np.array([bounds[d].max if d in bounds else 1.0 for d in domains])
    if lo.sum() > 1 + simplex.TOLERANCE or hi.sum() < 1 - simplex.TOLERANCE:
        raise SearchError(
            f"bounds leave no mixture: floors sum to {lo.sum():.6g}, caps to {hi.sum():.6g}"
        )
    return lo, hi
