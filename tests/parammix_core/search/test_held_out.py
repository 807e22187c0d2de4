"""The held-out check on predictors simple enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from parammix_core.search import History
from parammix_core.search.held_out import held_out_runs


def line(x: np.ndarray) -> np.ndarray:
    return x[:, 0] - x[:, 1]


def runs(n: int = 10) -> History:
    x = np.random.default_rng(0).dirichlet(np.ones(3), n)
    return History(x, line(x), None, np.ones(n))


def test_a_predictor_that_knows_the_surface_beats_every_shuffle():
    h = runs()
    exact = lambda rest, x: (line(x), np.full(len(x), 0.5))  # noqa: E731
    told = []
    checked = held_out_runs(
        h, np.arange(10), exact, 5, 19, seed=0, progress=lambda *a: told.append(a)
    )
    assert checked.n == 10 and checked.folds == 5 and checked.r2 == pytest.approx(1.0)
    assert checked.scale == pytest.approx(0.0)  # no error at all
    assert (checked.shuffled, checked.reached, checked.p) == (19, 0, pytest.approx(0.05))
    assert [t[:2] for t in told] == [(i, 20) for i in range(1, 21)]


def test_a_predictor_of_the_others_mean_runs_no_shuffle():
    h = runs()
    mean = lambda rest, x: (np.full(len(x), rest.y.mean()), np.ones(len(x)))  # noqa: E731
    checked = held_out_runs(h, np.arange(10), mean, 5, 19, seed=0)
    # each fold predicted by the mean of the other rows: exactly the R² baseline, so R² = 0
    assert checked.r2 == pytest.approx(0.0, abs=1e-12)
    assert (checked.shuffled, checked.p) == (0, 1.0) and not checked.predicts(0.05)
    errors = np.concatenate(
        [
            h.y[f] - np.delete(h.y, f).mean()
            for f in np.array_split(np.random.default_rng(0).permutation(10), 5)
        ]
    )
    assert checked.scale == pytest.approx(np.sqrt(np.mean(errors**2)))  # sd 1: the errors' rms
