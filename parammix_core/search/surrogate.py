"""Surrogate search (DeMix's idea; `demix` follows its procedure): LightGBM fitted on what has
been evaluated scores a large Dirichlet candidate pool; rounds shrink the pool around the
predicted best.

Round r draws N / 2^r candidates from the region (1 - s_r) * centre + s_r * Dirichlet with
s_r = 2^-r, centred on the mean of the previous round's top-k (a tree surrogate is piecewise
constant, so the mean of the best region is steadier than its argmax). The region is a convex
combination of bounded mixtures, so it stays inside the bounds. Proposals are the final top-k mean,
then the best-predicted candidates, each kept only if it is at least `spacing` (L1) away from
everything evaluated or already proposed, so the search never re-proposes a point it has.
A share `explore` of the proposals is drawn near the best evaluated mixture instead, because
trees predict flat beyond the data and would otherwise never look there.
"""

from __future__ import annotations

import lightgbm
import numpy as np

from parammix_core.search.base import History, Strategy
from parammix_core.search.common import SearchError
from parammix_core.surrogate import lightgbm_params


class SurrogateStrategy(Strategy):
    """LightGBM on the history, then shrinking candidate rounds.

    Args:
        n_candidates: candidates in the first round (N); round r has N / 2^r.
        rounds: number of rounds (3 gives N -> N/2 -> N/4).
        top_k: candidates averaged into each round's centre and the first proposal.
        min_rows: below this many evaluated rows there is nothing to fit: propose Dirichlet draws.
        spacing: minimum L1 distance of further proposals from evaluated and proposed mixtures.
        explore: expected fraction of proposals drawn near the best *evaluated* mixture
            (0.75 * best + 0.25 * Dirichlet) instead of from the trees' prediction.
    """

    name = "surrogate"

    def __init__(
        self,
        k: int,
        lo=None,
        hi=None,
        seed: int = 0,
        n_candidates: int = 8192,
        rounds: int = 3,
        top_k: int = 16,
        min_rows: int = 8,
        spacing: float = 0.05,
        explore: float = 0.25,
    ):
        super().__init__(k, lo, hi, seed)
        if n_candidates < top_k or top_k < 1 or rounds < 1 or min_rows < 2:
            raise SearchError(
                f"surrogate: need n_candidates >= top_k >= 1, rounds >= 1, min_rows >= 2; got "
                f"n_candidates={n_candidates}, top_k={top_k}, rounds={rounds}, min_rows={min_rows}"
            )
        if n_candidates >> (rounds - 1) < top_k:
            raise SearchError(
                f"surrogate: {rounds} rounds leave fewer than top_k={top_k} candidates"
            )
        self.n_candidates = n_candidates
        self.rounds = rounds
        self.top_k = top_k
        self.min_rows = min_rows
        self.spacing = spacing
        if not 0 <= explore <= 1:
            raise SearchError(f"surrogate: explore must be in [0, 1]; got {explore}")
        self.explore = explore

    def _propose(self, history: History, n: int) -> np.ndarray:
        seed = self._rng_seed(history)
        if history.n < self.min_rows:
            return self._dirichlet(n, seed)
        params = lightgbm_params(self.seed)
        params["min_child_samples"] = min(params["min_child_samples"], max(2, history.n // 4))
        model = lightgbm.LGBMRegressor(**params).fit(history.x, history.y).booster_
        pools, scores = [], []
        centre = None
        for r in range(self.rounds):
            draws = self._dirichlet(self.n_candidates >> r, seed + r)  # (C_r, K)
            pool = draws if centre is None else (1 - 0.5**r) * centre + 0.5**r * draws
            u = model.predict(pool, num_threads=1)  # (C_r,)
            centre = pool[np.argsort(-u, kind="stable")[: self.top_k]].mean(axis=0)
            pools.append(pool)
            scores.append(u)
        # the top-k mean first, then the pool by predicted utility
        pool = np.vstack([centre[None, :], *pools])  # (1 + sum C_r, K)
        order = np.concatenate([[0], 1 + np.argsort(-np.concatenate(scores), kind="stable")])
        out: list[np.ndarray] = []
        taken = history.x
        for i in order:
            if len(out) == n:
                break
            if taken.shape[0] == 0 or np.abs(taken - pool[i]).sum(axis=1).min() >= self.spacing:
                out.append(pool[i])
                taken = np.vstack([taken, pool[i][None, :]])
        if len(out) < n:  # the pool is exhausted at this spacing: fill with fresh draws
            out.extend(self._dirichlet(n - len(out), seed + self.rounds))
        # trees cannot extrapolate: a weight never seen above 0.04 is predicted flat there, so
        # the model alone can stall at the edge of the explored region; local draws reach past it
        n_explore = np.random.default_rng(seed).binomial(n, self.explore)
        if n_explore:
            best = history.x[history.y.argmax()]
            near = 0.75 * best + 0.25 * self._dirichlet(n_explore, seed + self.rounds + 1)
            out[n - n_explore :] = list(near)
        return np.asarray(out)  # (n, K)
