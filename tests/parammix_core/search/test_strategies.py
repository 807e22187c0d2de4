"""Every strategy behind the common interface: finds a known optimum, respects the constraints."""

from __future__ import annotations

import numpy as np
import pytest

from parammix_core.config import Bounds, SearchConfig
from parammix_core.search import (
    History,
    UnknownStrategyError,
    get_strategy,
    kl_project,
    project,
    strategy_from_config,
)

TARGET = np.array([0.1, 0.5, 0.25, 0.15])


def quadratic(x: np.ndarray) -> np.ndarray:
    """Utility with its maximum 0 at TARGET (an interior point of the simplex)."""
    return -((np.atleast_2d(x) - TARGET) ** 2).sum(axis=1)


def run(strategy, budget: int, batch: int) -> History:
    h = History.empty(strategy.k)
    while h.n < budget:
        x = strategy.propose(h, min(batch, budget - h.n))
        h = h.add(x, quadratic(x))
    return h


@pytest.mark.parametrize(
    ("name", "settings", "budget", "batch", "tol"),
    [
        ("random", {}, 60, 10, None),
        ("surrogate", {"n_candidates": 2048}, 80, 5, 0.10),
        ("demix", {"initial": 32, "pool": 4000, "top": 64}, 80, 5, 0.10),
        ("bayes", {"num_restarts": 4, "raw_samples": 128}, 20, 2, 0.05),
    ],
)
def test_strategy_finds_the_known_optimum(name, settings, budget, batch, tol):
    strategy = get_strategy(name, k=4, seed=0, **settings)
    h = run(strategy, budget, batch)
    best = h.x[h.y.argmax()]
    distance = np.abs(best - TARGET).sum()
    if tol is None:  # the baseline: only a sanity bound, the others must beat it
        assert distance < 0.5
    else:
        random_best = run(get_strategy("random", k=4, seed=0), budget, batch)
        random_distance = np.abs(random_best.x[random_best.y.argmax()] - TARGET).sum()
        assert distance < tol, best
        assert distance < random_distance


@pytest.mark.parametrize("name", ["random", "surrogate", "demix", "bayes"])
def test_proposals_lie_on_the_simplex_inside_the_bounds(name):
    lo = np.array([0.0, 0.1, 0.0, 0.2])
    hi = np.array([0.3, 1.0, 0.25, 1.0])
    settings = {"num_restarts": 2, "raw_samples": 64} if name == "bayes" else {}
    if name == "surrogate":
        settings = {"n_candidates": 512, "min_rows": 4}
    if name == "demix":
        settings = {"initial": 4, "pool": 512, "top": 16}
    strategy = get_strategy(name, k=4, lo=lo, hi=hi, seed=1, **settings)
    h = History.empty(4)
    for _ in range(4):
        x = strategy.propose(h, 3)
        assert x.shape == (3, 4)
        np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-9)
        assert (x >= lo - 1e-9).all() and (x <= hi + 1e-9).all(), x
        h = h.add(x, quadratic(x))


@pytest.mark.parametrize("name", ["random", "surrogate", "demix", "bayes"])
def test_same_seed_same_history_same_proposals(name):
    settings = {"num_restarts": 2, "raw_samples": 64} if name == "bayes" else {}
    x0 = np.random.default_rng(0).dirichlet(np.ones(3), 10)
    h = History(x0, quadratic(np.c_[x0, np.zeros(10)])[:10])
    a = get_strategy(name, k=3, seed=5, **settings).propose(h, 2)
    b = get_strategy(name, k=3, seed=5, **settings).propose(h, 2)
    np.testing.assert_array_equal(a, b)


def test_bayes_per_unit_cost_prefers_cheap_regions():
    """Two equally good optima; evaluating near the first costs 100x more: EIpu picks the other."""
    k = 3
    a, b = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.1, 0.8])

    def util(x):
        return np.maximum(-((x - a) ** 2).sum(1), -((x - b) ** 2).sum(1))

    def cost(x):
        return np.where(x[:, 0] > x[:, 2], 100.0, 1.0)

    x = np.random.default_rng(0).dirichlet(np.ones(k), 12)
    h = History(x, util(x), cost(x))
    settings = {"num_restarts": 4, "raw_samples": 128}
    cheap = get_strategy("bayes", k=k, seed=0, cost_exponent=1.0, **settings).propose(h, 1)[0]
    assert cheap[2] > cheap[0], cheap


def test_bayes_by_default_proposes_the_same_whatever_the_measured_seconds():
    """Measured seconds differ from machine to machine: by default they must not steer bayes."""
    cfg = SearchConfig(strategy="bayes")
    cfg.strategies.bayes.num_restarts, cfg.strategies.bayes.raw_samples = 2, 64
    x = np.random.default_rng(0).dirichlet(np.ones(3), 8)
    y = -((x - np.array([0.6, 0.3, 0.1])) ** 2).sum(1)
    seconds = np.random.default_rng(1).uniform(0.2, 20.0, 8)
    proposals = [
        strategy_from_config(cfg, ["a", "b", "c"], seed=0).propose(History(x, y, cost), 2)
        for cost in (None, seconds, seconds[::-1])
    ]
    assert all(np.array_equal(p, proposals[0]) for p in proposals)


def test_unknown_strategy_lists_names_and_close_matches():
    with pytest.raises(UnknownStrategyError) as err:
        get_strategy("baye", k=3)
    msg = str(err.value)
    assert "unknown search strategy 'baye'" in msg
    assert "['bayes', 'demix', 'mergemix', 'mixmin', 'multifidelity', 'random', 'surrogate']" in msg
    assert "did you mean 'bayes'" in msg


def test_strategy_from_config_uses_bounds_and_settings():
    cfg = SearchConfig(strategy="random", bounds={"b": Bounds(min=0.4, max=0.6)})
    cfg.strategies.random.concentration = 5.0
    s = strategy_from_config(cfg, ["a", "b", "c"], seed=0)
    assert s.concentration == 5.0
    x = s.propose(History.empty(3), 50)
    assert (x[:, 1] >= 0.4 - 1e-9).all() and (x[:, 1] <= 0.6 + 1e-9).all()


def test_multifidelity_from_config_takes_its_settings_not_the_loops():
    cfg = SearchConfig(strategy="multifidelity")
    cfg.strategies.multifidelity.exponent_decay = 0.5
    s = strategy_from_config(cfg, ["a", "b", "c"], seed=0, iteration=2, prior_costs=(1.0, 9.0))
    assert s.exponent == pytest.approx(0.25)
    np.testing.assert_array_equal(s.prior_costs, [1.0, 9.0])


def test_history_rejects_rows_off_the_simplex():
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] are not on the simplex"):
        History(np.array([[0.5, 0.5], [0.7, 0.7]]), np.zeros(2))


def test_projections_land_in_the_bounded_simplex():
    lo, hi = np.array([0.1, 0.0, 0.0]), np.array([1.0, 0.3, 1.0])
    p = project(np.array([[0.9, 0.5, -0.2], [0.0, 0.0, 0.0]]), lo, hi)
    np.testing.assert_allclose(p, [[0.7, 0.3, 0.0], [0.35, 0.3, 0.35]], atol=1e-9)
    q = kl_project(np.array([1.0, 8.0, 1.0]), lo, hi)
    np.testing.assert_allclose(q, [0.35, 0.3, 0.35], atol=1e-9)


def test_history_costs_are_all_or_nothing():
    h = History.empty(2).add(np.array([[0.5, 0.5]]), np.array([1.0]), np.array([2.0]))
    np.testing.assert_array_equal(h.cost, [2.0])
    with pytest.raises(ValueError, match="costs for every evaluation or for none"):
        h.add(np.array([[1.0, 0.0]]), np.array([0.0]))
