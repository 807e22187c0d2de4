import re

import numpy as np
import pytest

from parammix_core import simplex
from parammix_core.simplex import SimplexError

DOMAINS = ["math", "code", "sft", "web"]


def test_points_lie_on_the_simplex():
    for points in (
        simplex.vertices(4),
        simplex.uniform(4)[None],
        simplex.dirichlet(4, 50, 0.5, 1),
        simplex.grid(4, 4),
    ):
        assert np.all(points >= 0)
        np.testing.assert_allclose(points.sum(axis=1), 1.0, atol=1e-12)
    assert len(simplex.grid(3, 4)) == 15  # C(4+2, 2)
    np.testing.assert_array_equal(simplex.dirichlet(4, 5, seed=3), simplex.dirichlet(4, 5, seed=3))


@pytest.mark.parametrize(
    ("alpha", "message"),
    [
        ([0.5, 0.5, 0.0], "3 weight(s) but there are 4 domains"),
        ([0.5, 0.5, 0.5, -0.5], "negative for domain(s) ['web']"),
        ([0.5, 0.5, float("nan"), 0.0], "not finite for domain(s) ['sft']"),
        ([0.3, 0.3, 0.3, 0.3], "sum to 1.2, not 1"),
    ],
)
def test_validate_names_the_problem(alpha, message):
    with pytest.raises(SimplexError) as info:
        simplex.validate(alpha, DOMAINS)
    assert message in str(info.value)


def test_validate_and_mapping():
    np.testing.assert_allclose(simplex.validate([0.25] * 4, DOMAINS), simplex.uniform(4))
    a = simplex.from_mapping({"math": 0.5, "code": 0.5, "sft": 0, "web": 0}, DOMAINS)
    np.testing.assert_allclose(a, [0.5, 0.5, 0, 0])
    with pytest.raises(SimplexError, match=r"unknown domain\(s\) \['poetry'\]"):
        simplex.from_mapping({"poetry": 1.0}, DOMAINS)
    with pytest.raises(SimplexError, match=r"no weight for domain\(s\) \['sft', 'web'\]"):
        simplex.from_mapping({"math": 0.5, "code": 0.5}, DOMAINS)


def test_bounded_sampling_respects_bounds():
    lo = np.array([0.2, 0.0, 0.0, 0.0])
    hi = np.array([1.0, 0.3, 1.0, 1.0])
    points = simplex.sample_bounded(4, 500, lo, hi, seed=0)
    assert points.shape == (500, 4)
    assert np.all(points[:, 0] >= 0.2 - 1e-9) and np.all(points[:, 1] <= 0.3 + 1e-9)
    np.testing.assert_allclose(points.sum(axis=1), 1.0, atol=1e-12)
    with pytest.raises(SimplexError, match=re.escape("floors sum to 1.2 > 1")):
        simplex.sample_bounded(4, 5, np.full(4, 0.3), np.ones(4))


def test_entropy():
    np.testing.assert_allclose(simplex.entropy(simplex.vertices(3)), 0.0, atol=1e-9)
    np.testing.assert_allclose(simplex.entropy(simplex.uniform(4)[None]), [np.log(4)])


def test_no_draws_is_an_empty_plan_of_the_right_width():
    """n_mixtures = K + 1 (the vertices and uniform only) asks for no draws."""
    none = simplex.sample_bounded(3, 0, np.zeros(3), np.ones(3))
    assert none.shape == (0, 3)
