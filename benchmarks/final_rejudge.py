"""Final training's verdicts in a store, judged by the old and the new rule (review 38).

    python benchmarks/final_rejudge.py --store PATH [--store PATH ...] [--metrics utility ...]

Reads every scored final run of a store (`final/scores-*/scores.json`: mixture, seed, metrics),
and for each chosen mixture (any mixture other than uniform and the natural proportions of the
store's data) trained on the same seeds as the baselines, prints per metric the gain over
uniform and natural with the old call (a gain beyond the runs' combined seed sd) and the new
one (`stages.final.compare_runs`: the 90 % t interval of the per-seed paired differences).
Stores are only read.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from parammix_core import simplex
from parammix_core.data import natural_weights
from parammix_core.stages.final import compare_runs


def scored_runs(store: Path) -> list[dict]:
    """Every final run's scores: {"alpha", "seed", "metrics"}."""
    return [json.loads(p.read_text()) for p in sorted(store.glob("final/scores-*/*/scores.json"))]


def natural_alpha(store: Path) -> tuple[list[str], list[float]]:
    """The store's domains and natural proportions (from its data artifact's stats)."""
    (stats_file,) = store.glob("data/*/*/stats.json")
    stats = json.loads(stats_file.read_text())
    natural = natural_weights(stats)
    domains = list(stats)
    return domains, simplex.from_mapping(natural, domains).tolist()


def by_seed(runs: list[dict], alpha: list[float]) -> dict[int, dict]:
    """seed -> metrics of the runs of one mixture."""
    return {r["seed"]: r["metrics"] for r in runs if np.allclose(r["alpha"], alpha)}


def old_call(row, baseline: str) -> str:
    """The rule before 2026-12-07: a gain beyond the runs' combined seed sd."""
    spread = math.hypot(row["chosen sd"], row[f"{baseline} sd"])
    gain = row[f"gain vs {baseline}"]
    return "yes" if gain > spread else "no" if gain < -spread else "within"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, action="append", required=True)
    parser.add_argument("--metrics", nargs="+", default=["utility", "mean_loss"])
    args = parser.parse_args()
    for store in args.store:
        runs = scored_runs(store)
        domains, natural = natural_alpha(store)
        uniform = simplex.uniform(len(domains)).tolist()
        groups = sorted(
            k.removeprefix("group.")
            for k in runs[0]["metrics"]
            if k.startswith("group.") and not k.endswith(".stderr")
        )

        baselines = {"uniform": by_seed(runs, uniform), "natural": by_seed(runs, natural)}
        chosen_alphas = []
        for r in runs:
            a = r["alpha"]
            if not (np.allclose(a, uniform) or np.allclose(a, natural)) and not any(
                np.allclose(a, c) for c in chosen_alphas
            ):
                chosen_alphas.append(a)
        for alpha in chosen_alphas:
            chosen = by_seed(runs, alpha)
            seeds = sorted(set(chosen).intersection(*map(set, baselines.values())))
            if len(seeds) < 2:
                continue
            metrics = {"chosen": [chosen[s] for s in seeds]}
            metrics |= {b: [runs_[s] for s in seeds] for b, runs_ in baselines.items()}
            table = compare_runs(metrics, domains, groups).set_index("metric")
            mixture = ", ".join(f"{d} {a:.3f}" for d, a in zip(domains, alpha, strict=True))
            print(f"{store} chosen {mixture}, seeds {seeds}")
            for metric in [*args.metrics, *(f"group.{g}" for g in groups)]:
                row = table.loc[metric]
                parts = [
                    f"vs {b} {row[f'gain vs {b}']:+.4f} old {old_call(row, b)}, paired "
                    f"[{row[f'low vs {b}']:+.4f}, {row[f'high vs {b}']:+.4f}] "
                    f"{row[f'wins vs {b}']}"
                    for b in baselines
                ]
                print(f"  {metric:16s} " + "; ".join(parts))


if __name__ == "__main__":
    main()
