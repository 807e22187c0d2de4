"""The interference probe: why a merge of experts differs from training on the mixed data.

Second-order expansion of T steps of gradient descent with step eta from the base theta_0
(see DESIGN.md, "The second-order analysis"), with g_k and H_k the gradient and Hessian of
domain k's loss at theta_0 and sum_k a_k = 1:

    Delta(a) = theta_mix - theta_merge(a) ~ s * sum_{k,j} a_k a_j v_kj,
    v_kj = H_k g_j - H_k g_k,    s = step_scale(eta, T) = eta^2 T (T-1) / 2.

So the K^2 HVPs H_k g_j decide everything: once they are stored, ||Delta(a)|| of any mixture is
a quadratic form in vec(a a^T) with the Gram matrix of the v_kj (O(K^4) per mixture), and
the first-order loss effect g_j . Delta(a) needs only the K x K^2 inner products g_j . v_kl.
The expansion is exact to second order for plain gradient descent with fixed batches; with
Adam or sampled batches it is a diagnostic, checked against measured merge-vs-mix distances.

At any model size: K^2 vectors of P parameters do not fit in memory (K = 4 at 1B parameters is
64 GB in float32), so nothing here holds them all. `probe_vectors` puts each g_k and H_k g_j
into a `VectorStore` as soon as it is complete (the stage's writes safetensors files,
`probe_shards`) and holds only the group of `chunk_size` gradients it multiplies and their
sums over the batches; every reduction (norms, the Gram matrix, d(alpha)) runs over parameter
slices (`chunk_length`) of all K^2 vectors at once; the task-vector Gram matrices hold at most
two experts. `probe` and `ProbeResult` keep all vectors in memory, for small models.

Shapes: K domains, P parameters (flat, `hvp.param_names` order), N mixtures.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from parammix_core.hvp import Method, gradient, hvp

Progress = Callable[[int, int, str], None]
LAYER = re.compile(r"^(.*\blayers\.\d+)\.")  # "model.layers.3.mlp.up_proj.weight" -> layer 3


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


# --- task-vector geometry ------------------------------------------------------------------


def task_vector_grams(
    base: Mapping[str, Tensor], expert: Callable[[int], Mapping[str, Tensor]], k: int
) -> dict[str, Tensor]:
    """Per layer group (`layer_group`), the (K, K) float64 Gram matrix of the task vectors
    theta_k - theta_base; the whole model's is their sum.

    At most two experts are held at once: `expert(i)` is called K(K+1)/2 times (expert j again
    for every i > j), trading loads for memory. Groups appear in the order of their first
    tensor in `base`.
    """
    if k < 1:
        raise ProbeError("need at least one expert")
    grams: dict[str, Tensor] = {}
    for i in range(k):
        first = _checked(base, expert(i), i)
        for j in range(i + 1):
            second = first if j == i else _checked(base, expert(j), j)
            for group, dot in _task_dots(base, first, second).items():
                gram = grams.setdefault(group, torch.zeros(k, k, dtype=torch.float64))
                gram[i, j] = gram[j, i] = dot
            del second
        del first  # before the next expert loads
    return grams


def _checked(base: Mapping[str, Tensor], expert: Mapping[str, Tensor], i: int) -> Mapping:
    for name, b in base.items():
        if name not in expert:
            raise ProbeError(f"expert {i} lacks tensor {name!r} of the base")
        if expert[name].shape != b.shape:
            raise ProbeError(
                f"expert {i} tensor {name!r} has shape {tuple(expert[name].shape)}, "
                f"base has {tuple(b.shape)}"
            )
    return expert


def _task_dots(
    base: Mapping[str, Tensor], a: Mapping[str, Tensor], b: Mapping[str, Tensor]
) -> dict[str, float]:
    """Per layer group, <a - base, b - base> in float64, a slice of each tensor at a time."""
    dots: dict[str, float] = {}
    for name, t in base.items():
        flat, x, y = t.reshape(-1), a[name].reshape(-1), b[name].reshape(-1)
        dot = 0.0
        for s in range(0, flat.numel(), CHUNK_ELEMENTS):
            origin = flat[s : s + CHUNK_ELEMENTS].double()
            dx = x[s : s + CHUNK_ELEMENTS].double() - origin
            dy = dx if y is x else y[s : s + CHUNK_ELEMENTS].double() - origin
            dot += float(dx @ dy)
        group = layer_group(name)
        dots[group] = dots.get(group, 0.0) + dot
    return dots


def gram_cosines(gram: Tensor) -> np.ndarray:
    """(K, K) cosines from a Gram matrix; NaN where a task vector is zero."""
    norms = gram.diagonal().sqrt()  # (K,)
    return (gram / (norms[:, None] * norms[None, :])).cpu().numpy()


def task_vector_cosines(
    base: Mapping[str, Tensor], experts: Sequence[Mapping[str, Tensor]]
) -> np.ndarray:
    """(K, K) cosine similarity of the whole-model task vectors theta_k - theta_base."""
    grams = task_vector_grams(base, experts.__getitem__, len(experts))
    return gram_cosines(sum(grams.values()))


def layer_group(name: str) -> str:
    """'model.layers.3.mlp.up_proj.weight' -> 'model.layers.3'; other tensors by their module
    ('model.embed_tokens', 'model.norm', 'lm_head')."""
    match = LAYER.match(name)
    return match.group(1) if match else name.rsplit(".", 1)[0]


def per_layer_cosines(
    base: Mapping[str, Tensor], experts: Sequence[Mapping[str, Tensor]]
) -> dict[str, np.ndarray]:
    """Task-vector cosines (K, K) per transformer layer, embeddings and head as their own groups.

    Groups appear in the order of their first tensor in `base`.
    """
    grams = task_vector_grams(base, experts.__getitem__, len(experts))
    return {g: gram_cosines(m) for g, m in grams.items()}


# --- predictions ---------------------------------------------------------------------------


def step_scale(lr: float, steps: int) -> float:
    """eta^2 T (T-1) / 2: the coefficient of the second-order term after T steps of size eta."""
    if lr <= 0 or steps < 1:
        raise ProbeError(f"step_scale needs lr > 0 and steps >= 1, got lr={lr}, steps={steps}")
    return lr * lr * steps * (steps - 1) / 2


def outer_weights(alphas: np.ndarray | Tensor, k: int) -> np.ndarray:
    """(N, K) mixtures -> (N, K^2) vec(a a^T), after checking each row sums to 1."""
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != k:
        raise ProbeError(f"alphas must have shape (N, {k}), got {a.shape}")
    sums = a.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if bad.size:
        raise ProbeError(
            f"alphas row {int(bad[0])} sums to {sums[bad[0]]:.6g}, not 1 "
            "(the expansion of theta_mix - theta_merge assumes sum_k a_k = 1)"
        )
    return np.einsum("nk,nj->nkj", a, a).reshape(len(a), k * k)


def predicted_delta_norms(
    alphas: np.ndarray | Tensor, gram: np.ndarray | Tensor, scale: float
) -> np.ndarray:
    """(N,) predicted ||theta_mix - theta_merge|| = scale * sqrt(vec(aa^T)^T G vec(aa^T))."""
    g = np.asarray(gram, dtype=np.float64)  # (K^2, K^2)
    k = round(float(np.sqrt(g.shape[0])))
    if g.ndim != 2 or g.shape[0] != g.shape[1] or k * k != g.shape[0]:
        raise ProbeError(f"gram must be (K^2, K^2), got {g.shape}")
    m = outer_weights(alphas, k)  # (N, K^2)
    quad = np.einsum("na,ab,nb->n", m, g, m)  # (N,)
    return scale * np.sqrt(np.clip(quad, 0.0, None))


def off_diagonal(k: int) -> list[tuple[int, int]]:
    """The (k, j), k != j, in row order: the v_kj that are not zero by definition."""
    return [(i, j) for i in range(k) for j in range(k) if i != j]


def pair_weights(alpha: np.ndarray | Sequence[float]) -> np.ndarray:
    """(K(K-1),) a_k a_j in `off_diagonal` order: the weights of the v_kj in Delta(alpha)."""
    a = np.asarray(alpha, dtype=np.float64)
    return np.array([a[i] * a[j] for i, j in off_diagonal(len(a))])


def predicted_delta(alpha: np.ndarray | Tensor, v: Tensor, scale: float) -> Tensor:
    """(P,) predicted theta_mix - theta_merge(alpha) = scale * sum_{k,j} a_k a_j v[k, j].

    theta_merge + predicted_delta is the curvature-corrected proxy for theta_mix.
    """
    k, p = v.shape[0], v.shape[-1]
    w = outer_weights(np.asarray(alpha)[None, :], k)[0]  # (K^2,)
    w = torch.as_tensor(w, dtype=v.dtype, device=v.device)
    return scale * (w @ v.reshape(k * k, p))  # (P,)


def first_order_loss_effect(
    alphas: np.ndarray | Tensor, grads: Tensor, v: Tensor, scale: float
) -> np.ndarray:
    """(N, K): g_j . Delta(alpha_n), the first-order change of domain j's loss from merge to mix.

    Positive: the mixed run has higher loss on domain j than the merge (to first order).
    """
    k, p = v.shape[0], v.shape[-1]
    if tuple(grads.shape) != (k, p):
        raise ProbeError(f"grads must be (K, P) = {(k, p)}, got {tuple(grads.shape)}")
    inner = (grads.double() @ v.reshape(k * k, p).double().T).cpu().numpy()  # (K, K^2)
    return scale * outer_weights(alphas, k) @ inner.T  # (N, K)
