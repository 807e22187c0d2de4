"""DeMix's search procedure (Li et al., 2025; read from the authors' public code, written anew).

Sampling. Mixtures are drawn around a prior, the domains' natural proportions: each draw is
Dirichlet(prior^T / sum(prior^T) * s), with the temperature T <= 1 flattening the prior and
a strength s log-uniform in [strength_min, strength_max] (small s: sparse mixtures far from the
prior; large s: close to it). Weights below `min_weight` are dropped. A domain's weight is
capped at `max_usage` times its (untempered) prior share - the number of times its data may be
repeated - and mass above a cap is handed to the other domains in proportion to their weights.

Iterations. Iteration 0 evaluates `initial` prior draws. Then a LightGBM predictor is fitted on
every evaluated mixture, a pool of `pool` fresh prior draws is ranked by it, and iteration i
evaluates initial / 2^i mixtures drawn at random from the `top` best-predicted ones: the
evaluated set halves each iteration while the search narrows to the predicted best region.
After `halvings` iterations the final mixture is the mean of the `top` best-predicted pool
mixtures under the predictor refitted on everything; it is proposed once, and any further
proposals are drawn from the top like another iteration.

In the flow the iteration is read off the history's size (the initial design and imported runs
count towards iteration 0), and the predictor is refitted once per flow round: a
`search.batch_size` dividing the iteration sizes follows the schedule exactly, a larger one
finishes the round in the iteration it started in.

Differences from the reference code: one predictor on the utility (the reference fits one per
benchmark and averages their percentile ranks), the house LightGBM settings, continuous
log-uniform strengths (the reference picks one of 15 log-spaced values), no rounding of weights
to a grid, caps enforced exactly (the reference rescales one capped domain at a time, which can
push an earlier one back over its cap), and the pool drawn afresh each iteration.
"""

from __future__ import annotations

import lightgbm
import numpy as np

from parammix_core.search.base import History, Strategy
from parammix_core.search.common import SearchError
from parammix_core.surrogate import lightgbm_params


def usage_caps(prior: np.ndarray, max_usage: float) -> np.ndarray:
    """Each domain's largest weight, (K,): max_usage times its prior share, at most 1."""
    return np.minimum(prior * max_usage, 1.0)


def tempered(prior: np.ndarray, temperature: float) -> np.ndarray:
    """The prior raised to `temperature` and renormalised, (K,)."""
    p = prior**temperature
    return p / p.sum()


def scale_into_bounds(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Each row of x (N, K) as clip(c * x, lo, hi) summing to 1, with one scale c per row.

    Mass above a cap goes to the other domains in proportion to their weights (the KL
    projection of `base.kl_project`, for all rows at once by bisection on log c).
    """
    log_x = np.log(np.maximum(x, 1e-300))  # (N, K)
    a = -log_x.max(axis=1, keepdims=True) - 750.0  # every c * x underflows: the sum is sum(lo)
    b = -log_x.min(axis=1, keepdims=True) + 1.0  # every c * x >= e: the sum is sum(hi)
    for _ in range(100):
        mid = 0.5 * (a + b)
        over = np.clip(np.exp(log_x + mid), lo, hi).sum(axis=1, keepdims=True) > 1.0
        a, b = np.where(over, a, mid), np.where(over, mid, b)
    out = np.clip(np.exp(log_x + 0.5 * (a + b)), lo, hi)
    return np.clip(out / out.sum(axis=1, keepdims=True), lo, hi)


def prior_draws(
    prior: np.ndarray,
    n: int,
    rng: np.random.Generator,
    strengths: tuple[float, float],
    min_weight: float,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """n mixtures (n, K) drawn around `prior` (already tempered) inside [lo, hi]."""
    s = np.exp(rng.uniform(np.log(strengths[0]), np.log(strengths[1]), size=n))  # (n,)
    gammas = rng.gamma(prior[None, :] * s[:, None])  # (n, K): a Dirichlet draw per row
    rows = np.flatnonzero(gammas.sum(axis=1) == 0)  # all gammas underflowed: redraw them
    while rows.size:
        gammas[rows] = rng.gamma(prior[None, :] * s[rows, None])
        rows = rows[gammas[rows].sum(axis=1) == 0]
    x = gammas / gammas.sum(axis=1, keepdims=True)
    keep = (x >= min_weight) | (x == x.max(axis=1, keepdims=True))  # never drop a whole row
    return scale_into_bounds(np.where(keep, x, 0.0), lo, hi)


def iteration(n_seen: int, initial: int, halvings: int) -> int:
    """The iteration a history of n_seen rows is in: 0 .. halvings, or halvings + 1 when
    every iteration is done (the final mixture's turn)."""
    end = 0
    for i in range(halvings + 1):
        end += max(1, initial >> i)
        if n_seen < end:
            return i
    return halvings + 1


def best_indices(predicted: np.ndarray, top: int) -> np.ndarray:
    """Indices of the `top` largest predictions, best first (ties by position)."""
    return np.argsort(-predicted, kind="stable")[:top]


def from_top(
    pool: np.ndarray, predicted: np.ndarray, n: int, top: int, rng: np.random.Generator
) -> np.ndarray:
    """n pool rows (n, K) drawn without replacement among the max(top, n) best predicted."""
    best = best_indices(predicted, max(top, n))
    return pool[rng.choice(best, size=n, replace=False)]


class DemixStrategy(Strategy):
    """Prior-centred draws under usage caps, then halving iterations from a predictor's top.

    Args:
        prior: the domains' natural proportions (K,), positive; None means uniform.
        initial: mixtures of iteration 0; iteration i has initial / 2^i.
        halvings: iterations after iteration 0.
        pool: prior draws ranked by the predictor in each iteration.
        top: best-predicted pool mixtures proposals are drawn from and the final one averages.
        temperature: the prior is raised to this power (0 < T <= 1) before sampling.
        max_usage: a domain's weight is at most max_usage x its prior share (>= 1).
        strength_min, strength_max: range of the Dirichlet strength (log-uniform).
        min_weight: drawn weights below this are dropped.
    """

    name = "demix"

    def __init__(
        self,
        k: int,
        lo=None,
        hi=None,
        seed: int = 0,
        prior: np.ndarray | None = None,
        initial: int = 32,
        halvings: int = 2,
        pool: int = 20_000,
        top: int = 128,
        temperature: float = 0.7,
        max_usage: float = 4.0,
        strength_min: float = 0.5,
        strength_max: float = 5.0,
        min_weight: float = 2e-4,
    ):
        super().__init__(k, lo, hi, seed)
        if initial < 1 or halvings < 0 or not 1 <= top <= pool:
            raise SearchError(
                f"demix: need initial >= 1, halvings >= 0 and 1 <= top <= pool; got "
                f"initial={initial}, halvings={halvings}, top={top}, pool={pool}"
            )
        if not 0 < temperature <= 1 or max_usage < 1 or not 0 <= min_weight <= 0.1:
            raise SearchError(
                f"demix: need 0 < temperature <= 1, max_usage >= 1 and 0 <= min_weight <= "
                f"0.1; got temperature={temperature}, max_usage={max_usage}, "
                f"min_weight={min_weight}"
            )
        if not 0 < strength_min <= strength_max:
            raise SearchError(
                f"demix: need 0 < strength_min <= strength_max; got {strength_min}, {strength_max}"
            )
        self.prior = self._checked_prior(prior)
        self.caps = np.minimum(self.hi, usage_caps(self.prior, max_usage))  # (K,)
        if (self.lo > self.caps + 1e-12).any() or self.caps.sum() < 1 - 1e-9:
            raise SearchError(
                f"demix: the usage caps min(max_usage x prior, max) = "
                f"{np.round(self.caps, 6).tolist()} leave no mixture with the floors "
                f"{self.lo.tolist()}; raise search.strategies.demix.max_usage (now {max_usage})"
            )
        self.initial, self.halvings, self.pool, self.top = initial, halvings, pool, top
        self.sampling_prior = tempered(self.prior, temperature)
        self.strengths = (strength_min, strength_max)
        self.min_weight = min_weight

    def _checked_prior(self, prior: np.ndarray | None) -> np.ndarray:
        if prior is None:
            return np.full(self.k, 1.0 / self.k)
        p = np.asarray(prior, dtype=float)
        if p.shape != (self.k,) or not np.isfinite(p).all() or (p <= 0).any():
            raise SearchError(
                f"demix: the prior must be {self.k} positive finite weights, one per domain; "
                f"got {p.tolist()}"
            )
        return p / p.sum()

    def draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n prior-centred mixtures (n, K) inside the floors and the usage caps."""
        return prior_draws(
            self.sampling_prior, n, rng, self.strengths, self.min_weight, self.lo, self.caps
        )

    def _propose(self, history: History, n: int) -> np.ndarray:
        rng = np.random.default_rng(self._rng_seed(history))
        step = iteration(history.n, self.initial, self.halvings)
        if step == 0:
            return self.draws(n, rng)
        if n > self.pool:
            raise SearchError(
                f"demix: {n} proposals asked of a pool of {self.pool}; raise "
                "search.strategies.demix.pool"
            )
        pool = self.draws(self.pool, rng)  # (P, K)
        predicted = self._predictor(history).predict(pool, num_threads=1)  # (P,)
        if step <= self.halvings:
            return from_top(pool, predicted, n, self.top, rng)
        final = pool[best_indices(predicted, self.top)].mean(axis=0)  # (K,)
        seen = history.n > 0 and np.abs(history.x - final).sum(axis=1).min() < 1e-6
        if seen:
            return from_top(pool, predicted, n, self.top, rng)
        return np.vstack([final[None, :], from_top(pool, predicted, n - 1, self.top, rng)])

    def _predictor(self, history: History) -> lightgbm.Booster:
        """LightGBM on every evaluated mixture's utility (leaves allowed down to 2 rows)."""
        params = lightgbm_params(self.seed)
        params["min_child_samples"] = min(params["min_child_samples"], max(2, history.n // 4))
        return lightgbm.LGBMRegressor(**params).fit(history.x, history.y).booster_
