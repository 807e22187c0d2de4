"""Experts that replay every domain, and the merge weights that stand for a data mixture.

An expert trained with replay r draws (1 - r) of its rows from its own domain and r from the
uniform mix of all K domains: its data mixture is m_k = (1 - r) e_k + r u. To first order in
the data, the merge sum_k w_k theta_k (weights summing to 1) stands for the run on
sum_k w_k m_k = (1 - r) w + r u, so the data mixture alpha is merged at

    w(alpha) = (alpha - r u) / (1 - r),

below zero where alpha_k < r / K: the merge extrapolates past the experts, still an affine
combination. With r = 0 the weights are the mixture itself. Experts that keep a little of
every domain drift less far apart, and their merges ranked real mixed runs better than
one-domain experts' (benchmarks/RESULTS.md, "Experts with a replay of every domain").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parammix_core import simplex


def expert_mixtures(k: int, replay: float) -> np.ndarray:
    """The K experts' training mixtures m_k = (1 - r) e_k + r u, one per row, (K, K)."""
    return (1.0 - replay) * np.eye(k) + replay / k


def merge_weights(alpha: Sequence[float] | np.ndarray, replay: float) -> np.ndarray:
    """w(alpha) for one mixture (K,) or many (N, K): the merge that stands for alpha."""
    a = np.asarray(alpha, dtype=float)
    return (a - replay / a.shape[-1]) / (1.0 - replay)


def data_mixture(weights: Sequence[float] | np.ndarray, replay: float) -> np.ndarray:
    """(1 - r) w + r u: the data mixture the merge at w stands for (inverse of merge_weights)."""
    w = np.asarray(weights, dtype=float)
    return (1.0 - replay) * w + replay / w.shape[-1]


def mixture_merge_weights(
    alpha: Sequence[float] | np.ndarray, domains: Sequence[str], replay: float
) -> np.ndarray:
    """Check that alpha is a data mixture over `domains` (the error names the domain), then
    give its merge weights."""
    return merge_weights(simplex.validate(alpha, domains), replay)


def convex_bounds(lo: np.ndarray, hi: np.ndarray, replay: float) -> tuple[np.ndarray, np.ndarray]:
    """Floors and caps on the data mixture as bounds on merge weights kept on the simplex
    (a mixture of the experts' predictive distributions needs w >= 0, so reaches only the
    data mixtures with every alpha_k >= r / K)."""
    return (
        np.clip(merge_weights(lo, replay), 0.0, 1.0),
        np.clip(merge_weights(hi, replay), 0.0, 1.0),
    )
