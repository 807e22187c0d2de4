import numpy as np
import pytest

from parammix_core.config import EvalTask
from parammix_core.noise import group_noise, paired_stderr, reference_row, run_noise, split_half


def test_paired_stderr_by_hand():
    per_doc = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    se = paired_stderr(per_doc, reference=0)
    assert se[0] == 0.0
    # row 1 - row 0 = [0, 1, 0, 0]: sd (ddof 1) = 0.5, / sqrt(4) = 0.25
    assert se[1] == pytest.approx(0.25)
    assert se[2] == pytest.approx(0.25)


def test_split_half_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    quality = np.linspace(0.2, 0.8, 40)[:, None]  # (N, 1) true per-mixture score
    signal = quality + 0.05 * rng.standard_normal((40, 400))
    noise_only = 0.5 + 0.05 * rng.standard_normal((40, 400))
    assert split_half([signal]) > 0.95
    assert abs(split_half([noise_only])) < 0.5


def test_split_half_is_not_fooled_by_documents_dealt_round_robin_over_kinds():
    """Even documents of one kind, odd of another whose scores move the opposite way, as the
    built-in suite deals them: every document still tracks its mixture's quality, so the
    group score is reliable; an even/odd split would call it anti-correlated."""
    rng = np.random.default_rng(1)
    quality = np.linspace(-1.0, 1.0, 30)[:, None]  # (N, 1)
    per_doc = np.empty((30, 200))
    per_doc[:, 0::2] = 1.0 * quality + 0.3 * rng.standard_normal((30, 100))
    per_doc[:, 1::2] = -0.6 * quality + 0.3 * rng.standard_normal((30, 100))
    even, odd = per_doc[:, 0::2].mean(axis=1), per_doc[:, 1::2].mean(axis=1)
    assert np.corrcoef(even, odd)[0, 1] < -0.9  # what the even/odd split measured
    assert split_half([per_doc]) > 0.8
    assert split_half([per_doc]) == split_half([per_doc])  # the halves are seeded


def test_split_half_does_not_extrapolate_a_negative_correlation():
    even_high = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # even and odd docs disagree
    r = np.corrcoef(even_high[:, 0], even_high[:, 1])[0, 1]
    assert r < 0
    assert split_half([even_high]) == pytest.approx(r)


def test_reference_row_finds_uniform():
    alphas = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert reference_row(alphas) == 2
    assert reference_row(alphas[:2]) == 0


def test_group_noise_combines_tasks():
    alphas = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    a = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    tasks = [EvalTask(name="a", group="g"), EvalTask(name="b", group="g")]
    out = group_noise(alphas, {"a": a, "b": a.copy()}, tasks)["g"]
    scores = a.mean(axis=1)  # both tasks equal, so the group score is task a's
    assert out["spread_sd"] == pytest.approx(scores.std(ddof=1))
    per_task = paired_stderr(a, reference=1)
    expected = np.sqrt(2 * per_task**2) / 2
    assert out["paired_stderr"] == pytest.approx(np.median(np.delete(expected, 1)))


def test_run_noise_by_hand():
    # three mixtures trained twice, two documents; the seed pair shifts document 0 by 1 on all
    first = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 3.0]])
    second = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 1.5]])
    out = run_noise(first, second)
    # differences less each document's mean: [[0, -2/3], [0, -1/6], [0, 5/6]]
    means = np.array([-1 / 3, -1 / 12, 5 / 12])
    assert out["noise_sd"] == pytest.approx(np.std(means, ddof=1) / np.sqrt(2))
    within = np.mean([2 / 9, 1 / 72, 25 / 72]) * 3 / 2  # each row's variance, ddof=1
    assert out["documents_sd"] == pytest.approx(np.sqrt(within / 4))
    assert out["doubled_sd"] == pytest.approx(
        np.sqrt(out["noise_sd"] ** 2 - out["documents_sd"] ** 2 / 2)
    )
    assert out["docs"] == 2
    assert np.isnan(run_noise(first[:2], second[:2])["noise_sd"])  # two mixtures: no estimate


def test_run_noise_tells_a_run_wide_shift_from_its_documents():
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, (40, 1000))
    docs_only = [truth + rng.normal(0, 0.1, truth.shape) for _ in range(2)]
    out = run_noise(*docs_only)
    # documents moving independently: the noise is theirs, and twice as many cut it by 1/sqrt 2
    assert out["noise_sd"] == pytest.approx(0.1 / np.sqrt(1000), rel=0.25)
    assert out["documents_sd"] == pytest.approx(0.1 / np.sqrt(1000), rel=0.05)
    assert out["doubled_sd"] < 0.85 * out["noise_sd"]
    shifted = [d + rng.normal(0, 0.02, (40, 1)) for d in docs_only]
    out = run_noise(*shifted)
    # a shift of each whole run: the noise is the shift's, the documents' share unchanged
    assert out["noise_sd"] == pytest.approx(0.02, rel=0.25)
    assert out["documents_sd"] == pytest.approx(0.1 / np.sqrt(1000), rel=0.05)
    assert out["doubled_sd"] > 0.98 * out["noise_sd"]
