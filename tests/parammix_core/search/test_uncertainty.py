"""The choice's interval: a flat surface is indistinguishable from uniform, a clear peak is
not; group scores from per-document scores equal the rows' means."""

import numpy as np

from parammix_core import simplex
from parammix_core.config import EvalTask
from parammix_core.search.uncertainty import gain_intervals, group_scores, verdict
from parammix_core.surrogate import lightgbm_predictor

TASKS = [EvalTask(name="t1", group="g1"), EvalTask(name="t2", group="g2")]
WEIGHTS = {"g1": 1.0, "g2": 1.0}


def _pool(n: int = 60, k: int = 3) -> np.ndarray:
    return np.vstack([simplex.vertices(k), simplex.uniform(k), simplex.dirichlet(k, n, seed=1)])


def _per_doc(alphas: np.ndarray, signal, docs: int = 200, noise: float = 0.3, seed: int = 0):
    """Per-document 0..1 scores: each mixture's mean is signal(alpha); documents add noise
    shared by all mixtures (document difficulty) and noise of their own."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, noise, size=docs)
    base = signal(alphas)[:, None] + difficulty[None, :]
    return {t.name: np.clip(base + rng.normal(0, noise, size=base.shape), 0, 1) for t in TASKS}


def _intervals(alphas, per_doc, chosen):
    k = alphas.shape[1]
    uniform = simplex.uniform(k)
    fit = lightgbm_predictor(seed=0)
    scores = group_scores(per_doc, TASKS, {t: np.arange(d.shape[1]) for t, d in per_doc.items()})
    at = np.vstack([chosen, uniform])
    u = sum(fit(alphas, y)(at) for y in scores.values()) / 2
    return gain_intervals(
        alphas,
        per_doc,
        TASKS,
        WEIGHTS,
        chosen,
        {"uniform": uniform},
        {"uniform": float(u[0] - u[1])},
        dict.fromkeys(WEIGHTS, fit),
        lambda group, y: y,
        seed=0,
        replicates=60,
    )


def test_group_scores_with_every_document_are_the_row_means():
    alphas = _pool()
    per_doc = _per_doc(alphas, lambda a: 0.5 + 0 * a[:, 0])
    every = {t: np.arange(d.shape[1]) for t, d in per_doc.items()}
    scores = group_scores(per_doc, TASKS, every)
    np.testing.assert_allclose(scores["g1"], per_doc["t1"].mean(axis=1), rtol=0, atol=1e-12)


def test_a_flat_surface_is_indistinguishable_from_uniform():
    alphas = _pool()
    per_doc = _per_doc(alphas, lambda a: 0.5 + 0 * a[:, 0])
    chosen = np.array([0.7, 0.2, 0.1])
    iv = _intervals(alphas, per_doc, chosen)["uniform"]
    assert iv.low < 0 < iv.high and not iv.distinguishable
    text = verdict({"uniform": iv}, "More documents would help.")
    assert "No mixture is distinguishable from uniform" in text and "More documents" in text


def test_a_clear_peak_is_distinguishable():
    alphas = _pool()
    per_doc = _per_doc(alphas, lambda a: 0.3 + 0.4 * a[:, 0], noise=0.1)  # best: all domain 0
    chosen = np.array([0.9, 0.05, 0.05])
    iv = _intervals(alphas, per_doc, chosen)["uniform"]
    assert iv.low > 0.05 and iv.distinguishable
    assert iv.low <= iv.gain <= iv.high
    assert "beat them beyond the noise" in verdict({"uniform": iv}, "")
