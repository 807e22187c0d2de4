"""MixMin: the mixture whose experts' predictive distributions, mixed, best explain target data.

With per-sequence log-probabilities logp (K, S) of each domain expert on S target sequences,
the objective

    L(alpha) = -mean_s log sum_k alpha_k exp(logp[k, s])

is convex in alpha (a log of a linear function, negated), so the MixMin seed's large-model
argument turns the bi-level mixing problem into one convex minimisation over the simplex. It is
solved by exponentiated gradient (mirror descent with the entropy mirror map), which stays on
the simplex by construction; per-domain floors and caps are kept by a KL projection after each
step. The experts are scored once (`sequence_logprobs` on token blocks, `pairs.pair_logprobs`
on benchmark documents); every step is O(K S). Target sequences may carry weights w (S,),
summing to 1, replacing the mean over s by sum_s w_s (how the benchmark target weights each
capability group as the utility does); still convex.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

from parammix_core import simplex
from parammix_core.merge.replay import convex_bounds, data_mixture
from parammix_core.search.base import OneShotStrategy, kl_project, project
from parammix_core.search.common import SearchError


def sequence_logprobs(
    model: torch.nn.Module, blocks: torch.Tensor, batch_size: int, device: torch.device | str
) -> np.ndarray:
    """log p(block) under a causal LM, the sum over its T-1 predicted tokens, shape (S,).

    Args:
        model: a causal LM whose forward returns `.logits` of shape (B, T, V).
        blocks: (S, T) integer token ids, T >= 2.
        batch_size: blocks per forward pass.
    """
    if blocks.ndim != 2 or blocks.shape[0] < 1 or blocks.shape[1] < 2:
        raise SearchError(f"mixmin: target blocks must be (S>=1, T>=2); got {tuple(blocks.shape)}")
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, blocks.shape[0], batch_size):
                batch = blocks[start : start + batch_size].to(device, torch.long)  # (B, T)
                logits = model(batch).logits[:, :-1].float()  # (B, T-1, V)
                lp = torch.log_softmax(logits, dim=-1).gather(-1, batch[:, 1:, None])  # (B, T-1, 1)
                out.append(lp[..., 0].double().sum(dim=1).cpu())  # (B,)
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def mixture_nll(
    logprobs: np.ndarray, alpha: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """-mean_s log sum_k alpha_k exp(logprobs[k, s]) for logprobs (K, S), alpha (K,); with
    weights (S,) summing to 1 the weighted sum over s instead of the mean."""
    with np.errstate(divide="ignore"):
        per_sequence = logsumexp(logprobs + np.log(alpha)[:, None], axis=0)  # (S,)
    return float(-(per_sequence.mean() if weights is None else per_sequence @ weights))


def _check_weights(weights: np.ndarray | None, s: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    if w.shape != (s,) or not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1) > 1e-6:
        raise SearchError(
            f"mixmin: weights must be ({s},), non-negative and sum to 1; got shape {w.shape}, "
            f"sum {w.sum():.6g}"
        )
    return w


def mixmin(
    logprobs: np.ndarray,
    steps: int = 500,
    lr: float = 1.0,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The alpha (K,) minimising `mixture_nll`, by exponentiated gradient from the uniform mixture.

    Args:
        logprobs: (K, S) log-probability of each target sequence under each expert (any
            consistent unit: per sequence or per token averaged; finite).
        steps: mirror-descent steps.
        lr: step size; the gradient's entries are -mean_s p_k(s) / p_alpha(s), O(1) near the
            optimum, so lr ~ 1 is a good default.
        lo, hi: per-domain floors and caps (K,); None means [0, 1].
        weights: (S,) weight of each sequence, summing to 1; None weighs them equally.
    """
    lp = np.asarray(logprobs, dtype=float)
    if lp.ndim != 2 or lp.shape[0] < 1 or lp.shape[1] < 1:
        raise SearchError(f"mixmin: logprobs must have shape (K, S) with K, S >= 1; got {lp.shape}")
    if not np.isfinite(lp).all():
        k, s = np.argwhere(~np.isfinite(lp))[0]
        raise SearchError(f"mixmin: logprobs are not finite (first at expert {k}, sequence {s})")
    if steps < 1 or not lr > 0:
        raise SearchError(f"mixmin: need steps >= 1 and lr > 0; got steps={steps}, lr={lr}")
    w = _check_weights(weights, lp.shape[1])
    k = lp.shape[0]
    lo = np.zeros(k) if lo is None else np.asarray(lo, dtype=float)
    hi = np.ones(k) if hi is None else np.asarray(hi, dtype=float)
    # a per-sequence shift cancels in p_k(s) / p_alpha(s): keeps exp() in range
    p = np.exp(lp - lp.max(axis=0, keepdims=True))  # (K, S), max 1 per sequence
    alpha = kl_project(simplex.uniform(k), lo, hi)
    for _ in range(steps):
        ratio = p / (alpha @ p)  # (K, S)
        grad = -(ratio.mean(axis=1) if w is None else ratio @ w)  # (K,)
        alpha = kl_project(alpha * np.exp(-lr * (grad - grad.min())), lo, hi)
    return alpha


class MixMinStrategy(OneShotStrategy):
    """Proposes the MixMin optimum for the given experts' log-probabilities.

    MixMin needs no evaluations: the first proposal is the optimum, further ones its
    neighbourhood (see `OneShotStrategy`).

    Args:
        logprobs: (K, S) per-sequence log-probabilities of each expert on target data.
        weights: (S,) weight of each target sequence (None: equal); see `mixmin`.
        steps, lr: see `mixmin`.
        replay: the experts' `training.replay`: mixing their distributions with weights w
            stands for the data mixture (1 - replay) w + replay u (`merge.replay`), so the
            optimum is solved over w and proposed as that data mixture.
    """

    name = "mixmin"

    def __init__(
        self,
        k: int,
        lo=None,
        hi=None,
        seed: int = 0,
        logprobs: np.ndarray | None = None,
        steps: int = 500,
        lr: float = 1.0,
        weights: np.ndarray | None = None,
        replay: float = 0.0,
    ):
        super().__init__(k, lo, hi, seed)
        if logprobs is None:
            raise SearchError("mixmin: needs the experts' logprobs on target data, shape (K, S)")
        lp = np.asarray(logprobs, dtype=float)
        if lp.ndim != 2 or lp.shape[0] != k:
            raise SearchError(f"mixmin: logprobs have shape {lp.shape}; expected ({k}, S)")
        lo_w, hi_w = convex_bounds(self.lo, self.hi, replay)
        w = mixmin(lp, steps, lr, lo_w, hi_w, weights)  # (K,)
        self.optimum = project(data_mixture(w, replay), self.lo, self.hi)[0]  # (K,)
