"""Calibration of the choice's bootstrap interval on the mixtures a run evaluated (issue 16).

    python benchmarks/interval_calibration.py --store PATH [--store PATH ...] [--config FILE]
        [--folds 5] [--level 0.9] [--replicates N] [--splits 1]
        [--resample both|documents]

K-fold over each store's evaluated mixtures (vertices and uniform always in the training
folds): surrogates chosen and fitted on the training folds give each held-out mixture's
utility and gain over uniform with the interval the pipeline gives the chosen mixture
(`parammix_core.search.calibration`). Prints, per store and pooled, the share of held-out
mixtures whose measured value falls inside (coverage, against the nominal level) and the mean
interval width: on the same documents, and on fresh documents (fit on a random half of each
task's documents, measure on the other half) with and without the target's own document
noise. Stores are only read. `--config` is the experiment the stores were run with (default:
the embedded default); its tasks must reproduce the stores' group scores, which is checked.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np

from parammix_core.config import Experiment, load_experiment
from parammix_core.search.calibration import HeldOut, cross_validated, pipeline_fits
from parammix_core.search.common import resolve_weights
from parammix_core.search.uncertainty import RESAMPLE, group_scores
from parammix_core.stages.evaluate import load_doc_scores, load_rows
from parammix_core.store import ArtifactRef, Store

CHECKS = ("same documents", "fresh documents")


def load_store(url: str, exp: Experiment) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The store's evaluated mixtures (N, K) and per-document scores, checked against `exp`."""
    store = Store(url)
    evals = [
        ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"])
        for m in store.artifacts()
        if m["stage"] == "evals"
    ]
    if not evals:
        sys.exit(f"{url}: no evaluated mixtures (evals/) in this store")
    rows = load_rows(store, evals)
    per_doc = load_doc_scores(store, evals, exp.evaluation.tasks)
    missing = [t.name for t in exp.evaluation.tasks if t.name not in per_doc]
    if missing:
        sys.exit(f"{url}: no per-document scores for task(s) {missing} of the config")
    every = {t: np.arange(v.shape[1]) for t, v in per_doc.items()}
    for g, y in group_scores(per_doc, exp.evaluation.tasks, every).items():
        if not np.allclose(rows[f"group.{g}"].to_numpy(), y, rtol=0, atol=1e-5):
            sys.exit(f"{url}: group {g!r} of the config does not reproduce the store's scores")
    return rows[[f"alpha.{d}" for d in exp.domains]].to_numpy(), per_doc


def split_halves(
    every: dict[str, np.ndarray], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each task's documents in two random halves. Not even/odd: the built-in suite deals its
    documents round-robin over kinds (pm_sequences: arithmetic, geometric, Fibonacci-like,
    comparison), so even and odd documents are different kinds."""
    rng = np.random.default_rng(seed)
    perm = {t: rng.permutation(idx) for t, idx in every.items()}
    return (
        {t: np.sort(p[: len(p) // 2]) for t, p in perm.items()},
        {t: np.sort(p[len(p) // 2 :]) for t, p in perm.items()},
    )


def run_store(
    alphas: np.ndarray, per_doc: dict[str, np.ndarray], exp: Experiment, args
) -> dict[str, dict[str, list[HeldOut]]]:
    """check -> {"utility", "gain"} -> held-out intervals and measured values (fresh
    documents: one per split; a split's document halves are shared by all its mixtures)."""
    tasks = exp.evaluation.tasks
    every = {t: np.arange(v.shape[1]) for t, v in per_doc.items()}
    common = dict(
        alphas=alphas,
        per_doc=per_doc,
        tasks=tasks,
        weights=resolve_weights(exp.evaluation.groups, exp.search.group_weights),
        normalise=exp.search.utility.normalise,
        folds=args.folds,
        choose=pipeline_fits(exp.search.cv_folds, exp.seed),
        seed=exp.seed,
        replicates=args.replicates,
        level=args.level,
        resample=args.resample,
    )
    same = cross_validated(fit_docs=every, target_docs=every, **common)
    fresh = [
        cross_validated(fit_docs=fit, target_docs=target, **common)
        for fit, target in (split_halves(every, exp.seed + s) for s in range(args.splits))
    ]
    return {
        "same documents": {t: [h] for t, h in same.items()},
        "fresh documents": {t: [f[t] for f in fresh] for t in same},
    }


def table(results: dict[str, dict[str, list[HeldOut]]], level: float) -> str:
    head = (
        f"| check | target | held out | coverage (nominal {level:.0%}) | mean width | "
        "coverage, target noise added |"
    )
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: |"]
    for check in CHECKS:
        for target, label in (("utility", "utility"), ("gain", "gain over uniform")):
            parts = results[check][target]
            n = sum(len(h.measured) for h in parts)
            cover = sum(h.coverage() * len(h.measured) for h in parts) / n
            wide = sum(h.coverage(widen=True) * len(h.measured) for h in parts) / n
            width = sum(h.mean_width * len(h.measured) for h in parts) / n
            noisy = f"{wide:.1%}" if check == "fresh documents" else "-"
            lines.append(f"| {check} | {label} | {n} | {cover:.1%} | {width:.4f} | {noisy} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", action="append", required=True, help="a finished run's store")
    p.add_argument("--config", help="the experiment the stores ran (default: embedded)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--replicates", type=int, help="default: search.interval.replicates")
    p.add_argument("--splits", type=int, default=1, help="random document halves (fresh)")
    p.add_argument(
        "--resample",
        choices=RESAMPLE,
        default="both",
        help="what a replicate draws: rows and documents (the pipeline's), or documents only",
    )
    args = p.parse_args()
    exp = load_experiment(args.config)
    args.replicates = args.replicates or exp.search.interval.replicates
    if not 0 < args.level < 1:
        sys.exit(f"--level {args.level}: must be strictly between 0 and 1")
    if args.splits < 1:
        sys.exit(f"--splits {args.splits}: must be at least 1")
    print("$ python " + shlex.join(sys.argv))
    pooled: dict[str, dict[str, list[HeldOut]]] = {c: {"utility": [], "gain": []} for c in CHECKS}
    for url in args.store:
        start = time.perf_counter()
        alphas, per_doc = load_store(url, exp)
        result = run_store(alphas, per_doc, exp, args)
        seconds = time.perf_counter() - start
        print(
            f"\n{url}: {len(alphas)} evaluated mixtures, {args.folds} folds, "
            f"{args.replicates} replicates resampling {args.resample}, {args.splits} "
            f"document split(s) ({seconds:.0f} s)"
        )
        print(table(result, args.level))
        for c, r in result.items():
            for t, h in r.items():
                pooled[c][t].extend(h)
    print(f"\npooled over {len(args.store)} store(s)")
    print(table(pooled, args.level))


if __name__ == "__main__":
    main()
