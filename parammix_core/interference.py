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

Shapes: K domains, P parameters (flat, `hvp.param_names` order), N mixtures.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from parammix_core.hvp import Method, gradient, hvp

Progress = Callable[[int, int, str], None]
LAYER = re.compile(r"^(.*\blayers\.\d+)\.")  # "model.layers.3.mlp.up_proj.weight" -> layer 3


class ProbeError(ValueError):
    """Inconsistent probe input or stored probe tensors; the message names the tensor."""


@dataclass
class ProbeResult:
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

    def relative_curvature(self) -> np.ndarray:
        """(K, K): ||H_k g_j|| / ||H_k g_k||, cross-domain against self-domain curvature."""
        norms = torch.linalg.vector_norm(self.hg.double(), dim=-1)  # (K, K)
        return (norms / norms.diagonal()[:, None]).cpu().numpy()

    def v(self) -> Tensor:
        """(K, K, P): v[k, j] = H_k g_j - H_k g_k (zero on the diagonal)."""
        return self.hg - self.hg.diagonal(dim1=0, dim2=1).T[:, None, :]

    def gram(self) -> np.ndarray:
        """(K^2, K^2) float64: inner products of the flattened v_kj, row index k * K + j."""
        k, p = len(self.domains), self.hg.shape[-1]
        flat = self.v().reshape(k * k, p).double()  # (K^2, P)
        return (flat @ flat.T).cpu().numpy()

    def to_tensors(self) -> dict[str, Tensor]:
        """Tensors for safetensors; the method name is stored as its UTF-8 bytes (uint8)."""
        method = torch.tensor(list(self.method.encode()), dtype=torch.uint8)
        return {"grads": self.grads, "hg": self.hg, "method": method}

    @classmethod
    def from_tensors(cls, domains: Sequence[str], tensors: Mapping[str, Tensor]) -> ProbeResult:
        missing = [name for name in ("grads", "hg", "method") if name not in tensors]
        if missing:
            raise ProbeError(f"stored probe lacks tensor(s) {missing}; has {sorted(tensors)}")
        method = bytes(tensors["method"].tolist()).decode()
        return cls(list(domains), tensors["grads"], tensors["hg"], method)


def probe(
    model: torch.nn.Module,
    batches: Mapping[str, Sequence[Tensor]],
    method: Method = "auto",
    chunk_size: int | None = None,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
) -> ProbeResult:
    """g_k on each domain's batches, then H_k [g_1 .. g_K] with one batched HVP per batch of k.

    Each batch is int64 token blocks (B, T) on the model's device; g_k and H_k are means over
    domain k's batches. Results are stored on the CPU. With method "auto" the kernel that ran on
    the first HVP is used for the rest, so a failing first kernel is tried once.
    """
    domains = list(batches)
    if not domains:
        raise ProbeError("probe needs at least one domain")
    total = 2 * len(domains)
    grads = []
    for i, d in enumerate(domains):
        grads.append(gradient(model, batches[d], autocast))  # (P,)
        if progress is not None:
            progress(i + 1, total, f"gradient of {d}")
    g = torch.stack(grads)  # (K, P)
    rows = []
    for i, d in enumerate(domains):
        acc = torch.zeros_like(g)  # (K, P)
        for batch in batches[d]:
            result = hvp(model, batch, g, method, chunk_size, autocast)
            method = result.method
            acc += result.values
        rows.append((acc / len(batches[d])).cpu())
        if progress is not None:
            progress(len(domains) + i + 1, total, f"H of {d} times every gradient")
    return ProbeResult(domains, g.cpu(), torch.stack(rows), method)


# --- task-vector geometry ------------------------------------------------------------------


def _group_grams(
    base: Mapping[str, Tensor],
    experts: Sequence[Mapping[str, Tensor]],
    group_of: Callable[[str], str],
) -> dict[str, Tensor]:
    """Per group, the (K, K) float64 Gram matrix of the task vectors theta_k - theta_base."""
    if not experts:
        raise ProbeError("need at least one expert")
    grams: dict[str, Tensor] = {}
    for name, b in base.items():
        diffs = []
        for i, e in enumerate(experts):
            if name not in e:
                raise ProbeError(f"expert {i} lacks tensor {name!r} of the base")
            if e[name].shape != b.shape:
                raise ProbeError(
                    f"expert {i} tensor {name!r} has shape {tuple(e[name].shape)}, "
                    f"base has {tuple(b.shape)}"
                )
            diffs.append((e[name].double() - b.double()).reshape(-1))
        d = torch.stack(diffs)  # (K, n)
        group = group_of(name)
        grams[group] = grams.get(group, 0) + d @ d.T  # (K, K)
    return grams


def _cosines(gram: Tensor) -> np.ndarray:
    """(K, K) cosines from a Gram matrix; NaN where a task vector is zero."""
    norms = gram.diagonal().sqrt()  # (K,)
    return (gram / (norms[:, None] * norms[None, :])).cpu().numpy()


def task_vector_cosines(
    base: Mapping[str, Tensor], experts: Sequence[Mapping[str, Tensor]]
) -> np.ndarray:
    """(K, K) cosine similarity of the whole-model task vectors theta_k - theta_base."""
    grams = _group_grams(base, experts, lambda name: "all")
    return _cosines(grams["all"])


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
    return {g: _cosines(m) for g, m in _group_grams(base, experts, layer_group).items()}


# --- predictions ---------------------------------------------------------------------------


def step_scale(lr: float, steps: int) -> float:
    """eta^2 T (T-1) / 2: the coefficient of the second-order term after T steps of size eta."""
    if lr <= 0 or steps < 1:
        raise ProbeError(f"step_scale needs lr > 0 and steps >= 1, got lr={lr}, steps={steps}")
    return lr * lr * steps * (steps - 1) / 2


def _outer(alphas: np.ndarray | Tensor, k: int) -> np.ndarray:
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
    m = _outer(alphas, k)  # (N, K^2)
    quad = np.einsum("na,ab,nb->n", m, g, m)  # (N,)
    return scale * np.sqrt(np.clip(quad, 0.0, None))


def predicted_delta(alpha: np.ndarray | Tensor, v: Tensor, scale: float) -> Tensor:
    """(P,) predicted theta_mix - theta_merge(alpha) = scale * sum_{k,j} a_k a_j v[k, j].

    theta_merge + predicted_delta is the curvature-corrected proxy for theta_mix.
    """
    k, p = v.shape[0], v.shape[-1]
    w = torch.as_tensor(_outer(np.asarray(alpha)[None, :], k)[0], dtype=v.dtype, device=v.device)
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
    return scale * _outer(alphas, k) @ inner.T  # (N, K)
