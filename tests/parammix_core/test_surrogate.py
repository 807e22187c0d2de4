"""Surrogates: recover a known function on the simplex, score CV honestly, round-trip JSON."""

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from parammix_core.surrogate import SurrogateError, SurrogateSet, fit_surrogates

OPTIMUM = np.array([0.4, 0.3, 0.2, 0.1])


def bowl(x: np.ndarray) -> np.ndarray:
    """A smooth function on the simplex with its maximum at OPTIMUM."""
    return -((x - OPTIMUM) ** 2).sum(axis=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=120)  # (120, 4)
    return x, {"bowl": bowl(x) + rng.normal(0, 0.005, size=120), "flat": np.full(120, 0.25)}


@pytest.fixture(scope="module")
def fitted(data):
    x, targets = data
    return fit_surrogates(x, targets, folds=5, seed=0)


def test_recovers_known_function_out_of_fold(data, fitted):
    x, targets = data
    cv = fitted.cv["bowl"]
    assert cv["spearman"] > 0.9
    assert cv["r2"] > 0.8
    # the quadratic bowl is exactly what a linear model on the weights cannot fit
    assert cv["r2"] > cv["r2_linear"] + 0.2
    # the reported numbers are those of the stored out-of-fold predictions
    oof = fitted.oof["bowl"]
    assert oof.shape == (120,)
    assert cv["spearman"] == pytest.approx(spearmanr(targets["bowl"], oof).statistic, abs=1e-12)
    assert spearmanr(bowl(x), oof).statistic > 0.9
    # and the final model generalises to fresh mixtures
    fresh = np.random.default_rng(1).dirichlet(np.ones(4), size=300)
    assert spearmanr(bowl(fresh), fitted.predict(fresh)["bowl"]).statistic > 0.9


def test_constant_target_has_undefined_scores(fitted):
    cv = fitted.cv["flat"]
    assert math.isnan(cv["spearman"]) and math.isnan(cv["r2"]) and math.isnan(cv["pearson"])
    assert np.allclose(fitted.predict(np.eye(4))["flat"], 0.25)
    assert fitted.to_json()["cv"]["flat"]["spearman"] is None


def test_json_round_trip_predicts_identically(fitted):
    text = json.dumps(fitted.to_json())
    loaded = SurrogateSet.from_json(json.loads(text))
    grid = np.random.default_rng(2).dirichlet(np.ones(4), size=500)
    assert loaded.targets == fitted.targets
    for name in fitted.targets:
        assert np.array_equal(loaded.predict(grid)[name], fitted.predict(grid)[name])
        assert np.array_equal(loaded.predict_linear(grid)[name], fitted.predict_linear(grid)[name])
        assert np.array_equal(loaded.oof[name], fitted.oof[name])
    assert loaded.cv["bowl"] == fitted.cv["bowl"]
    assert math.isnan(loaded.cv["flat"]["r2"])


def test_from_json_names_what_is_missing(fitted):
    d = fitted.to_json()
    del d["lightgbm"]["bowl"]
    with pytest.raises(SurrogateError, match=r"'lightgbm' lacks target\(s\) \['bowl'\]"):
        SurrogateSet.from_json(d)
    with pytest.raises(SurrogateError, match="not a surrogate set"):
        SurrogateSet.from_json({"targets": []})


def test_same_seed_same_model(data):
    x, targets = data
    a = fit_surrogates(x, {"bowl": targets["bowl"]}, folds=3, seed=7)
    b = fit_surrogates(x, {"bowl": targets["bowl"]}, folds=3, seed=7)
    assert np.array_equal(a.oof["bowl"], b.oof["bowl"])
    assert a.to_json() == b.to_json()


def test_nan_target_is_named(data):
    x, targets = data
    y = targets["bowl"].copy()
    y[17] = np.nan
    with pytest.raises(
        SurrogateError, match=r"target 'group\.math' has NaN or inf at row\(s\) \[17\]"
    ):
        fit_surrogates(x, {"group.math": y}, folds=5, seed=0)


def test_too_few_rows_for_folds(data):
    x, targets = data
    with pytest.raises(SurrogateError, match="4 mixture"):
        fit_surrogates(x[:4], {"bowl": targets["bowl"][:4]}, folds=5, seed=0)


def test_rows_off_the_simplex_are_named(data):
    x, targets = data
    bad = x.copy()
    bad[3] *= 2
    with pytest.raises(SurrogateError, match=r"row\(s\) \[3\] are not on the simplex"):
        fit_surrogates(bad, {"bowl": targets["bowl"]}, folds=5, seed=0)


def test_target_length_must_match(data):
    x, targets = data
    with pytest.raises(SurrogateError, match=r"'bowl' has shape \(119,\)"):
        fit_surrogates(x, {"bowl": targets["bowl"][:-1]}, folds=5, seed=0)


def test_predict_checks_width(fitted):
    with pytest.raises(SurrogateError, match=r"take \(N, 4\)"):
        fitted.predict(np.full((2, 3), 1 / 3))


def test_too_few_rows_for_the_folds_is_named():
    """3 mixtures in 2 folds leave a fit of 1 row: refused with the fields to change."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    with pytest.raises(SurrogateError, match=r"3 mixture\(s\) are too few for 2-fold .* raise"):
        fit_surrogates(x, {"loss": np.array([1.0, 2.0, 1.5])}, folds=2, seed=0)
