"""MixMin recovers the mixture that generated the target data from the experts' log-probs."""

from __future__ import annotations

import numpy as np
import pytest

from parammix_core.search import History, SearchError, get_strategy
from parammix_core.search.mixmin import mixmin, mixture_nll

TRUE = np.array([0.5, 0.3, 0.15, 0.05])


@pytest.fixture(scope="module")
def logprobs() -> np.ndarray:
    """Four experts = four distinct categorical distributions; targets drawn from TRUE @ P."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(30, 0.3), size=4)  # (K, V)
    tokens = rng.choice(30, size=20_000, p=TRUE @ p)  # (S,)
    return np.log(p[:, tokens])  # (K, S)


def test_mixmin_recovers_the_generating_mixture(logprobs):
    alpha = mixmin(logprobs, steps=500, lr=1.0)
    np.testing.assert_allclose(alpha.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(alpha, TRUE, atol=0.03)
    assert mixture_nll(logprobs, alpha) <= mixture_nll(logprobs, TRUE) + 1e-9


def test_mixmin_respects_bounds_and_is_optimal_within_them(logprobs):
    lo, hi = np.array([0.0, 0.0, 0.0, 0.2]), np.array([0.4, 1.0, 1.0, 1.0])
    alpha = mixmin(logprobs, steps=500, lr=1.0, lo=lo, hi=hi)
    assert (alpha >= lo - 1e-9).all() and (alpha <= hi + 1e-9).all()
    np.testing.assert_allclose(alpha[[0, 3]], [0.4, 0.2], atol=1e-6)  # both bounds bind
    for other in np.random.default_rng(1).dirichlet(np.ones(4), 200):
        other = np.clip(other, lo, hi)
        if abs(other.sum() - 1) < 1e-3:
            assert mixture_nll(logprobs, alpha) <= mixture_nll(logprobs, other / other.sum())


def test_mixmin_rejects_non_finite_logprobs():
    lp = np.zeros((2, 3))
    lp[1, 2] = np.nan
    with pytest.raises(SearchError, match=r"expert 1, sequence 2"):
        mixmin(lp)


def test_mixmin_strategy_proposes_the_optimum_then_its_neighbourhood(logprobs):
    s = get_strategy("mixmin", k=4, seed=0, logprobs=logprobs)
    first = s.propose(History.empty(4), 3)
    np.testing.assert_allclose(first[0], s.optimum, atol=1e-12)
    np.testing.assert_allclose(first[0], TRUE, atol=0.03)
    later = s.propose(History(first, np.zeros(3)), 2)
    assert np.abs(later - s.optimum).sum(axis=1).min() > 1e-6  # not the evaluated optimum
    assert (np.abs(later - s.optimum).sum(axis=1) <= 0.5 + 1e-9).all()  # 0.75 opt + 0.25 draw
