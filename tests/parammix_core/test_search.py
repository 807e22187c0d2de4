"""Mixture choice: the utility, the top-k average, bounds and baselines."""

import json

import numpy as np
import pytest

from parammix_core.config import Bounds, SearchConfig
from parammix_core.search import (
    Choice,
    SearchError,
    choose_mixture,
    normaliser,
    scale_from_spec,
    utility,
)
from parammix_core.surrogate import fit_surrogates

DOMAINS = ["math", "code", "sft", "web"]
GROUPS = ["reasoning", "knowledge"]
# Each group peaks at its own mixture; with equal weights the utility peaks at their mean.
OPTIMA = {"reasoning": np.array([0.5, 0.3, 0.1, 0.1]), "knowledge": np.array([0.3, 0.3, 0.3, 0.1])}
BEST = np.array([0.4, 0.3, 0.2, 0.1])


def true_scores(x: np.ndarray) -> dict[str, np.ndarray]:
    return {g: -((x - o) ** 2).sum(axis=1) for g, o in OPTIMA.items()}


@pytest.fixture(scope="module")
def surrogates():
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=300)  # (300, 4)
    targets = {f"group.{g}": s + rng.normal(0, 0.003, 300) for g, s in true_scores(x).items()}
    return fit_surrogates(x, targets, folds=3, seed=0)


def config(**kw) -> SearchConfig:
    return SearchConfig(n_candidates=4000, top_k=32, **kw)


def l1(choice: Choice, target: np.ndarray) -> float:
    return float(np.abs(np.array([choice.alpha[d] for d in DOMAINS]) - target).sum())


def test_utility_by_hand():
    scores = {"math": np.array([1.0, 0.0, 0.5]), "code": np.array([0.0, 1.0, 0.5])}
    assert np.allclose(utility(scores, None), [0.5, 0.5, 0.5])
    assert np.allclose(utility(scores, {}), [0.5, 0.5, 0.5])
    assert np.allclose(utility(scores, {"math": 3.0, "code": 1.0}), [0.75, 0.25, 0.5])


def test_utility_names_unknown_and_missing_groups():
    scores = {"math": np.zeros(2), "code": np.zeros(2)}
    with pytest.raises(
        SearchError, match=r"unknown group\(s\) \['poetry'\], missing group\(s\) \['code'\]"
    ):
        utility(scores, {"math": 1.0, "poetry": 1.0})
    with pytest.raises(SearchError, match="differ in shape"):
        utility({"math": np.zeros(2), "code": np.zeros(3)}, None)


def test_lands_near_the_known_maximiser(surrogates):
    choice = choose_mixture(surrogates, DOMAINS, GROUPS, config(), seed=0)
    assert l1(choice, BEST) < 0.1
    assert sum(choice.alpha.values()) == pytest.approx(1.0, abs=1e-9)
    assert len(choice.top_k) == 32
    # the chosen mixture is truly better than uniform, and the report says so too
    x = np.array([[choice.alpha[d] for d in DOMAINS], [0.25] * 4])
    true_u = utility(true_scores(x), None)
    assert true_u[0] > true_u[1]
    assert choice.predicted_utility > choice.baselines["uniform"]["predicted_utility"]
    assert choice.weights == {"reasoning": 1.0, "knowledge": 1.0}


def test_group_weights_move_the_choice(surrogates):
    weights = {"reasoning": 3.0, "knowledge": 1.0}
    choice = choose_mixture(surrogates, DOMAINS, GROUPS, config(group_weights=weights), seed=0)
    target = (3 * OPTIMA["reasoning"] + OPTIMA["knowledge"]) / 4  # [0.45, 0.3, 0.15, 0.1]
    assert l1(choice, target) < 0.1
    assert choice.alpha["math"] > 0.4
    assert choice.weights == weights


def test_the_choice_if_one_group_counted_twice(surrogates):
    choice = choose_mixture(surrogates, DOMAINS, GROUPS, config(), seed=0)
    assert set(choice.reweighted) == set(GROUPS)
    for g, other in (("reasoning", "knowledge"), ("knowledge", "reasoning")):
        p = choice.reweighted[g]
        target = (2 * OPTIMA[g] + OPTIMA[other]) / 3  # the bowls' weighted mean
        got = np.array([p["alpha"][d] for d in DOMAINS])
        assert np.abs(got - target).sum() < 0.1
        # its scores are the surrogates' at that mixture, its utility at the equal weights
        pred = surrogates.predict_best(got[None, :])
        assert p["predicted"] == pytest.approx({h: pred[f"group.{h}"][0] for h in GROUPS})
        assert p["predicted_utility"] == pytest.approx(np.mean(list(p["predicted"].values())))
        assert p["predicted_utility"] <= choice.predicted_utility + 1e-3
    # counting reasoning (peak math 0.5, sft 0.1) more moves data from sft to math
    assert choice.reweighted["reasoning"]["alpha"]["math"] > choice.alpha["math"] + 0.01
    assert choice.reweighted["knowledge"]["alpha"]["sft"] > choice.alpha["sft"] + 0.01
    assert 0.01 < choice.moved("reasoning") < 0.1  # truth: 1/30 of the data


@pytest.mark.parametrize(
    ("bounds", "target"),
    [
        # a floor on web: the bowl's best point with web = 0.3, the rest lowered equally
        ({"web": Bounds(min=0.3)}, BEST + np.array([-0.2, -0.2, -0.2, 0.6]) / 3),
        # a cap on math: math = 0.2, the rest raised equally
        ({"math": Bounds(max=0.2)}, BEST + np.array([-0.6, 0.2, 0.2, 0.2]) / 3),
    ],
)
def test_respects_floor_and_cap(surrogates, bounds, target):
    choice = choose_mixture(surrogates, DOMAINS, GROUPS, config(bounds=bounds), seed=0)
    points = [choice.alpha] + [c["alpha"] for c in choice.top_k]
    for name, b in bounds.items():
        assert all(b.min - 1e-9 <= p[name] <= b.max + 1e-9 for p in points)
    assert l1(choice, target) < 0.1


def test_baselines_uniform_and_natural(surrogates):
    natural = {"math": 10, "code": 30, "sft": 20, "web": 40}  # token counts
    choice = choose_mixture(surrogates, DOMAINS, GROUPS, config(), seed=0, natural=natural)
    assert choice.baselines["uniform"]["alpha"] == dict.fromkeys(DOMAINS, 0.25)
    assert choice.baselines["natural"]["alpha"] == pytest.approx(
        {"math": 0.1, "code": 0.3, "sft": 0.2, "web": 0.4}
    )
    nat = np.array([[0.1, 0.3, 0.2, 0.4]])
    predicted = surrogates.predict(nat)
    for g in GROUPS:
        assert choice.baselines["natural"]["predicted"][g] == pytest.approx(
            predicted[f"group.{g}"][0]
        )
    with pytest.raises(SearchError, match=r"missing domain\(s\) \['code', 'sft', 'web'\]"):
        choose_mixture(surrogates, DOMAINS, GROUPS, config(), seed=0, natural={"math": 1.0})


def test_deterministic_and_json_round_trip(surrogates):
    a = choose_mixture(
        surrogates, DOMAINS, GROUPS, config(), seed=3, natural={d: 1 for d in DOMAINS}
    )
    b = choose_mixture(
        surrogates, DOMAINS, GROUPS, config(), seed=3, natural={d: 1 for d in DOMAINS}
    )
    assert a == b
    assert Choice.from_json(json.loads(json.dumps(a.to_json()))) == a
    c = choose_mixture(surrogates, DOMAINS, GROUPS, config(), seed=4)
    assert c.alpha != a.alpha


def test_clear_errors(surrogates):
    with pytest.raises(SearchError, match=r"no surrogate for \['group\.math'\]"):
        choose_mixture(surrogates, DOMAINS, ["math"], config(), seed=0)
    with pytest.raises(SearchError, match=r"4 weights but there are 3 domains"):
        choose_mixture(surrogates, DOMAINS[:3], GROUPS, config(), seed=0)
    with pytest.raises(SearchError, match=r"unknown domain\(s\) \['poetry'\]"):
        choose_mixture(surrogates, DOMAINS, GROUPS, config(bounds={"poetry": Bounds()}), seed=0)
    with pytest.raises(SearchError, match=r"floors sum to 1\.2"):
        choose_mixture(
            surrogates,
            DOMAINS,
            GROUPS,
            config(bounds={"math": Bounds(min=0.6), "code": Bounds(min=0.6)}),
            seed=0,
        )
    with pytest.raises(SearchError, match="choice JSON lacks"):
        Choice.from_json({"alpha": {}})


def test_each_normalisation_on_a_hand_made_table():
    measured = {"a": np.array([0.1, 0.2, 0.3, 0.4]), "b": np.array([10.0, 10.0, 12.0, 14.0])}
    raw = normaliser("raw", measured)
    np.testing.assert_array_equal(raw("a", np.array([0.25])), [0.25])
    z = normaliser("zscore", measured)
    sd_a = np.std([0.1, 0.2, 0.3, 0.4], ddof=1)
    np.testing.assert_allclose(z("a", np.array([0.25, 0.4])), [0.0, 0.15 / sd_a])
    rank = normaliser("rank", measured)
    np.testing.assert_allclose(rank("a", np.array([0.1, 0.25, 0.4, 9.0])), [0, 0.5, 1, 1])
    np.testing.assert_allclose(rank("b", np.array([13.0])), [5 / 6])  # between 2/3 and 1
    noise = normaliser("noise", measured, {"a": 0.05, "b": 0.0})
    np.testing.assert_allclose(noise("a", np.array([0.35])), [(0.35 - 0.25) / 0.05])
    sd_b = np.std([10.0, 10.0, 12.0, 14.0], ddof=1)
    np.testing.assert_allclose(noise("b", np.array([12.5])), [(12.5 - 11.5) / sd_b])  # no se
    with pytest.raises(SearchError, match="needs the evaluated scores"):
        normaliser("zscore")


def test_normalising_lets_a_narrow_group_count(surrogates):
    """Raw, the wide group decides; z-scored, both groups pull equally."""
    x = np.random.default_rng(3).dirichlet(np.ones(3), size=200)
    wide = 10 * x[:, 0]  # spread 10x wider, best at domain 0
    narrow = x[:, 1]  # best at domain 1
    fitted = fit_surrogates(x, {"group.wide": wide, "group.narrow": narrow}, 3, 0)
    measured = {"wide": wide, "narrow": narrow}
    choices = {
        mode: choose_mixture(
            fitted,
            ["d0", "d1", "d2"],
            ["wide", "narrow"],
            SearchConfig(n_candidates=2000, top_k=8, utility={"normalise": mode}),
            0,
            measured=measured,
        )
        for mode in ("raw", "zscore")
    }
    assert choices["raw"].alpha["d0"] > 0.8
    assert choices["zscore"].alpha["d1"] > choices["raw"].alpha["d1"] + 0.1
    assert choices["zscore"].normalise == "zscore"
    assert choices["raw"].scale == {} and scale_from_spec(choices["raw"].scale) is None
    # the choice keeps its scale, so whatever judges it later scores the same utility
    kept = Choice.from_json(json.loads(json.dumps(choices["zscore"].to_json()))).scale
    probe = np.array([0.0, 0.5, 3.0])
    for group, values in measured.items():
        want = normaliser("zscore", measured)(group, probe)
        np.testing.assert_allclose(scale_from_spec(kept)(group, probe), want, rtol=1e-12)
        assert kept["measured"][group] == pytest.approx(values.tolist())


def test_the_linear_surrogate_is_used_where_it_wins_cross_validation():
    x = np.random.default_rng(0).dirichlet(np.ones(3), size=40)
    y = x @ np.array([1.0, 2.0, 3.0])  # exactly linear: the linear model wins
    fitted = fit_surrogates(x, {"group.g": y}, 4, 0)
    assert fitted.uses_linear("group.g")
    at = np.array([[0.2, 0.3, 0.5]])
    np.testing.assert_allclose(fitted.predict_best(at)["group.g"], [2.3], atol=1e-2)
    np.testing.assert_allclose(
        fitted.predict_best(at)["group.g"], fitted.predict_linear(at)["group.g"]
    )
