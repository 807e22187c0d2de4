"""One interface for every search strategy: read what has been evaluated, propose more.

A strategy sees the history - the evaluated mixtures (N, K), their utilities (N,) (higher is
better), optionally what each evaluation cost (N,) and at which fidelity it was measured (N,):
0 a merge, 1 a real mixed run - and proposes n new mixtures (n, K).
Proposals always lie on the simplex and inside the per-domain floors and caps: every strategy
passes its raw proposals through `project`, so no caller has to re-check them.

Strategies are registered by name; `get_strategy("bayes", k=4, seed=0, ...)` builds one, and an
unknown name fails with the list of known names and the closest matches.
"""

from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from parammix_core import simplex
from parammix_core.config import SearchConfig
from parammix_core.search.common import SearchError, search_bounds


class UnknownStrategyError(SearchError):
    """A strategy name that is not registered; the message lists the known ones."""


@dataclass(frozen=True)
class History:
    """What has been evaluated so far.

    Attributes:
        x: mixtures, shape (N, K), on the simplex.
        y: utilities, shape (N,), finite; higher is better.
        cost: cost of each evaluation, shape (N,), positive; None when all cost the same.
        fidelity: what each row measured, shape (N,), in [0, 1]: 0 the merge, 1 a real mixed
            run at the experts' budget; None when every row is a merge.
    """

    x: np.ndarray
    y: np.ndarray
    cost: np.ndarray | None = None
    fidelity: np.ndarray | None = None

    @classmethod
    def empty(cls, k: int) -> History:
        return cls(np.zeros((0, k)), np.zeros(0))

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=float)
        y = np.asarray(self.y, dtype=float)
        if x.ndim != 2:
            raise SearchError(f"history mixtures must have shape (N, K); got {x.shape}")
        if y.shape != (x.shape[0],):
            raise SearchError(f"history utilities have shape {y.shape}; expected ({x.shape[0]},)")
        bad = ~np.isfinite(x).all(axis=1) | (x < -simplex.TOLERANCE).any(axis=1)
        bad |= np.abs(x.sum(axis=1) - 1.0) > 1e-4
        if bad.any():
            rows = np.flatnonzero(bad)[:10].tolist()
            raise SearchError(f"history mixture row(s) {rows} are not on the simplex")
        if not np.isfinite(y).all():
            rows = np.flatnonzero(~np.isfinite(y))[:10].tolist()
            raise SearchError(f"history utility is NaN or inf at row(s) {rows}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if self.cost is not None:
            c = np.asarray(self.cost, dtype=float)
            if c.shape != y.shape:
                raise SearchError(f"history costs have shape {c.shape}; expected {y.shape}")
            if not (np.isfinite(c).all() and (c > 0).all()):
                rows = np.flatnonzero(~(np.isfinite(c) & (c > 0)))[:10].tolist()
                raise SearchError(f"history cost must be positive and finite; not at row(s) {rows}")
            object.__setattr__(self, "cost", c)
        if self.fidelity is not None:
            f = np.asarray(self.fidelity, dtype=float)
            if f.shape != y.shape:
                raise SearchError(f"history fidelities have shape {f.shape}; expected {y.shape}")
            if not ((f >= 0) & (f <= 1)).all():
                rows = np.flatnonzero(~((f >= 0) & (f <= 1)))[:10].tolist()
                raise SearchError(f"history fidelity must lie in [0, 1]; not at row(s) {rows}")
            object.__setattr__(self, "fidelity", f)

    @property
    def cost_or_empty(self) -> np.ndarray:
        return np.zeros(0) if self.cost is None else self.cost

    @property
    def fidelities(self) -> np.ndarray:
        """Each row's fidelity (N,): 0 (a merge) where none was given."""
        return np.zeros(self.n) if self.fidelity is None else self.fidelity

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def add(
        self,
        x: np.ndarray,
        y: np.ndarray,
        cost: np.ndarray | None = None,
        fidelity: np.ndarray | None = None,
    ) -> History:
        """A new history with rows appended; costs must be given always or never, rows
        without a fidelity are merges."""
        if self.n and (self.cost is None) != (cost is None):
            raise SearchError("history: give costs for every evaluation or for none")
        x, y = np.atleast_2d(x), np.atleast_1d(y)
        fidelities = None
        if fidelity is not None or self.fidelity is not None:
            new = np.zeros(len(y)) if fidelity is None else np.atleast_1d(fidelity)
            fidelities = np.concatenate([self.fidelities, new])
        return History(
            np.vstack([self.x, x]),
            np.concatenate([self.y, y]),
            None if cost is None else np.concatenate([self.cost_or_empty, np.atleast_1d(cost)]),
            fidelities,
        )


def project(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of x (N, K) onto {lo <= a <= hi, sum a = 1}.

    The projection is clip(x - tau, lo, hi) with the scalar tau that makes the row sum to 1;
    the sum is monotone in tau, so bisection finds it to machine precision.
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    lo_t = (x - hi).min(axis=1, keepdims=True)  # sum at tau=lo_t is sum(hi) >= 1
    hi_t = (x - lo).max(axis=1, keepdims=True)  # sum at tau=hi_t is sum(lo) <= 1
    for _ in range(100):
        mid = 0.5 * (lo_t + hi_t)
        too_big = np.clip(x - mid, lo, hi).sum(axis=1, keepdims=True) > 1.0
        lo_t = np.where(too_big, mid, lo_t)
        hi_t = np.where(too_big, hi_t, mid)
    out = np.clip(x - 0.5 * (lo_t + hi_t), lo, hi)  # (N, K)
    return _settle(out, lo, hi)


def kl_project(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """KL (Bregman) projection of positive weights v (K,) onto {lo <= a <= hi, sum a = 1}.

    The mirror-descent counterpart of `project`: clip(c * v, lo, hi) with the scale c that makes
    the sum 1 (found by bisection on log c). Without bounds it is v / sum(v).
    """
    v = np.maximum(np.asarray(v, dtype=float), 1e-300)
    log_v = np.log(v)
    a = -log_v.max() - 750.0  # every c * v_i underflows to 0: the sum is sum(lo) <= 1
    b = -log_v.min() + 1.0  # every c * v_i >= e > 1: the sum is sum(hi) >= 1
    for _ in range(200):
        mid = 0.5 * (a + b)
        if np.clip(np.exp(log_v + mid), lo, hi).sum() > 1.0:
            b = mid
        else:
            a = mid
    return _settle(np.clip(np.exp(log_v + 0.5 * (a + b)), lo, hi)[None, :], lo, hi)[0]


def _settle(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Absorb bisection round-off: rows sum to 1 exactly up to float error, bounds hold."""
    x = x / x.sum(axis=1, keepdims=True)
    return np.clip(x, lo, hi)


class Strategy(ABC):
    """Proposes mixtures given the history; deterministic for a given seed and history.

    Args:
        k: number of domains.
        lo, hi: per-domain floors and caps (K,); None means [0, 1].
        seed: seeds every random draw (mixed with the history size, so successive calls on a
            growing history draw differently yet reproducibly).
    """

    name: ClassVar[str]

    def __init__(
        self, k: int, lo: np.ndarray | None = None, hi: np.ndarray | None = None, seed: int = 0
    ) -> None:
        if k < 1:
            raise SearchError(f"a strategy needs at least one domain; got k={k}")
        self.k = k
        self.lo = np.zeros(k) if lo is None else np.asarray(lo, dtype=float)
        self.hi = np.ones(k) if hi is None else np.asarray(hi, dtype=float)
        if self.lo.shape != (k,) or self.hi.shape != (k,):
            raise SearchError(
                f"bounds must have shape ({k},); got {self.lo.shape}, {self.hi.shape}"
            )
        if (self.lo > self.hi).any() or self.lo.sum() > 1 + simplex.TOLERANCE:
            raise SearchError(
                f"bounds leave no mixture: lo={self.lo.tolist()} hi={self.hi.tolist()}"
            )
        if self.hi.sum() < 1 - simplex.TOLERANCE:
            raise SearchError(f"bounds leave no mixture: caps sum to {self.hi.sum():.6g} < 1")
        self.seed = seed

    def propose(self, history: History, n: int) -> np.ndarray:
        """n new mixtures, shape (n, K), on the simplex and inside the bounds."""
        self._check_request(history, n)
        return project(self._propose(history, n), self.lo, self.hi)

    def _check_request(self, history: History, n: int) -> None:
        if n < 1:
            raise SearchError(f"asked for {n} proposals; need at least 1")
        if history.x.shape[1] != self.k:
            raise SearchError(
                f"history mixtures have {history.x.shape[1]} weights; the strategy has k={self.k}"
            )

    @abstractmethod
    def _propose(self, history: History, n: int) -> np.ndarray:
        """Raw proposals (n, K); `propose` projects them onto the bounded simplex."""

    def _rng_seed(self, history: History) -> int:
        return self.seed * 1_000_003 + history.n

    def _dirichlet(self, n: int, seed: int, concentration: float = 1.0) -> np.ndarray:
        """n Dirichlet mixtures inside the bounds, (n, K)."""
        return simplex.sample_bounded(self.k, n, self.lo, self.hi, concentration, seed=seed)


class OneShotStrategy(Strategy):
    """A strategy that computes one optimum without evaluations (MixMin, MergeMix).

    Its first proposal is `self.optimum` (set by the subclass). Further proposals - the rest of
    a batch, or every later call once the optimum is in the history - are draws from the region
    0.75 * optimum + 0.25 * Dirichlet: the neighbourhood a user would check next.
    """

    optimum: np.ndarray  # (K,)

    def _propose(self, history: History, n: int) -> np.ndarray:
        done = history.n > 0 and np.abs(history.x - self.optimum).sum(axis=1).min() < 1e-6
        near = 0.75 * self.optimum + 0.25 * self._dirichlet(n, self._rng_seed(history))
        return near if done else np.vstack([self.optimum[None, :], near[: n - 1]])  # (n, K)


# name -> "module:Class", imported on first use so `import parammix_core.search` stays light
# (botorch takes seconds to import and only the bayes strategy needs it).
REGISTRY: dict[str, str] = {
    "random": "parammix_core.search.random:RandomStrategy",
    "surrogate": "parammix_core.search.surrogate:SurrogateStrategy",
    "demix": "parammix_core.search.demix:DemixStrategy",
    "bayes": "parammix_core.search.bayes:BayesStrategy",
    "mixmin": "parammix_core.search.mixmin:MixMinStrategy",
    "mergemix": "parammix_core.search.mergemix:MergeMixStrategy",
    "multifidelity": "parammix_core.search.multifidelity:MultiFidelityStrategy",
}


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as `name`; unknown names list the known ones and close matches."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownStrategyError(
            f"unknown search strategy {name!r}; available: {sorted(REGISTRY)}{hint}"
        )
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_strategy(name: str, **settings) -> Strategy:
    """The registered strategy `name`, built with `settings` (k, lo, hi, seed, ...)."""
    return strategy_class(name)(**settings)


def strategy_from_config(
    cfg: SearchConfig, domains: list[str], seed: int, **inputs: object
) -> Strategy:
    """The strategy `cfg.strategy` with its settings from `cfg.strategies` and `cfg.bounds`.

    `inputs` are what a strategy needs beyond settings: `logprobs` (mixmin), `objective`
    (mergemix), `prior` (demix: the natural proportions, in `domains` order), `levels`,
    `prior_costs` and `iteration` (multifidelity).
    """
    lo, hi = search_bounds(domains, cfg.bounds)
    chosen = getattr(cfg.strategies, cfg.strategy)
    loop = getattr(chosen, "LOOP", frozenset())  # the flow's settings, not the strategy's
    settings = {**chosen.model_dump(exclude=set(loop)), **inputs}
    return get_strategy(cfg.strategy, k=len(domains), lo=lo, hi=hi, seed=seed, **settings)
