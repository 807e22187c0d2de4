"""Multi-fidelity search on synthetic two-fidelity surfaces: a biased cheap fidelity (the merge)
and an unbiased expensive one (the real run)."""

from __future__ import annotations

import numpy as np
import pytest

from parammix_core.search import History, SearchError, get_strategy
from parammix_core.search.multifidelity import decayed_exponent

REAL_PEAK = np.array([0.6, 0.2, 0.2])  # where real runs score best
MERGE_PEAK = np.array([0.2, 0.2, 0.6])  # where merges score best: the cheap fidelity's bias
FAST = {"num_restarts": 4, "raw_samples": 64}


def real(x: np.ndarray) -> np.ndarray:
    return -((np.atleast_2d(x) - REAL_PEAK) ** 2).sum(axis=1)


def merged(x: np.ndarray) -> np.ndarray:
    return -((np.atleast_2d(x) - MERGE_PEAK) ** 2).sum(axis=1) + 0.1


def two_fidelities(n_merges: int, n_runs: int, run_cost: float | None, seed: int = 0) -> History:
    """Merges (fidelity 0, cost 1) and real runs (fidelity 1, cost run_cost) at random mixtures."""
    rng = np.random.default_rng(seed)
    xm, xr = rng.dirichlet(np.ones(3), n_merges), rng.dirichlet(np.ones(3), n_runs)
    cost = None if run_cost is None else np.r_[np.ones(n_merges), np.full(n_runs, run_cost)]
    fidelity = np.r_[np.zeros(n_merges), np.ones(n_runs)]
    return History(np.r_[xm, xr], np.r_[merged(xm), real(xr)], cost, fidelity)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum())


def test_the_choice_follows_the_expensive_fidelitys_peak():
    h = two_fidelities(24, 12, run_cost=None)
    choice = get_strategy("multifidelity", k=3, seed=0, choice="mean", **FAST).choose(h)
    assert distance(choice.alpha, REAL_PEAK) < 0.2, choice
    # the default, the lower bound, stops short of the peak where the runs thin out
    cautious = get_strategy("multifidelity", k=3, seed=0, **FAST).choose(h)
    assert distance(cautious.alpha, REAL_PEAK) < 0.3 and distance(cautious.alpha, MERGE_PEAK) > 0.6
    assert distance(choice.alpha, MERGE_PEAK) > 0.6
    np.testing.assert_allclose(choice.alpha.sum(), 1.0, atol=1e-9)
    assert choice.mean == pytest.approx(real(choice.alpha)[0], abs=0.05)  # the run, not 0.1
    assert choice.std > 0
    # the merges alone point to their own peak; the real runs alone choose worse than both
    merges = History(h.x[:24], h.y[:24], None, np.ones(24))
    merges_only = get_strategy("multifidelity", k=3, seed=0, choice="mean", **FAST).choose(merges)
    assert distance(merges_only.alpha, MERGE_PEAK) < 0.05
    runs = History(h.x[24:], h.y[24:], None, np.ones(12))
    runs_only = get_strategy("multifidelity", k=3, seed=0, choice="mean", **FAST).choose(runs)
    assert distance(choice.alpha, REAL_PEAK) < distance(runs_only.alpha, REAL_PEAK)


def test_the_gain_over_a_baseline_is_the_joint_posteriors_difference():
    h = two_fidelities(24, 12, run_cost=None)
    s = get_strategy("multifidelity", k=3, seed=0, **FAST)
    chosen = s.choose(h).alpha
    baselines = np.array([[1 / 3, 1 / 3, 1 / 3], MERGE_PEAK])
    mean, sd = s.gains(h, chosen, baselines)
    predicted = s.predict(h, np.vstack([chosen, baselines]))
    np.testing.assert_allclose(mean, predicted[0] - predicted[1:], rtol=1e-6, atol=1e-9)
    true = real(chosen)[0] - real(baselines)
    assert (mean > 0).all() and (np.abs(mean - true) < 0.05).all(), (mean, true)
    # the sd of the difference, by sampling the same joint posterior
    import torch

    from parammix_core.search.multifidelity import _inputs

    x = _inputs(np.vstack([chosen, baselines]), np.ones(3))
    model = s._fit(h)
    with torch.no_grad():
        draws = model.posterior(x).rsample(torch.Size([20_000]))[..., 0]  # (S, 3)
    sampled = (draws[:, :1] - draws[:, 1:]).std(dim=0).numpy()
    np.testing.assert_allclose(sd, sampled, rtol=0.05)
    assert (sd > 0).all()


def test_the_same_history_is_fitted_once(monkeypatch):
    import parammix_core.search.multifidelity as mf

    fits = []
    fit = mf.fit_levels_gp
    monkeypatch.setattr(mf, "fit_levels_gp", lambda *a: fits.append(1) or fit(*a))
    h = two_fidelities(24, 12, run_cost=None)
    s = get_strategy("multifidelity", k=3, seed=0, **FAST)
    chosen = s.choose(h).alpha
    uniform = np.full((1, 3), 1 / 3)
    mean, sd = s.gains(h, chosen, uniform)
    assert len(fits) == 1  # choosing and the gains share the fit
    fresh = get_strategy("multifidelity", k=3, seed=0, **FAST)
    np.testing.assert_array_equal((mean, sd), fresh.gains(h, chosen, uniform))
    assert len(fits) == 2
    changed = History(h.x, h.y + np.r_[np.zeros(35), 0.5], None, h.fidelities)
    assert s.gains(changed, chosen, uniform)[0] != pytest.approx(mean)  # a new history refits
    assert len(fits) == 3


def test_a_flat_surface_gives_a_gain_whose_interval_holds_zero():
    x = np.random.default_rng(3).dirichlet(np.ones(3), 12)
    runs = History(x, np.full(12, 0.5), None, np.ones(12))
    s = get_strategy("multifidelity", k=3, seed=0, levels=(1.0,), **FAST)
    mean, sd = s.gains(runs, s.choose(runs).alpha, np.array([[1 / 3, 1 / 3, 1 / 3]]))
    assert mean[0] == pytest.approx(0.0, abs=1e-9) and sd[0] > 0


def test_held_out_runs_show_whether_the_gp_predicts_them():
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), 16)
    s = get_strategy("multifidelity", k=3, seed=0, levels=(1.0,), **FAST)
    peaked = s.held_out(History(x, real(x) + rng.normal(0.0, 0.01, 16), None, np.ones(16)))
    assert peaked.n == 16 and peaked.folds == 5 and peaked.r2 > 0.5, peaked
    # better than every one of the 19 shuffles: the smallest p-value 19 shuffles can give
    assert peaked.shuffled == 19 and peaked.reached == 0 and peaked.p == pytest.approx(0.05)
    assert peaked.predicts(0.05) and not peaked.predicts(0.04)
    assert 0.5 < peaked.scale < 2.0 and peaked.widen >= 1.0
    flat = s.held_out(History(x, np.full(16, 0.5), None, np.ones(16)))
    assert flat.r2 == 0.0 and flat.shuffled == 0 and flat.p == 1.0 and not flat.predicts(0.05)
    with pytest.raises(SearchError, match="judging the GP needs 3 rows at fidelity 1; got 2"):
        s.held_out(History(x[:2], real(x[:2]), None, np.ones(2)))


def test_noise_the_gp_happens_to_predict_loses_to_a_shuffle():
    # pure noise whose held-out R² is above zero by chance (`benchmarks/gp_interval.py
    # --synthetic`, flat surface 1): a shuffle is predicted as well, and shuffling stops there
    rng = np.random.default_rng(1)
    x = rng.dirichlet(np.ones(3), 16)
    noise = History(x, rng.normal(0.0, 0.01, 16), None, np.ones(16))
    s = get_strategy("multifidelity", k=3, seed=0, levels=(1.0,), num_restarts=4)
    told = []
    checked = s.held_out(noise, significance=0.05, progress=lambda *line: told.append(line))
    assert checked.r2 > 0 and checked.reached == 1 and checked.shuffled < 19, checked
    # progress after the truth and after each shuffle, out of the truth and all 19
    assert [(done, total) for done, total, _ in told] == [
        (i, 20) for i in range(1, checked.shuffled + 2)
    ]
    assert told[-1][2] == "1 shuffle(s) as predicted"
    assert checked.p == pytest.approx(0.1) and not checked.predicts(0.05)


def test_one_level_is_plain_bo_at_that_level():
    rng = np.random.default_rng(1)
    x = rng.dirichlet(np.ones(3), 10)
    runs = History(x, real(x), np.full(10, 50.0), np.ones(10))
    s = get_strategy("multifidelity", k=3, seed=0, levels=(1.0,), prior_costs=(50.0,), **FAST)
    pairs = s.propose_pairs(runs, 3)
    np.testing.assert_array_equal(pairs.fidelity, [1.0, 1.0, 1.0])
    assert min(distance(p, REAL_PEAK) for p in pairs.x) < 0.3  # EI goes where runs peak
    assert distance(s.choose(runs).alpha, REAL_PEAK) < 0.2


def test_the_lower_bound_choice_stays_where_runs_were_measured():
    """Six runs near the centre, the utility rising with alpha_0: the posterior mean climbs
    past the runs into the extrapolated corner; its lower bound stops nearer the runs."""
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.full(3, 8.0), 6)
    runs = History(x, x[:, 0] + rng.normal(0, 0.01, 6), None, np.ones(6))
    mean = get_strategy("multifidelity", k=3, seed=0, levels=(1.0,), choice="mean", **FAST).choose(
        runs
    )
    low = get_strategy(
        "multifidelity", k=3, seed=0, levels=(1.0,), choice="lower_bound", **FAST
    ).choose(runs)
    assert mean.alpha[0] > x[:, 0].max() + 0.05  # past every run
    assert low.alpha[0] < mean.alpha[0] - 0.03 and low.std < mean.std
    z = 1.6448536269514722  # the 95th percentile: the lower end of the central 90 %
    assert low.mean - z * low.std > mean.mean - z * mean.std  # what it maximises
    np.testing.assert_allclose(low.alpha.sum(), 1.0, atol=1e-9)


def test_the_cost_exponent_decays_over_iterations():
    assert decayed_exponent(2.0, 0.5, 0) == 2.0
    assert decayed_exponent(2.0, 0.5, 3) == pytest.approx(0.25)
    s = get_strategy("multifidelity", k=3, cost_exponent=1.0, exponent_decay=0.8, iteration=5)
    assert s.exponent == pytest.approx(0.8**5)


def test_costs_drive_the_split_between_merges_and_real_runs():
    h = two_fidelities(24, 8, run_cost=100.0)
    early = get_strategy("multifidelity", k=3, seed=0, iteration=0, **FAST)
    late = get_strategy("multifidelity", k=3, seed=0, iteration=30, exponent_decay=0.8, **FAST)
    assert early.propose_pairs(h, 2).fidelity.tolist() == [0.0, 0.0]  # runs cost 100 merges
    assert late.propose_pairs(h, 2).fidelity[0] == 1.0  # the exponent has decayed to ~1e-3
    same_cost = History(h.x, h.y, np.ones(h.n), h.fidelity)
    assert early.propose_pairs(same_cost, 1).fidelity.tolist() == [1.0]  # runs know less


def test_a_level_past_what_is_left_of_the_budget_is_not_proposed():
    h = two_fidelities(24, 8, run_cost=100.0)
    late = get_strategy("multifidelity", k=3, seed=0, iteration=30, exponent_decay=0.8, **FAST)
    assert late.propose_pairs(h, 3).fidelity.tolist() == [1.0, 0.0, 1.0]  # no budget given
    assert late.propose_pairs(h, 3, left=250.0).fidelity.tolist() == [1.0, 0.0, 1.0]
    # one run (100) and one merge (1) leave 49: the third pair falls back to a merge
    assert late.propose_pairs(h, 3, left=150.0).fidelity.tolist() == [1.0, 0.0, 0.0]
    assert late.propose_pairs(h, 3, left=50.0).fidelity.tolist() == [0.0, 0.0, 0.0]
    assert late.propose_pairs(h, 2, left=0.0).fidelity.tolist() == [0.0, 0.0]  # cheapest may


def test_proposals_are_seeded_and_inside_the_bounds():
    lo, hi = np.array([0.1, 0.0, 0.0]), np.array([1.0, 0.3, 1.0])
    h = two_fidelities(10, 4, run_cost=20.0, seed=1)
    a = get_strategy("multifidelity", k=3, lo=lo, hi=hi, seed=3, **FAST).propose_pairs(h, 2)
    b = get_strategy("multifidelity", k=3, lo=lo, hi=hi, seed=3, **FAST).propose_pairs(h, 2)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.fidelity, b.fidelity)
    assert a.x.shape == (2, 3) and set(a.fidelity) <= {0.0, 1.0}
    np.testing.assert_allclose(a.x.sum(axis=1), 1.0, atol=1e-9)
    assert (a.x >= lo - 1e-9).all() and (a.x <= hi + 1e-9).all(), a.x
    first = get_strategy("multifidelity", k=3, seed=3).propose_pairs(History.empty(3), 3)
    assert first.fidelity.tolist() == [0.0, 0.0, 0.0]  # random merges before the GP


def test_a_batch_never_repeats_an_evaluated_or_proposed_pair():
    # a micro run's first rounds (6 merges, 1 real run, flat utilities): the kriging believer
    # alone proposes the run at (0, 1) twice in one batch
    x0 = np.array([1.0, 0.0, 0.5, 0.0009, 0.2012, 0.8433, 0.5])
    y = np.array([0.3597, 0.3640, 0.3624, 0.3640, 0.3634, 0.3607, 0.3614])
    h = History(np.c_[x0, 1 - x0], y, None, np.r_[np.zeros(6), 1.0])
    mf = get_strategy("multifidelity", k=2, seed=0, cost_exponent=0, num_restarts=2, raw_samples=32)
    pairs = mf.propose_pairs(h, 3)
    seen = np.c_[h.x, h.fidelities]
    new = np.c_[pairs.x, pairs.fidelity]
    for i, row in enumerate(new):
        before = np.vstack([seen, new[:i]])
        same = before[before[:, -1] == row[-1], :-1]
        assert np.abs(same - row[:-1]).sum(axis=1).min() >= 1e-3, (i, new)


def test_level_costs_are_measured_else_prior():
    h = two_fidelities(4, 2, run_cost=None)
    h = History(h.x, h.y, np.array([1.0, 4.0, 1.0, 4.0, 50.0, 200.0]), h.fidelity)
    s = get_strategy("multifidelity", k=3, levels=(0.0, 0.5, 1.0), prior_costs=(1.0, 10.0, 30.0))
    np.testing.assert_allclose(s.level_costs(h), [2.0, 10.0, 100.0])  # geometric means
    no_prior = get_strategy("multifidelity", k=3, levels=(0.0, 0.5, 1.0))
    with pytest.raises(SearchError, match=r"no row measured at fidelity 0\.5 and no prior cost"):
        no_prior.level_costs(h)
    unmeasured = History(h.x, h.y, None, h.fidelity)
    np.testing.assert_array_equal(no_prior.level_costs(unmeasured), [1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"levels": ()}, "need at least one level"),
        ({"levels": (0.0, 1.5)}, r"levels must increase inside \[0, 1\]"),
        ({"levels": (1.0, 0.0)}, r"levels must increase inside \[0, 1\]"),
        ({"prior_costs": (1.0, -2.0)}, "prior_costs must be 2 positive costs"),
        ({"exponent_decay": 0.0}, "0 < exponent_decay <= 1"),
        ({"n_init": 1}, "need n_init >= 2"),
        ({"choice": "median"}, "choice must be mean or lower_bound"),
        ({"level": 1.0}, "0 < level < 1"),
    ],
)
def test_bad_settings_fail_with_the_setting(settings, message):
    with pytest.raises(SearchError, match=message):
        get_strategy("multifidelity", k=3, **settings)


def test_history_fidelities_are_checked_and_default_to_merges():
    h = History.empty(2).add(np.array([[0.5, 0.5]]), np.array([1.0]))
    assert h.fidelity is None and h.fidelities.tolist() == [0.0]
    h = h.add(np.array([[1.0, 0.0]]), np.array([0.0]), fidelity=np.array([1.0]))
    assert h.fidelity.tolist() == [0.0, 1.0]
    assert h.add(np.array([[0.0, 1.0]]), np.array([0.0])).fidelity.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(SearchError, match=r"fidelity must lie in \[0, 1\]; not at row\(s\) \[0\]"):
        History(np.array([[0.5, 0.5]]), np.zeros(1), None, np.array([2.0]))
