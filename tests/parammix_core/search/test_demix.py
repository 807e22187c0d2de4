"""DeMix's procedure: prior-centred draws under usage caps, halving iterations, the final mean."""

from __future__ import annotations

import numpy as np
import pytest

from parammix_core.config import Bounds, SearchConfig
from parammix_core.search import History, SearchError, get_strategy, strategy_from_config
from parammix_core.search.demix import (
    best_indices,
    from_top,
    iteration,
    scale_into_bounds,
    tempered,
    usage_caps,
)

PRIOR = np.array([0.5, 0.3, 0.15, 0.05])
TARGET = np.array([0.1, 0.5, 0.25, 0.15])


def quadratic(x: np.ndarray) -> np.ndarray:
    """Concave utility with its peak 0 at TARGET, inside the simplex."""
    return -((np.atleast_2d(x) - TARGET) ** 2).sum(axis=1)


def run(strategy, budget: int, batch: int) -> History:
    h = History.empty(strategy.k)
    while h.n < budget:
        x = strategy.propose(h, min(batch, budget - h.n))
        h = h.add(x, quadratic(x))
    return h


def test_usage_caps_and_tempered_prior_values():
    np.testing.assert_allclose(usage_caps(PRIOR, 4.0), [1.0, 1.0, 0.6, 0.2])
    np.testing.assert_allclose(usage_caps(PRIOR, 1.0), PRIOR)
    root = np.sqrt(PRIOR) / np.sqrt(PRIOR).sum()
    np.testing.assert_allclose(tempered(PRIOR, 0.5), root)
    np.testing.assert_allclose(tempered(PRIOR, 1.0), PRIOR)


def test_mass_above_a_cap_goes_to_the_others_in_proportion():
    x = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    out = scale_into_bounds(x, np.zeros(3), np.array([0.5, 1.0, 1.0]))
    np.testing.assert_allclose(out, [[0.5, 0.2 + 0.2 * 2 / 3, 0.1 + 0.2 / 3], x[1]], atol=1e-9)
    floored = scale_into_bounds(np.array([[0.9, 0.1, 0.0]]), np.array([0, 0, 0.2]), np.ones(3))
    np.testing.assert_allclose(floored, [[0.72, 0.08, 0.2]], atol=1e-9)


def test_draws_respect_usage_caps_floors_and_bounds():
    lo = np.array([0.0, 0.0, 0.05, 0.0])
    hi = np.array([0.6, 1.0, 1.0, 1.0])
    s = get_strategy("demix", k=4, lo=lo, hi=hi, seed=0, prior=PRIOR, max_usage=1.5)
    caps = np.array([0.6, 0.45, 0.225, 0.075])  # min(hi, 1.5 * prior)
    np.testing.assert_allclose(s.caps, caps)
    x = s.draws(5000, np.random.default_rng(0))  # (5000, 4)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-9)
    assert (x >= lo - 1e-12).all() and (x <= caps + 1e-12).all()
    np.testing.assert_allclose(x.max(axis=0), caps, atol=1e-9)  # every cap binds somewhere
    settings = {"prior": PRIOR, "max_usage": 1.5, "initial": 8, "pool": 500, "top": 20}
    h = run(get_strategy("demix", k=4, lo=lo, hi=hi, seed=0, **settings), 24, 4)
    assert (h.x >= lo - 1e-9).all() and (h.x <= caps + 1e-9).all()


def test_draws_centre_on_the_tempered_prior():
    s = get_strategy("demix", k=4, seed=0, prior=PRIOR, temperature=0.5, max_usage=1000)
    x = s.draws(20_000, np.random.default_rng(1))
    np.testing.assert_allclose(x.mean(axis=0), tempered(PRIOR, 0.5), atol=0.01)


def test_iteration_sizes_halve():
    # initial 8, two halvings: rows 0-7 iteration 0, 8-11 iteration 1, 12-13 iteration 2
    steps = [iteration(n, 8, 2) for n in range(16)]
    assert steps == [0] * 8 + [1] * 4 + [2] * 2 + [3] * 2
    assert [iteration(n, 5, 1) for n in range(9)] == [0] * 5 + [1] * 2 + [2] * 2


def test_halving_keeps_the_top_half_by_predicted_utility():
    pool = np.eye(6)  # row i stands for candidate i
    predicted = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
    np.testing.assert_array_equal(best_indices(predicted, 3), [1, 5, 3])
    picked = from_top(pool, predicted, 3, 3, np.random.default_rng(0)).argmax(axis=1)
    assert sorted(picked.tolist()) == [1, 3, 5]
    picked = from_top(pool, predicted, 2, 3, np.random.default_rng(0)).argmax(axis=1)
    assert set(picked.tolist()) <= {1, 3, 5} and len(set(picked.tolist())) == 2
    more = from_top(pool, predicted, 4, 3, np.random.default_rng(0)).argmax(axis=1)
    assert sorted(more.tolist()) == [1, 2, 3, 5]  # asked for more than top: the best n


def test_after_iteration_zero_proposals_come_from_the_predicted_best():
    x = np.random.default_rng(0).dirichlet(np.ones(4), 24)
    h = History(x, x[:, 0])  # hand-made: the more of domain 0, the better
    s = get_strategy("demix", k=4, seed=0, initial=24, pool=2000, top=100)
    proposed = s.propose(h, 8)
    prior_draws = s.draws(4000, np.random.default_rng(99))[:, 0]
    assert proposed[:, 0].min() > np.quantile(prior_draws, 0.5)
    assert proposed[:, 0].mean() > np.quantile(prior_draws, 0.75)
    blind = get_strategy("demix", k=4, seed=0, initial=25, pool=2000, top=100).propose(h, 8)
    assert blind[:, 0].mean() < proposed[:, 0].mean() - 0.2  # still iteration 0: prior draws


def test_finds_the_peak_of_a_concave_surface():
    for seed in range(3):
        s = get_strategy("demix", k=4, seed=seed, initial=16, pool=4000, top=64)
        h = run(s, 40, 4)
        best = np.abs(h.x[h.y.argmax()] - TARGET).sum()
        r = run(get_strategy("random", k=4, seed=seed), 40, 4)
        random_best = np.abs(r.x[r.y.argmax()] - TARGET).sum()
        assert best < 0.15, (seed, h.x[h.y.argmax()])
        assert best < random_best


def test_the_final_mixture_is_proposed_once_then_the_top():
    x = np.random.default_rng(3).dirichlet(np.ones(3), 14)
    h = History(x, quadratic(np.c_[x, np.zeros(14)]))  # schedule 8 + 4 + 2: done
    s = get_strategy("demix", k=3, seed=0, initial=8, pool=1000, top=50)
    final = s.propose(h, 1)
    again = s.propose(h, 3)
    np.testing.assert_array_equal(again[0], final[0])  # the final mixture leads every batch
    h2 = h.add(final, quadratic(np.c_[final, np.zeros(1)]))
    later = s.propose(h2, 3)
    assert np.abs(later - final).sum(axis=1).min() > 1e-6  # not proposed twice


def test_same_seed_same_proposals_other_seed_others():
    x = np.random.default_rng(0).dirichlet(np.ones(3), 10)
    h = History(x, x[:, 1])
    for n_seen in (3, 10):  # iteration 0 (prior draws), iteration 1 (predictor)
        part = History(h.x[:n_seen], h.y[:n_seen])
        a = get_strategy("demix", k=3, seed=5, initial=6, pool=800, top=40).propose(part, 4)
        b = get_strategy("demix", k=3, seed=5, initial=6, pool=800, top=40).propose(part, 4)
        c = get_strategy("demix", k=3, seed=6, initial=6, pool=800, top=40).propose(part, 4)
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - c).max() > 1e-3


def test_strategy_from_config_takes_the_prior_and_settings():
    cfg = SearchConfig(strategy="demix", bounds={"b": Bounds(max=0.5)})
    cfg.strategies.demix.max_usage = 2.0
    s = strategy_from_config(cfg, ["a", "b", "c"], seed=0, prior=np.array([2.0, 1.0, 1.0]))
    np.testing.assert_allclose(s.prior, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(s.caps, [1.0, 0.5, 0.5])
    uniform = strategy_from_config(cfg, ["a", "b", "c"], seed=0)
    np.testing.assert_allclose(uniform.prior, [1 / 3] * 3)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"prior": np.array([0.5, 0.5])}, r"prior must be 3 positive finite weights"),
        ({"prior": np.array([0.5, 0.5, 0.0])}, r"prior must be 3 positive finite weights"),
        ({"top": 50, "pool": 10}, r"1 <= top <= pool; got .*top=50, pool=10"),
        ({"strength_min": 2.0, "strength_max": 1.0}, r"strength_min <= strength_max"),
        ({"max_usage": 0.5}, r"max_usage >= 1"),
    ],
)
def test_bad_settings_fail_naming_the_setting(settings, message):
    with pytest.raises(SearchError, match=message):
        get_strategy("demix", k=3, **settings)


def test_caps_below_a_floor_name_max_usage():
    lo = np.array([0.0, 0.2, 0.0])
    with pytest.raises(SearchError, match=r"raise search\.strategies\.demix\.max_usage \(now 2"):
        get_strategy("demix", k=3, lo=lo, prior=np.array([0.9, 0.05, 0.05]), max_usage=2.0)


def test_more_proposals_than_the_pool_name_the_pool():
    x = np.random.default_rng(0).dirichlet(np.ones(3), 6)
    s = get_strategy("demix", k=3, initial=4, pool=5, top=5)
    with pytest.raises(SearchError, match=r"6 proposals asked of a pool of 5; raise search\.st"):
        s.propose(History(x, x[:, 0]), 6)
