"""Do robust means of the per-document scores separate real runs better than the plain mean?

    python benchmarks/doc_aggregation.py --store /tmp/run/store --out /tmp/docs-s0.npz
    python benchmarks/doc_aggregation.py --store /tmp/big/store --config configs/larger-cpu.yaml \\
        --set seed=2 --out /tmp/docs-s2.npz

A task's score is the mean over its documents, so a few documents whose score swings from one
training run to its rerun can carry the run-to-run noise. Every real run of the store's
validation (each mixture's first run and the reruns) is scored again document by document
(`Evaluator.evaluate_docs`, kept in `--out` so a second call only aggregates) and each task's
documents are aggregated by the mean, trimmed means and the median; per group and for the
equal-weight utility the script prints the noise ceiling as the validation computes it
(`ranking.noise_ceiling`) and the rerun noise as a multiple of the mixtures' spread. The mean
must reproduce the stored scores (printed: the largest difference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from adam_merge import refs
from scipy.stats import trim_mean

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core import ranking, stages  # noqa: E402
from parammix_core.config import apply_overrides, load_experiment  # noqa: E402
from parammix_core.data import load_prepared  # noqa: E402
from parammix_core.model import load_model  # noqa: E402
from parammix_core.stages.evaluate import make_evaluator  # noqa: E402
from parammix_core.store import ArtifactRef  # noqa: E402


def only(store, stage: str) -> ArtifactRef:
    (ref,) = refs(store, stage).values()
    return ref


def run_refs(store, rows, domains: list[str]) -> list[ArtifactRef]:
    """The stored mixed run behind each row: same mixture weights and training seed."""
    runs = [m for m in store.artifacts() if m["stage"] == "mixed"]
    out = []
    for _, row in rows.iterrows():
        alpha = row[[f"alpha.{d}" for d in domains]].to_numpy(dtype=float)
        (m,) = [
            m
            for m in runs
            if m["info"]["seed"] == int(row["seed"]) and np.allclose(m["info"]["alpha"], alpha)
        ]
        out.append(ArtifactRef(stage="mixed", name=m["name"], key=m["key"]))
    return out


def score_docs(exp, store, refs: list[ArtifactRef], tasks: list[str]) -> dict[str, np.ndarray]:
    data = only(store, "data")
    prepared = load_prepared(store.local_dir(data))
    per_task: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for i, ref in enumerate(refs):
        model = load_model(str(store.local_dir(ref)), exp.model, "cpu")
        evaluator = make_evaluator(exp, store, data, prepared, model, torch.device("cpu"))
        _, per_doc = evaluator.evaluate_docs()
        for t in tasks:
            per_task[t].append(per_doc[t])
        print(f"run {i + 1}/{len(refs)} scored", flush=True)
    return {t: np.stack(v) for t, v in per_task.items()}


AGGREGATES = {
    "mean": lambda x: x.mean(axis=-1),
    "trim 10%": lambda x: trim_mean(x, 0.1, axis=-1),
    "trim 25%": lambda x: trim_mean(x, 0.25, axis=-1),
    "median": lambda x: np.median(x, axis=-1),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="a store holding a validation")
    p.add_argument("--config", help="the run's experiment YAML (default: the embedded default)")
    p.add_argument("--set", action="append", default=[], help="the run's --set overrides")
    p.add_argument("--out", type=Path, required=True, help="per-document scores (.npz), reused")
    args = p.parse_args()
    torch.set_num_threads(1)
    exp = apply_overrides(
        load_experiment(args.config), [*args.set, f"store.url={args.store}"], "--set"
    )
    store = stages.open_store(exp)
    rows = store.load_parquet(only(store, "validation"), "rows.parquet")
    real = rows[rows["kind"].isin(["mix", "rerun"])].reset_index(drop=True)
    tasks = [t.name for t in exp.evaluation.tasks]
    if args.out.exists():
        docs = dict(np.load(args.out))
    else:
        docs = score_docs(exp, store, run_refs(store, real, exp.domains), tasks)
        np.savez(args.out, **docs)
    stored = real[[f"task.{t}" for t in tasks]].to_numpy()
    again = np.column_stack([docs[t].mean(axis=1) for t in tasks])
    print(
        f"{len(real)} runs; mean re-scored vs stored: max |diff| {np.abs(again - stored).max():.2e}"
    )

    groups = {t.name: t.group for t in exp.evaluation.tasks}
    first = (real["kind"] == "mix").to_numpy()
    rerun_of = real.loc[~first, "mixture"].to_numpy()
    mixtures = real.loc[first, "mixture"].to_numpy()
    labels = [*dict.fromkeys(groups.values()), "utility"]
    print("| aggregate | " + " | ".join(labels) + " |")
    print("| --- |" + " ---: |" * len(labels))
    for name, aggregate in AGGREGATES.items():
        by_task = {t: aggregate(docs[t]) for t in tasks}
        by_group = {
            g: np.mean([by_task[t] for t in tasks if groups[t] == g], axis=0) for g in labels[:-1]
        }
        by_group["utility"] = np.mean([by_group[g] for g in labels[:-1]], axis=0)
        cells = []
        for g in labels:
            score = by_group[g]
            runs = score[first]
            pos = {m: i for i, m in enumerate(mixtures)}
            c = ranking.noise_ceiling(runs, runs[[pos[m] for m in rerun_of]], score[~first])
            cells.append(f"{c['spearman']:.2f} ({c['noise_sd'] / c['spread_sd']:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("cells: noise ceiling (rerun noise sd / sd over the mixtures' first runs)")


if __name__ == "__main__":
    main()
