"""Replay experts: their training mixtures and the merge weights of a data mixture, by hand."""

import numpy as np
import pytest
import torch

from parammix_core.merge import linear_merge
from parammix_core.merge.replay import (
    convex_bounds,
    data_mixture,
    expert_mixtures,
    merge_weights,
    mixture_merge_weights,
)
from parammix_core.simplex import SimplexError

DOMAINS = ["math", "code", "sft", "web"]


def test_each_expert_trains_on_its_domain_and_the_replay_share_of_every_domain():
    m = expert_mixtures(4, 0.1)
    np.testing.assert_allclose(m[1], [0.025, 0.925, 0.025, 0.025], rtol=0, atol=1e-15)
    np.testing.assert_allclose(m.sum(axis=1), np.ones(4), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(expert_mixtures(3, 0.0), np.eye(3))


def test_a_mixture_is_merged_at_its_weights_by_hand():
    # (alpha - 0.1 / 4) / 0.9
    w = merge_weights([0.4, 0.3, 0.2, 0.1], 0.1)
    np.testing.assert_allclose(w, [0.375 / 0.9, 0.275 / 0.9, 0.175 / 0.9, 0.075 / 0.9], atol=1e-15)
    # a pure domain lies past its expert: weight 0.975 / 0.9 on it, -0.025 / 0.9 on the others
    w = merge_weights([0.0, 0.0, 1.0, 0.0], 0.1)
    np.testing.assert_allclose(w, [-0.025 / 0.9] * 2 + [0.975 / 0.9, -0.025 / 0.9], atol=1e-15)
    assert abs(w.sum() - 1) < 1e-15
    # an expert's own mixture is merged at its corner; without replay the weights are alpha
    np.testing.assert_allclose(merge_weights(expert_mixtures(4, 0.1), 0.1), np.eye(4), atol=1e-15)
    np.testing.assert_array_equal(merge_weights([0.4, 0.6], 0.0), [0.4, 0.6])


def test_data_mixture_inverts_the_merge_weights():
    alphas = np.random.default_rng(0).dirichlet(np.ones(4), size=5)  # (5, 4)
    for replay in (0.0, 0.1, 0.5):
        back = data_mixture(merge_weights(alphas, replay), replay)
        np.testing.assert_allclose(back, alphas, rtol=0, atol=1e-14)


def test_a_bad_mixture_is_refused_naming_the_domain():
    with pytest.raises(SimplexError, match=r"negative for domain\(s\) \['code'\]"):
        mixture_merge_weights([0.6, -0.1, 0.3, 0.2], DOMAINS, 0.1)
    with pytest.raises(SimplexError, match=r"sum to 0\.9"):
        mixture_merge_weights([0.3, 0.3, 0.3, 0.0], DOMAINS, 0.1)


def test_bounds_on_the_data_mixture_as_bounds_on_convex_weights():
    lo, hi = np.array([0.0, 0.1, 0.0, 0.0]), np.array([1.0, 1.0, 0.5, 0.01])
    lo_w, hi_w = convex_bounds(lo, hi, 0.1)
    np.testing.assert_allclose(lo_w, [0.0, 0.075 / 0.9, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(hi_w, [1.0, 1.0, 0.475 / 0.9, 0.0], atol=1e-15)


def test_the_merge_of_a_mixture_is_the_runs_first_order_stand_in():
    """Experts that moved linearly in their data: tau(m) = T m. The merge at w(alpha) is
    then exactly T alpha, the update of the run on alpha, though w leaves the simplex."""
    rng = np.random.default_rng(1)
    moves = torch.from_numpy(rng.normal(size=(6, 4)))  # (P, K): one column per pure domain
    base = {"p": torch.from_numpy(rng.normal(size=6))}
    m = expert_mixtures(4, 0.2)
    experts = [{"p": base["p"] + moves @ torch.from_numpy(m[k])} for k in range(4)]
    alpha = np.array([0.7, 0.0, 0.3, 0.0])
    merged = linear_merge(base, experts, merge_weights(alpha, 0.2))
    want = base["p"] + moves @ torch.from_numpy(alpha)
    torch.testing.assert_close(merged["p"], want, rtol=0, atol=1e-12)
