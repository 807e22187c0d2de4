"""Merge scores on the real runs' scale: the per-group line and the choice it steers."""

import json

import numpy as np
import pytest
from scipy.stats import linregress

from parammix_core.config import SearchConfig
from parammix_core.search import Choice, SearchError, choose_mixture
from parammix_core.search.real_scale import fit_real_scale, lines_from_json, lines_to_json
from parammix_core.surrogate import fit_surrogates


def test_a_noise_free_line_is_recovered_exactly():
    merged = {"math": np.array([0.1, 0.4, 0.2, 0.9]), "code": np.array([1.0, 2.0, 3.0, 5.0])}
    real = {"math": 0.5 + 2.0 * merged["math"], "code": -1.0 + 0.25 * merged["code"]}
    lines = fit_real_scale(merged, real)
    assert lines["math"].slope == pytest.approx(2.0) and lines["math"].intercept == pytest.approx(
        0.5
    )
    assert lines["code"].slope == pytest.approx(0.25)
    assert lines["code"].intercept == pytest.approx(-1.0)
    assert lines["math"].slope_se == pytest.approx(0.0, abs=1e-9)
    assert lines["math"].rho == pytest.approx(1.0) and lines["math"].n == 4
    np.testing.assert_allclose(lines["code"](np.array([4.0])), [0.0], atol=1e-12)


def test_slope_and_its_standard_error_match_least_squares():
    rng = np.random.default_rng(1)
    x = rng.normal(size=13)
    y = 0.4 * x + rng.normal(0, 0.3, 13)
    line = fit_real_scale({"g": x}, {"g": y})["g"]
    want = linregress(x, y)
    assert line.slope == pytest.approx(want.slope, rel=1e-9)
    assert line.intercept == pytest.approx(want.intercept, rel=1e-9)
    assert line.slope_se == pytest.approx(want.stderr, rel=1e-9)


def test_a_group_the_merge_ranks_backwards_stops_steering():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([4.0, 3.5, 2.0, 1.5])
    line = fit_real_scale({"g": x}, {"g": y})["g"]
    assert line.slope == 0.0 and line.intercept == pytest.approx(y.mean())
    assert line.rho == pytest.approx(-1.0)
    np.testing.assert_allclose(line(np.array([0.0, 10.0])), [y.mean(), y.mean()])


def test_a_group_the_merges_score_all_alike_stops_steering():
    y = np.array([1.0, 2.0, 4.0])
    line = fit_real_scale({"g": np.array([0.5, 0.5, 0.5])}, {"g": y})["g"]
    assert line.slope == 0.0 and line.intercept == pytest.approx(y.mean()) and line.n == 3
    assert np.isnan(line.slope_se) and np.isnan(line.rho)
    np.testing.assert_allclose(line(np.array([0.5, 0.9])), [y.mean(), y.mean()])


@pytest.mark.parametrize(
    ("merged", "real", "message"),
    [
        ({"g": [1.0, 2.0]}, {"g": [1.0, 2.0]}, "needs >= 3 aligned mixtures"),
        ({"g": [1.0, 2.0, 3.0]}, {"g": [1.0, 2.0]}, "needs >= 3 aligned mixtures"),
        ({"g": [1.0, 2.0, 3.0]}, {"h": [1.0, 2.0, 3.0]}, "no real scores for group 'g'"),
    ],
)
def test_clear_errors(merged, real, message):
    with pytest.raises(SearchError, match=message):
        fit_real_scale(
            {g: np.array(v) for g, v in merged.items()}, {g: np.array(v) for g, v in real.items()}
        )


def test_json_round_trip():
    lines = fit_real_scale({"g": np.array([1.0, 2.0, 4.0])}, {"g": np.array([0.0, 1.0, 2.5])})
    again = lines_from_json(json.loads(json.dumps(lines_to_json(lines))))
    assert again == lines and isinstance(again["g"].n, int)


@pytest.fixture(scope="module")
def exaggerated():
    """Group `wide` peaks at domain 0 and `narrow` at domain 1; the merges stretch `wide` 10x
    more than real training does, so raw merge scores let `wide` decide."""
    x = np.random.default_rng(3).dirichlet(np.ones(3), size=200)
    merged = {"wide": 10 * x[:, 0], "narrow": x[:, 1]}
    fitted = fit_surrogates(x, {f"group.{g}": v for g, v in merged.items()}, 3, 0)
    return fitted, merged


def choose(fitted, merged, real_scale=None) -> Choice:
    return choose_mixture(
        fitted,
        ["d0", "d1", "d2"],
        ["wide", "narrow"],
        SearchConfig(n_candidates=2000, top_k=8),
        0,
        measured=merged,
        real_scale=real_scale,
    )


def test_the_real_scale_moves_the_choice_to_what_real_runs_prefer(exaggerated):
    fitted, merged = exaggerated
    # real runs: `wide` moves 0.05 per unit of the merge's move (0.5 over the simplex), `narrow`
    # 1.0 (1.0 over it): on the real scale domain 1 is worth more than domain 0
    x0, x1 = merged["wide"] / 10, merged["narrow"]
    lines = fit_real_scale(merged, {"wide": 0.5 * x0 + 2.0, "narrow": x1 - 1.0})
    raw, calibrated = choose(fitted, merged), choose(fitted, merged, lines)
    assert raw.alpha["d0"] > 0.8
    assert calibrated.alpha["d1"] > 0.8
    # predictions are on the real scale: uniform's `wide` is 2 + 0.5 / 3, not 10 / 3
    assert calibrated.baselines["uniform"]["predicted"]["wide"] == pytest.approx(
        2 + 0.5 / 3, abs=0.05
    )
    assert raw.baselines["uniform"]["predicted"]["wide"] == pytest.approx(10 / 3, abs=0.3)


def test_a_choice_without_a_map_is_unchanged_and_a_partial_map_is_refused(exaggerated):
    fitted, merged = exaggerated
    identity = fit_real_scale(merged, merged)
    assert choose(fitted, merged, identity).alpha == pytest.approx(choose(fitted, merged).alpha)
    with pytest.raises(SearchError, match=r"lacks group\(s\) \['narrow'\]"):
        choose(fitted, merged, {"wide": identity["wide"]})
