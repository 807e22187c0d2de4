"""Choose the mixture: maximise a utility over the surrogates' predicted group scores.

The utility is a weighted mean of the capability-group scores (equal weights unless the config
says otherwise). The search scores a large pool of mixtures sampled inside the per-domain
floors and caps, then averages the top-k instead of taking the argmax: a tree surrogate is
piecewise constant, so its single best point is mostly noise, while the mean of the best
region is stable. The box ∩ simplex is convex, so that mean stays inside the bounds.

The chosen mixture is reported beside the uniform and the natural-proportion mixtures, all
scored by the same surrogates, and beside the mixtures chosen if one group counted REWEIGHT
times as much: where groups trade off, the weights rather than the data decide the choice, and
those mixtures show by how much.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parammix_core import simplex
from parammix_core.config import SearchConfig
from parammix_core.search.common import (
    SearchError,
    Transform,
    normaliser,
    resolve_weights,
    scale_spec,
    search_bounds,
    utility,
)
from parammix_core.surrogate import SurrogateSet

REWEIGHT = 2.0  # how much more one group counts in `Choice.reweighted`


@dataclass
class Choice:
    """The chosen mixture, its predicted scores, and the baselines scored the same way.

    Attributes:
        alpha: domain -> weight of the chosen mixture.
        predicted: group -> predicted score at `alpha`.
        predicted_utility: the utility of `predicted`.
        weights: group -> utility weight used (resolved: equal unless configured).
        baselines: name ("uniform", "natural") -> {"alpha", "predicted", "predicted_utility"}.
        top_k: the averaged candidates, best first: {"alpha", "predicted", "predicted_utility"}.
        normalise: how groups were put on one scale (`predicted_utility` is in its units).
        contributions: group -> its weighted share of the utility margin over uniform.
        intervals: baseline -> the gain over it with a bootstrap interval (`GainInterval`).
        verdict: one sentence on whether the choice beats the baselines beyond the noise.
        scale: `scale_spec` of the groups' scale ({} for raw), for judging the choice later.
        real_scale: group -> the line mapping merge scores to real runs' (`real_scale`), when
            the choice was made on the real runs' scale ({} otherwise).
        held_out: the multi-fidelity GP's check on held-out rows (`HeldOutRuns`: n, folds, r2,
            scale, shuffled, reached, p) that its verdict rests on ({} otherwise).
        reweighted: group -> the mixture chosen the same way were that group's weight REWEIGHT
            times larger ({"alpha", "predicted", "predicted_utility"}, the utility at the
            configured weights), ({} when the choice was not made from surrogates).
    """

    alpha: dict[str, float]
    predicted: dict[str, float]
    predicted_utility: float
    weights: dict[str, float]
    baselines: dict[str, dict] = field(default_factory=dict)
    top_k: list[dict] = field(default_factory=list)
    normalise: str = "raw"
    contributions: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, dict] = field(default_factory=dict)
    verdict: str = ""
    scale: dict[str, Any] = field(default_factory=dict)
    real_scale: dict[str, dict] = field(default_factory=dict)
    held_out: dict[str, float] = field(default_factory=dict)
    reweighted: dict[str, dict] = field(default_factory=dict)

    @property
    def domains(self) -> list[str]:
        return list(self.alpha)

    @property
    def groups(self) -> list[str]:
        return list(self.predicted)

    def moved(self, group: str) -> float:
        """The share of the data that changes domain when `group` counts REWEIGHT times as
        much (half the L1 distance between the two mixtures)."""
        other = self.reweighted[group]["alpha"]
        return 0.5 * sum(abs(other[d] - w) for d, w in self.alpha.items())

    def to_json(self) -> dict:
        return {
            "alpha": dict(self.alpha),
            "predicted": dict(self.predicted),
            "predicted_utility": self.predicted_utility,
            "weights": dict(self.weights),
            "baselines": {k: _copy_point(v) for k, v in self.baselines.items()},
            "top_k": [_copy_point(c) for c in self.top_k],
            "normalise": self.normalise,
            "contributions": dict(self.contributions),
            "intervals": {k: dict(v) for k, v in self.intervals.items()},
            "verdict": self.verdict,
            "scale": dict(self.scale),
            "real_scale": {g: dict(v) for g, v in self.real_scale.items()},
            "held_out": dict(self.held_out),
            "reweighted": {g: _copy_point(p) for g, p in self.reweighted.items()},
        }

    @classmethod
    def from_json(cls, d: dict) -> Choice:
        keys = ("alpha", "predicted", "predicted_utility", "weights", "baselines", "top_k")
        missing = [k for k in keys if k not in d]
        if missing:
            raise SearchError(f"choice JSON lacks key(s) {missing}")
        return cls(
            alpha={k: float(v) for k, v in d["alpha"].items()},
            predicted={k: float(v) for k, v in d["predicted"].items()},
            predicted_utility=float(d["predicted_utility"]),
            weights={k: float(v) for k, v in d["weights"].items()},
            baselines={k: _copy_point(v) for k, v in d["baselines"].items()},
            top_k=[_copy_point(c) for c in d["top_k"]],
            normalise=str(d.get("normalise", "raw")),
            contributions={k: float(v) for k, v in d.get("contributions", {}).items()},
            intervals={k: dict(v) for k, v in d.get("intervals", {}).items()},
            verdict=str(d.get("verdict", "")),
            scale=dict(d.get("scale", {})),
            real_scale={g: dict(v) for g, v in d.get("real_scale", {}).items()},
            held_out=dict(d.get("held_out", {})),
            reweighted={g: _copy_point(p) for g, p in d.get("reweighted", {}).items()},
        )


def choose_mixture(
    surrogates: SurrogateSet,
    domains: list[str],
    groups: list[str],
    cfg: SearchConfig,
    seed: int,
    natural: dict[str, float] | None = None,
    measured: Mapping[str, np.ndarray] | None = None,
    paired_se: Mapping[str, float] | None = None,
    real_scale: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> Choice:
    """Average the top-k of a bounded candidate pool by predicted utility.

    Args:
        surrogates: fitted on mixtures in `domains` order, with targets `group.<g>`.
        domains: domain names, the order of the surrogates' inputs.
        groups: capability groups in the utility.
        cfg: n_candidates, top_k, group_weights, bounds.
        seed: seeds the candidate pool.
        natural: domain -> natural proportion (or token count; normalised here), for the
            "natural" baseline; None leaves that baseline out.
        measured, paired_se: group -> scores over the evaluated mixtures and the paired
            standard error against uniform, for `cfg.utility.normalise` (`normaliser`).
        real_scale: group -> a map of merge scores onto real runs' (`real_scale.GroupLine`):
            predictions, `measured` and `paired_se` are mapped before anything else.
    Each group is predicted by the model that wins its cross-validation (LightGBM or linear).
    """
    k = len(domains)
    if surrogates.n_inputs != k:
        raise SearchError(
            f"surrogates take {surrogates.n_inputs} weights but there are {k} domains {domains}"
        )
    targets = [f"group.{g}" for g in groups]
    absent = [t for t in targets if t not in surrogates.targets]
    if absent:
        raise SearchError(f"no surrogate for {absent}; fitted targets are {surrogates.targets}")
    weights = resolve_weights(groups, cfg.group_weights)
    pool = candidate_pool(domains, cfg, seed, cfg.n_candidates)  # (C, K)

    to_real = on_real_scale(groups, real_scale)
    measured, paired_se = mapped_noise(to_real, measured, paired_se)
    scale = normaliser(cfg.utility.normalise, measured, paired_se)

    def score(x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        pred = surrogates.predict_best(x)
        per_group = {g: to_real(g, pred[t]) for g, t in zip(groups, targets, strict=True)}
        return per_group, utility({g: scale(g, v) for g, v in per_group.items()}, weights)

    per_group, u = score(pool)  # u: (C,)
    best = np.argsort(-u, kind="stable")[: cfg.top_k]
    top_k = [_point(domains, pool[i], {g: per_group[g][i] for g in groups}, u[i]) for i in best]
    chosen = _evaluate(domains, pool[best].mean(axis=0), score)
    scaled = {g: scale(g, v) for g, v in per_group.items()}
    reweighted = {}
    for g in groups:
        u_g = utility(scaled, {**weights, g: weights[g] * REWEIGHT})
        top = np.argsort(-u_g, kind="stable")[: cfg.top_k]
        reweighted[g] = _evaluate(domains, pool[top].mean(axis=0), score)

    baselines = {"uniform": _evaluate(domains, simplex.uniform(k), score)}
    if natural is not None:
        baselines["natural"] = _evaluate(domains, _natural(natural, domains), score)
    total = sum(weights.values())
    contributions = {
        g: weights[g]
        * float(
            scale(g, np.array([chosen["predicted"][g]]))[0]
            - scale(g, np.array([baselines["uniform"]["predicted"][g]]))[0]
        )
        / total
        for g in groups
    }
    return Choice(
        alpha=chosen["alpha"],
        predicted=chosen["predicted"],
        predicted_utility=chosen["predicted_utility"],
        weights=weights,
        baselines=baselines,
        top_k=top_k,
        normalise=cfg.utility.normalise,
        contributions=contributions,
        scale=scale_spec(cfg.utility.normalise, measured, paired_se),
        reweighted=reweighted,
    )


def on_real_scale(
    groups: list[str], real_scale: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None
) -> Transform:
    """transform(group, merge scores) -> the real runs' scale; the identity without a map."""
    if not real_scale:
        return lambda group, y: np.asarray(y, dtype=float)
    missing = [g for g in groups if g not in real_scale]
    if missing:
        raise SearchError(f"real-scale map lacks group(s) {missing}; groups are {groups}")
    return lambda group, y: np.asarray(real_scale[group](np.asarray(y, dtype=float)), dtype=float)


def mapped_noise(
    to_real: Transform,
    measured: Mapping[str, np.ndarray] | None,
    paired_se: Mapping[str, float] | None,
) -> tuple[dict[str, np.ndarray] | None, dict[str, float] | None]:
    """The evaluated scores and paired standard errors `normaliser` reads, on the real scale."""
    if measured is not None:
        measured = {g: to_real(g, v) for g, v in measured.items()}
    if paired_se is not None:
        paired_se = {g: float(np.ptp(to_real(g, [0.0, se]))) for g, se in paired_se.items()}
    return measured, paired_se


def _natural(natural: dict[str, float], domains: list[str]) -> np.ndarray:
    unknown = sorted(set(natural) - set(domains))
    missing = [d for d in domains if d not in natural]
    if unknown or missing:
        raise SearchError(
            f"natural proportions: unknown domain(s) {unknown}, missing domain(s) {missing}"
        )
    w = np.array([float(natural[d]) for d in domains])
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise SearchError(f"natural proportions must be non-negative and not all 0; got {natural}")
    return w / w.sum()


def candidate_pool(domains: list[str], cfg: SearchConfig, seed: int, size: int) -> np.ndarray:
    """The mixtures `choose_mixture` ranks: `size` draws inside the bounds, then the vertices
    and uniform when inside them. A smaller `size` samples the same distribution (what a
    simultaneous interval covers, `uncertainty.gain_intervals`)."""
    k = len(domains)
    lo, hi = search_bounds(domains, cfg.bounds)
    pool = simplex.sample_bounded(k, size, lo, hi, seed=seed)
    corners = np.vstack([simplex.vertices(k), simplex.uniform(k)])  # (K + 1, K)
    return np.vstack([pool, corners[simplex.within_bounds(corners, lo, hi)]])


def _evaluate(domains: list[str], alpha: np.ndarray, score) -> dict:
    per_group, u = score(alpha[None, :])
    return _point(domains, alpha, {g: s[0] for g, s in per_group.items()}, u[0])


def _point(domains: list[str], alpha: np.ndarray, predicted: dict, u: float) -> dict:
    return {
        "alpha": {d: float(a) for d, a in zip(domains, alpha, strict=True)},
        "predicted": {g: float(s) for g, s in predicted.items()},
        "predicted_utility": float(u),
    }


def _copy_point(p: dict) -> dict:
    return {
        "alpha": {k: float(v) for k, v in p["alpha"].items()},
        "predicted": {k: float(v) for k, v in p["predicted"].items()},
        "predicted_utility": float(p["predicted_utility"]),
    }
