"""Random search: Dirichlet draws inside the bounds, blind to the history - the baseline every
other strategy has to beat."""

from __future__ import annotations

import numpy as np

from parammix_core.search.base import History, Strategy
from parammix_core.search.common import SearchError


class RandomStrategy(Strategy):
    """Dirichlet(concentration) mixtures; concentration < 1 favours corners, > 1 the centre."""

    name = "random"

    def __init__(self, k: int, lo=None, hi=None, seed: int = 0, concentration: float = 1.0):
        super().__init__(k, lo, hi, seed)
        if not concentration > 0:
            raise SearchError(f"random: concentration must be positive; got {concentration}")
        self.concentration = concentration

    def _propose(self, history: History, n: int) -> np.ndarray:
        return self._dirichlet(n, self._rng_seed(history), self.concentration)  # (n, K)
