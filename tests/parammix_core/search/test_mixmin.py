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


def test_with_replay_experts_the_optimum_is_a_data_mixture_they_can_mix(logprobs):
    """Experts trained on m_k = 0.8 e_k + 0.2 u: mixing them at w is the data mixture
    0.8 w + 0.05, so the optimum over w comes back as that, every share >= 0.05."""
    s = get_strategy("mixmin", k=4, seed=0, logprobs=logprobs, replay=0.2)
    w = mixmin(logprobs, steps=500, lr=1.0)
    np.testing.assert_allclose(s.optimum, 0.8 * w + 0.05, rtol=0, atol=1e-9)
    assert s.optimum.min() >= 0.05 - 1e-12 and abs(s.optimum.sum() - 1) < 1e-12
    capped = get_strategy("mixmin", k=4, seed=0, logprobs=logprobs, replay=0.2, hi=[0.3] * 4)
    assert capped.optimum.max() <= 0.3 + 1e-9  # the cap holds on the data mixture


def categorical_experts(seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """Three experts = three distinct categorical distributions over 30 symbols, (K, V)."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(30, 0.3), size=3), rng


def test_a_target_drawn_from_one_domain_puts_most_weight_on_its_expert():
    p, rng = categorical_experts(2)
    tokens = rng.choice(30, size=5_000, p=p[1])  # the target is domain 1's distribution
    alpha = mixmin(np.log(p[:, tokens]), steps=500, lr=1.0)
    assert alpha[1] > 0.9
    assert alpha.argmax() == 1


def test_weights_decide_which_sequences_the_mixture_must_explain():
    """Half the target from expert 0, half from expert 2: equal weights split the mixture
    between them, weight 0.9 on expert 0's half moves it to expert 0; uniform weights are the
    unweighted objective."""
    p, rng = categorical_experts(3)
    tokens = np.concatenate([rng.choice(30, 2_000, p=p[0]), rng.choice(30, 2_000, p=p[2])])
    lp = np.log(p[:, tokens])  # (3, 4000)
    even = mixmin(lp)
    np.testing.assert_allclose(mixmin(lp, weights=np.full(4000, 1 / 4000)), even, atol=1e-12)
    assert abs(even[0] - even[2]) < 0.15 and even[1] < 0.1
    skewed = np.concatenate([np.full(2000, 0.9 / 2000), np.full(2000, 0.1 / 2000)])
    tilted = mixmin(lp, weights=skewed)
    assert tilted[0] > even[0] + 0.2 and tilted[0] > 0.7
    assert mixture_nll(lp, tilted, skewed) <= mixture_nll(lp, even, skewed)
    with pytest.raises(SearchError, match=r"weights must be \(4000,\), non-negative and sum to 1"):
        mixmin(lp, weights=np.ones(4000))
