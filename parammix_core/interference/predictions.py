"""Predictions of the second-order expansion: Delta(alpha) = theta_mix - theta_merge(alpha),
its norm from the Gram matrix, and its first-order effect on each domain's loss."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from parammix_core.interference.probing import ProbeError
from parammix_core.merge.replay import expert_mixtures, merge_weights


def step_scale(lrs: Sequence[float]) -> float:
    """sum_{s<t} eta_s eta_t = ((sum eta)^2 - sum eta^2) / 2: the coefficient of the
    second-order term after steps of sizes `lrs` (eta^2 T (T-1) / 2 when they are all eta), so
    a warm-up or a decaying schedule counts as run (a cosine to zero ends on a step of 0)."""
    etas = np.asarray(lrs, dtype=np.float64)
    if etas.ndim != 1 or etas.size < 1 or not (etas >= 0).all():
        smallest = etas.min() if etas.size else None
        raise ProbeError(
            f"step_scale needs one or more learning rates >= 0, got {etas.size} "
            f"(smallest {smallest})"
        )
    return float((etas.sum() ** 2 - (etas**2).sum()) / 2)


def outer_weights(alphas: np.ndarray | Tensor, k: int, replay: float = 0.0) -> np.ndarray:
    """(N, K) mixtures -> (N, K^2) weights of the v_kj in Delta(alpha), after checking each
    row sums to 1: vec(a a^T), less, for experts that replay every domain (`merge.replay`),
    what their own runs already hold, sum_i w_i vec(m_i m_i^T) (w the merge weights of alpha,
    m_i expert i's training mixture; zero at every m_i, where the merge is the expert)."""
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
    out = np.einsum("nk,nj->nkj", a, a).reshape(len(a), k * k)
    if replay:
        m = expert_mixtures(k, replay)  # (K, K)
        own = np.einsum("ik,ij->ikj", m, m).reshape(k, k * k)  # (K, K^2)
        out -= merge_weights(a, replay) @ own
    return out


def predicted_delta_norms(
    alphas: np.ndarray | Tensor, gram: np.ndarray | Tensor, scale: float, replay: float = 0.0
) -> np.ndarray:
    """(N,) predicted ||theta_mix - theta_merge|| = scale * sqrt(m^T G m), m the
    `outer_weights` of alpha (vec(aa^T) without replay)."""
    g = np.asarray(gram, dtype=np.float64)  # (K^2, K^2)
    k = round(float(np.sqrt(g.shape[0])))
    if g.ndim != 2 or g.shape[0] != g.shape[1] or k * k != g.shape[0]:
        raise ProbeError(f"gram must be (K^2, K^2), got {g.shape}")
    m = outer_weights(alphas, k, replay)  # (N, K^2)
    quad = np.einsum("na,ab,nb->n", m, g, m)  # (N,)
    return scale * np.sqrt(np.clip(quad, 0.0, None))


def off_diagonal(k: int) -> list[tuple[int, int]]:
    """The (k, j), k != j, in row order: the v_kj that are not zero by definition."""
    return [(i, j) for i in range(k) for j in range(k) if i != j]


def pair_weights(alpha: np.ndarray | Sequence[float], replay: float = 0.0) -> np.ndarray:
    """(K(K-1),) the weights of the v_kj in Delta(alpha) in `off_diagonal` order: a_k a_j
    without replay (`outer_weights`)."""
    a = np.asarray(alpha, dtype=np.float64)
    k = len(a)
    full = outer_weights(a[None], k, replay)[0].reshape(k, k)
    return np.array([full[i, j] for i, j in off_diagonal(k)])


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
