"""Blended batches: a run's rows in its mixture's proportions, each domain read without replacement.

Drawing each row's domain independently (`train.sample_batch`) makes a run's composition a
sample of its mixture: a domain at weight a gets sqrt(n a (1 - a)) rows more or fewer than
a n, and two runs of one mixture differ by that much before their data orders do. Pre-training
pipelines blend instead (Megatron-LM's blended datasets, OLMo's fixed mixes): every stretch of
rows holds the mixture's proportions, and each domain is read through an epoch before a block
repeats. Here the domain of global row r is the slice of [0, 1) (widths: the weights) that
holds frac(offset + r / phi), a golden-ratio sequence whose every window is spread over the
slices in proportion to their widths to within a few rows, so row r's domain is a function of
r (a resumed run needs no sampler state); a domain's j-th row reads its block
(stride * j + shift) mod N in epoch j // N, stride coprime to N, both drawn from (seed,
domain, epoch). The prepared blocks are already in shuffled order, and the stride spreads
consecutive reads across the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # the golden-ratio step: the most even 1-D sequence
_CHUNK = 1 << 22  # rows per pass when counting the rows before a resumed step


def row_domains(alpha: np.ndarray, offset: float, start: int, count: int) -> np.ndarray:
    """Domain index of each global row start .. start + count - 1, (count,) int64.

    Zero weights get no rows: the sequence falls only into the slices of positive weight.
    """
    live = np.flatnonzero(alpha > 0)  # (L,)
    edges = np.cumsum(alpha[live] / alpha[live].sum())[:-1]  # (L-1,) inner slice boundaries
    rows = np.arange(start, start + count, dtype=np.float64)
    u = np.mod(offset + rows * INV_PHI, 1.0)  # (count,) in [0, 1)
    return live[np.searchsorted(edges, u, side="right")]


def block_indices(j: np.ndarray, size: int, seed: int, domain: int) -> np.ndarray:
    """Blocks read by a domain's rows number j (its own count), (len(j),) int64 in [0, size).

    Epoch e = j // size visits every block once, in the order (stride * i + shift) mod size.
    """
    out = np.empty_like(j)
    epochs = j // size
    for e in np.unique(epochs):
        rng = np.random.default_rng([seed, domain, int(e)])
        stride = _coprime_stride(size, rng)
        shift = int(rng.integers(size))
        here = epochs == e
        out[here] = (stride * (j[here] % size) + shift) % size
    return out


def _coprime_stride(size: int, rng: np.random.Generator) -> int:
    """A stride in [1, size) coprime to size (1 for size <= 2): (stride * i) mod size permutes."""
    if size <= 2:
        return 1
    while True:
        stride = int(rng.integers(1, size))
        if math.gcd(stride, size) == 1:
            return stride


class BlendedSampler:
    """The rows of one run, batch by batch from any step (a resumed run starts mid-way)."""

    def __init__(
        self, sizes: Sequence[int], weights: Sequence[float], seed: int, start_row: int = 0
    ) -> None:
        self.sizes = [int(n) for n in sizes]
        self.alpha = np.asarray(weights, dtype=np.float64)
        self.seed = seed
        self.offset = float(np.random.default_rng([seed, len(self.sizes)]).random())
        self.row = start_row
        self.seen = self._rows_per_domain(start_row)  # (K,) rows each domain has given so far

    def _rows_per_domain(self, rows: int) -> np.ndarray:
        seen = np.zeros(len(self.sizes), dtype=np.int64)
        for start in range(0, rows, _CHUNK):
            domains = row_domains(self.alpha, self.offset, start, min(_CHUNK, rows - start))
            seen += np.bincount(domains, minlength=len(self.sizes))
        return seen

    def batch(self, blocks: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
        """The next batch_size rows, (B, T): blocks[k] is domain k's (N_k, T) token blocks."""
        domains = row_domains(self.alpha, self.offset, self.row, batch_size)  # (B,)
        index = np.empty(batch_size, dtype=np.int64)
        for k in np.unique(domains):
            here = domains == k
            j = self.seen[k] + np.arange(here.sum())  # this domain's row numbers
            index[here] = block_indices(j, self.sizes[k], self.seed, int(k))
            self.seen[k] += here.sum()
        self.row += batch_size
        return torch.stack(
            [blocks[d][i] for d, i in zip(domains.tolist(), index.tolist(), strict=True)]
        )  # (B, T)
