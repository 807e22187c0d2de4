"""Calibration of the interval: folds keep the anchors in training, coverage counts what it
should, and the held-out targets are the measured utilities and gains."""

import numpy as np
import pytest

from parammix_core import simplex
from parammix_core.config import EvalTask
from parammix_core.search.calibration import (
    CalibrationError,
    HeldOut,
    cross_validated,
    held_out_folds,
)

TASKS = [
    EvalTask(name="t1", group="g1"),
    EvalTask(name="t2", group="g1"),
    EvalTask(name="t3", group="g2"),
]
WEIGHTS = {"g1": 1.0, "g2": 3.0}


def _lstsq(alphas, scores):
    def fit(x, y):
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        return lambda at: at @ coef

    return dict.fromkeys(scores, fit)


def _pool(k: int = 3, n: int = 24) -> np.ndarray:
    return np.vstack([simplex.dirichlet(k, n, seed=2), simplex.uniform(k), simplex.vertices(k)])


def test_folds_hold_out_every_other_mixture_once_and_never_an_anchor():
    alphas = _pool()
    folds = held_out_folds(alphas, 5, seed=0)
    held = np.concatenate(folds)
    np.testing.assert_array_equal(np.sort(held), np.arange(24))  # anchors are rows 24..27
    assert [len(f) for f in folds] == [5, 5, 5, 5, 4]


def test_folds_refuse_too_many_folds_and_a_pool_without_uniform():
    with pytest.raises(CalibrationError, match=r"--folds 30: needs 2 <= folds <= the 24"):
        held_out_folds(_pool(), 30, seed=0)
    with pytest.raises(CalibrationError, match="uniform mixture was not evaluated"):
        held_out_folds(_pool()[[*range(24), 25, 26, 27]], 5, seed=0)


def test_coverage_counts_values_inside_and_widens_by_the_target_noise():
    held = HeldOut(
        low=np.array([0.0, 0.0, 0.0, 0.0]),
        high=np.array([1.0, 1.0, 1.0, 1.0]),
        measured=np.array([0.5, 1.0, 1.2, -0.5]),
        measured_se=np.array([0.0, 0.0, 0.1, 0.1]),
        level=0.9,
    )
    assert held.coverage() == 0.5
    # half-width 0.5 widened by se 0.1: sqrt(0.25 + (1.645 * 0.1)^2) = 0.526 < 0.7, the
    # distance of 1.2 from the centre: still 2 of 4
    assert held.coverage(widen=True) == 0.5
    held_wide = HeldOut(held.low, held.high, held.measured, np.array([0, 0, 0.5, 0.1]), 0.9)
    assert held_wide.coverage(widen=True) == 0.75  # sqrt(0.25 + (1.645 * 0.5)^2) = 0.962 >= 0.7
    assert held.mean_width == 1.0


def test_cross_validated_targets_are_the_measured_utility_and_gain():
    alphas = _pool()
    rng = np.random.default_rng(0)
    per_doc = {t.name: alphas @ rng.uniform(0, 1, (3, 40)) for t in TASKS}
    every = {t: np.arange(40) for t in per_doc}
    odd = {t: np.arange(1, 40, 2) for t in per_doc}
    args = dict(
        alphas=alphas,
        per_doc=per_doc,
        tasks=TASKS,
        weights=WEIGHTS,
        normalise="raw",
        folds=4,
        choose=_lstsq,
        seed=0,
        replicates=20,
        level=0.9,
    )
    out = cross_validated(fit_docs=every, target_docs=odd, **args)
    held = np.concatenate(held_out_folds(alphas, 4, seed=0))
    g1 = (per_doc["t1"][:, 1::2].mean(axis=1) + per_doc["t2"][:, 1::2].mean(axis=1)) / 2
    utility = (g1 + 3 * per_doc["t3"][:, 1::2].mean(axis=1)) / 4  # (N,)
    np.testing.assert_allclose(out["utility"].measured, utility[held], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["gain"].measured, utility[held] - utility[24], atol=1e-12)
    row = held[0]
    diff = {t: per_doc[t][row, 1::2] - per_doc[t][24, 1::2] for t in per_doc}
    se2 = {t: d.var(ddof=1) / 20 for t, d in diff.items()}
    expected = np.sqrt((1 / 4) ** 2 * (se2["t1"] + se2["t2"]) / 4 + (3 / 4) ** 2 * se2["t3"])
    assert out["gain"].measured_se[0] == pytest.approx(expected, rel=1e-9)


def test_an_exactly_linear_pool_is_covered_on_its_own_documents():
    """Scores linear in the mixture on every document: a linear surrogate predicts held-out
    mixtures exactly, so every interval holds them (and the gain's is narrower than the
    utility's, the shared documents cancelling)."""
    alphas = _pool()
    rng = np.random.default_rng(1)
    per_doc = {t.name: alphas @ rng.uniform(0, 1, (3, 40)) for t in TASKS}
    every = {t: np.arange(40) for t in per_doc}
    out = cross_validated(
        alphas, per_doc, TASKS, WEIGHTS, "raw", every, every, 4, _lstsq, 0, 30, 0.9
    )
    assert out["utility"].coverage() == 1.0 and out["gain"].coverage() == 1.0
    assert out["gain"].mean_width < out["utility"].mean_width
