"""Is a difference between two mixtures' scores signal or evaluation noise?

Every merged candidate is scored on the same documents, so the noise that matters when ranking
mixtures is *paired*: the standard error of the mean per-document difference between two
candidates, far smaller than either score's own standard error when the candidates agree on
most documents. Two summaries per capability group:

- the paired standard error of each mixture against the uniform one (median over mixtures),
  next to the spread of the group score over the mixtures;
- split-half reliability: the group score computed on two random halves of the documents,
  correlated across mixtures and Spearman-Brown corrected to the full set. Near 1: the ranking of
  mixtures would survive a fresh draw of documents; near 0: it is noise.

Arrays: `per_doc[task]` has shape (N, D_task): N mixtures by the task's documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from parammix_core.config import EvalTask

SPLIT_SEED = 0  # the split-half's halves: fixed, so the same scores give the same reliability


def paired_stderr(per_doc: np.ndarray, reference: int) -> np.ndarray:
    """Standard error of each row's mean difference to row `reference`, shape (N,)."""
    diff = per_doc - per_doc[reference]  # (N, D)
    return diff.std(axis=1, ddof=1) / np.sqrt(per_doc.shape[1])


def split_half(per_doc_by_task: Sequence[np.ndarray], seed: int = SPLIT_SEED) -> float:
    """Spearman-Brown corrected correlation, across rows, of the means of two random halves
    of each task's documents (a fixed seed). Not even vs odd: a task generated round-robin
    over kinds of document (the built-in suite) puts different kinds in the two halves, and
    their gains can run opposite (measured on the default: r = -0.92 even/odd vs 0.26 at
    random for pm_sequences), which reads as no reliability where there is some."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for d in per_doc_by_task:
        order = rng.permutation(d.shape[1])
        first.append(d[:, order[: d.shape[1] // 2]].mean(axis=1))  # (N,)
        second.append(d[:, order[d.shape[1] // 2 :]].mean(axis=1))
    one, two = np.mean(first, axis=0), np.mean(second, axis=0)  # (N,) each
    if one.std() == 0 or two.std() == 0:
        return float("nan")
    r = float(np.corrcoef(one, two)[0, 1])
    # Spearman-Brown extrapolates a positive correlation; a non-positive one means no signal
    # and is returned as it is (the formula diverges as r -> -1).
    return 2 * r / (1 + r) if r > 0 else r


def reference_row(alphas: np.ndarray) -> int:
    """The uniform mixture's row when it was evaluated, else the first row."""
    uniform = np.full(alphas.shape[1], 1.0 / alphas.shape[1])
    hits = np.flatnonzero(np.abs(alphas - uniform).max(axis=1) < 1e-9)
    return int(hits[0]) if len(hits) else 0


def group_noise(
    alphas: np.ndarray, per_doc: Mapping[str, np.ndarray], tasks: Sequence[EvalTask]
) -> dict[str, dict[str, float]]:
    """Per capability group: spread over mixtures, paired stderr, split-half reliability."""
    ref = reference_row(alphas)
    out: dict[str, dict[str, float]] = {}
    for group in dict.fromkeys(t.group for t in tasks):
        docs = [per_doc[t.name] for t in tasks if t.group == group and t.name in per_doc]
        if not docs:
            continue
        scores = np.mean([d.mean(axis=1) for d in docs], axis=0)  # (N,)
        paired = np.sqrt(np.sum([paired_stderr(d, ref) ** 2 for d in docs], axis=0)) / len(docs)
        others = np.delete(paired, ref)
        out[group] = {
            "spread_sd": float(scores.std(ddof=1)),
            "paired_stderr": float(np.median(others)) if len(others) else float("nan"),
            "split_half": split_half(docs),
        }
    return out


def run_noise(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """How much of a task's run-to-run noise its documents explain.

    `first` and `second` (R, D) are the per-document scores of R mixtures trained twice (two
    data orders, the same D documents). Every first run shares one data-order seed and every
    rerun another, so each document's mean difference over the mixtures (the seed pair's shift)
    is taken out first. `noise_sd` is one run's score's noise (the differences' means' sd over
    sqrt 2); `documents_sd` what it would be if each document moved independently (the
    differences' sd within a run pair over sqrt(2 D)). Far above it, the noise is a shift of
    the whole run that more documents do not average away: `doubled_sd` is the noise with
    twice the documents, their share halved and the rest kept.
    """
    diffs = first - second
    diffs = diffs - diffs.mean(axis=0)
    r, d = diffs.shape
    if r < 3 or d < 2:
        nan = float("nan")
        return {"noise_sd": nan, "documents_sd": nan, "doubled_sd": nan, "docs": d}
    noise = float(diffs.mean(axis=1).std(ddof=1) / np.sqrt(2))
    # within each run pair, the documents' spread; r / (r - 1) undoes the centring over runs
    spread = diffs.var(axis=1, ddof=1).mean() * r / (r - 1)
    documents = float(np.sqrt(spread / (2 * d)))
    doubled = float(np.sqrt(max(noise**2 - documents**2 / 2, 0.0)))
    return {"noise_sd": noise, "documents_sd": documents, "doubled_sd": doubled, "docs": d}
