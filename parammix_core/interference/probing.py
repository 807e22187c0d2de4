"""The probe itself: each domain's gradient g_k and every H_k g_j, put into a `VectorStore`
as soon as each is complete, and their reduction (norms, Gram matrix) slice by slice.

`probe_vectors` streams the K^2 vectors to any `VectorStore` (the stage's writes safetensors
files, `probe_shards`); `probe` and `ProbeResult` keep them all in memory, for small models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from parammix_core.hvp import Method, gradient, hvp

Progress = Callable[[int, int, str], None]


class ProbeError(ValueError):
    """Inconsistent probe input or stored probe tensors; the message names the tensor."""


Chunk = tuple[int, Tensor]  # (start, hg[:, :, start:start + n]) of shape (K, K, n)

# Parameters per reduction step, summed over the K^2 vectors: float32 slices of 16 MiB, and
# their float64 copies, whatever the model's size.
CHUNK_ELEMENTS = 1 << 22


def chunk_length(k: int) -> int:
    """Parameters per slice of each of the K^2 vectors in a reduction step."""
    return max(1, CHUNK_ELEMENTS // (k * k))


def v_of(hg: Tensor) -> Tensor:
    """(K, K, n) -> (K, K, n): v[k, j] = hg[k, j] - hg[k, k], in hg's dtype."""
    return hg - hg.diagonal(dim1=0, dim2=1).T[:, None, :]


@dataclass
class ProbeSummary:
    """What later stages need from the K^2 vectors, reduced in one pass over them."""

    hg_norms: Tensor  # (K, K) float64: ||H_k g_j||
    gram: Tensor  # (K^2, K^2) float64: <v_kj, v_lm>, row index k * K + j

    def relative_curvature(self) -> np.ndarray:
        """(K, K): ||H_k g_j|| / ||H_k g_k||, cross-domain against self-domain curvature."""
        return (self.hg_norms / self.hg_norms.diagonal()[:, None]).cpu().numpy()

    def to_tensors(self) -> dict[str, Tensor]:
        return {"hg_norms": self.hg_norms, "gram": self.gram}

    @classmethod
    def from_tensors(cls, k: int, tensors: Mapping[str, Tensor]) -> ProbeSummary:
        missing = [name for name in ("hg_norms", "gram") if name not in tensors]
        if missing:
            raise ProbeError(f"stored probe lacks tensor(s) {missing}; has {sorted(tensors)}")
        norms, gram = tensors["hg_norms"], tensors["gram"]
        if tuple(norms.shape) != (k, k) or tuple(gram.shape) != (k * k, k * k):
            raise ProbeError(
                f"stored probe of {k} domains has hg_norms {tuple(norms.shape)} and gram "
                f"{tuple(gram.shape)}; expected {(k, k)} and {(k * k, k * k)}"
            )
        return cls(norms, gram)


def summarise(chunks: Iterable[Chunk], k: int) -> ProbeSummary:
    """Norms and Gram matrix of the K^2 vectors, accumulated in float64 slice by slice, so a
    reduction holds one slice of each vector (`chunk_length`) instead of K^2 whole ones.

    v = H_k g_j - H_k g_k is formed in the vectors' own dtype, then widened (as before it was
    chunked): the results differ from one whole-vector product only in summation order.
    """
    sq = torch.zeros(k, k, dtype=torch.float64)
    gram = torch.zeros(k * k, k * k, dtype=torch.float64)
    for _, hg in chunks:  # (K, K, n)
        flat = v_of(hg).reshape(k * k, -1).double()  # (K^2, n)
        gram += (flat @ flat.T).cpu()
        sq += hg.double().square().sum(dim=-1).cpu()
    return ProbeSummary(sq.sqrt(), gram)


@dataclass
class ProbeResult:
    """All K^2 vectors in memory: for small models (tests, benchmarks/probe_theory.py). The
    interference_probe stage never holds them; it streams them to files (`probe_shards`)."""

    domains: list[str]
    grads: Tensor  # (K, P): g_k, domain k's loss gradient at the base
    hg: Tensor  # (K, K, P): hg[k, j] = H_k g_j
    method: str  # HVP kernel that ran

    def __post_init__(self) -> None:
        k = len(self.domains)
        if self.grads.ndim != 2 or self.grads.shape[0] != k:
            raise ProbeError(f"grads must be (K={k}, P), got {tuple(self.grads.shape)}")
        if tuple(self.hg.shape) != (k, k, self.grads.shape[1]):
            raise ProbeError(
                f"hg must be (K, K, P) = {(k, k, self.grads.shape[1])}, got {tuple(self.hg.shape)}"
            )

    def chunks(self, length: int | None = None) -> Iterator[Chunk]:
        """(start, hg[:, :, start:start + length]) views over the parameters."""
        k, p = len(self.domains), self.hg.shape[-1]
        length = length or chunk_length(k)
        for start in range(0, p, length):
            yield start, self.hg[:, :, start : start + length]

    def summary(self, length: int | None = None) -> ProbeSummary:
        return summarise(self.chunks(length), len(self.domains))

    def relative_curvature(self) -> np.ndarray:
        """(K, K): ||H_k g_j|| / ||H_k g_k||, cross-domain against self-domain curvature."""
        return self.summary().relative_curvature()

    def v(self) -> Tensor:
        """(K, K, P): v[k, j] = H_k g_j - H_k g_k (zero on the diagonal)."""
        return v_of(self.hg)

    def gram(self) -> np.ndarray:
        """(K^2, K^2) float64: inner products of the flattened v_kj, row index k * K + j."""
        return self.summary().gram.numpy()


class VectorStore(Protocol):
    """Where `probe_vectors` puts each g_k and H_k g_j as soon as it is complete, and reads the
    gradients back from, a group of rows at a time."""

    def put_grad(self, k: int, grad: Tensor) -> None: ...

    def grads(self, start: int, stop: int) -> Tensor: ...  # (stop - start, P)

    def put_hg(self, k: int, j: int, vector: Tensor) -> None: ...


def probe_vectors(
    model: torch.nn.Module,
    batches: Mapping[str, Sequence[Tensor]],
    store: VectorStore,
    method: Method = "auto",
    chunk_size: int | None = None,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
) -> str:
    """g_k on each domain's batches, then H_k g_j for every k, j (the mean over domain k's
    batches), each put into `store` as soon as it is complete; returns the kernel that ran.

    Each batch is int64 token blocks (B, T) on the model's device. With method "auto" the
    kernel that ran on the first HVP is used for the rest, so a failing first kernel is tried
    once. Memory, besides the model and the kernel's own work (a flat copy of the parameters,
    the gradient with its graph, one result): `chunk_size` (None: K) gradients read back from
    `store` and as many H_k g_j being summed over the batches, on the model's device; never
    K^2 vectors, nor K with chunk_size 1. A smaller chunk_size costs time: each batch's graph
    (double backward) or forward pass (forward-over-reverse) is rebuilt once per group.
    """
    domains = list(batches)
    if not domains:
        raise ProbeError("probe needs at least one domain")
    total, step = 2 * len(domains), chunk_size or len(domains)
    device = next(model.parameters()).device
    for i, d in enumerate(domains):
        store.put_grad(i, gradient(model, batches[d], autocast))
        if progress is not None:
            progress(i + 1, total, f"gradient of {d}")
    for i, d in enumerate(domains):
        for start in range(0, len(domains), step):
            vectors = store.grads(start, min(start + step, len(domains))).to(device)  # (c, P)
            acc, method = _mean_hvp(model, batches[d], vectors, method, chunk_size, autocast)
            del vectors
            _hand_over(store, i, start, acc)
            del acc  # before the next group's buffer is allocated
        if progress is not None:
            progress(len(domains) + i + 1, total, f"H of {d} times every gradient")
    return method


def _hand_over(store: VectorStore, k: int, start: int, rows: Tensor) -> None:
    """rows[n] is H_k g_(start + n); no view of `rows` outlives this call."""
    for j, row in enumerate(rows, start=start):
        store.put_hg(k, j, row)


def _mean_hvp(
    model: torch.nn.Module,
    batches: Sequence[Tensor],
    vectors: Tensor,
    method: Method,
    chunk_size: int | None,
    autocast: torch.dtype | None,
) -> tuple[Tensor, str]:
    """(V, P) mean over `batches` of H_b v for each row of `vectors`, summed in place."""
    first = hvp(model, batches[0], vectors, method, chunk_size, autocast)
    acc, ran = first.values, first.method
    for batch in batches[1:]:
        hvp(model, batch, vectors, ran, chunk_size, autocast, out=acc)
    return acc.div_(len(batches)), ran


class _InMemory:
    """A `VectorStore` keeping everything, on the CPU."""

    def __init__(self) -> None:
        self.g: dict[int, Tensor] = {}
        self.hg: dict[tuple[int, int], Tensor] = {}

    def put_grad(self, k: int, grad: Tensor) -> None:
        self.g[k] = grad.cpu()

    def grads(self, start: int, stop: int) -> Tensor:
        return torch.stack([self.g[k] for k in range(start, stop)])

    def put_hg(self, k: int, j: int, vector: Tensor) -> None:
        self.hg[k, j] = vector.cpu()


def probe(
    model: torch.nn.Module,
    batches: Mapping[str, Sequence[Tensor]],
    method: Method = "auto",
    chunk_size: int | None = None,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
) -> ProbeResult:
    """`probe_vectors` with every vector kept in memory, on the CPU (small models only)."""
    kept = _InMemory()
    ran = probe_vectors(model, batches, kept, method, chunk_size, progress, autocast)
    k = len(batches)
    hg = torch.stack([torch.stack([kept.hg[i, j] for j in range(k)]) for i in range(k)])
    return ProbeResult(list(batches), kept.grads(0, k), hg, ran)
