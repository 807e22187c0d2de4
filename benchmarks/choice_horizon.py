"""Does the choice's trade-off at the experts' budget hold at the final budget?

    python benchmarks/choice_horizon.py --store /tmp/run/store --config configs/larger-cpu.yaml

For every mixture a store trained both in the validation (real runs at the experts' budget,
first runs and reruns) and in final training (the final budget, every seed), beside uniform:
per capability group and for the equal-weight utility, the mixture's mean minus uniform's at
each budget. A group whose gain changes sign between the budgets is one the validation's real
runs misread; gains that only grow say the longer training amplifies the same trade-off.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _key(alpha) -> str:
    """A mixture as a label that matches across tables: `0.250 / 0.250 / ...`."""
    return " / ".join(f"{a:.3f}" for a in np.asarray(alpha, dtype=float))


def gains(runs: pd.DataFrame, uniform: str, columns: list[str]) -> pd.DataFrame:
    """Each mixture's mean over its runs minus uniform's, in `columns`; n = its runs."""
    means = runs.groupby("key")[columns].mean()
    out = means.drop(index=uniform) - means.loc[uniform]
    return out.assign(n=runs.groupby("key").size().drop(index=uniform))


def main() -> None:
    from parammix_core import stages
    from parammix_core.config import apply_overrides, load_experiment
    from parammix_core.store import ArtifactRef

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="a run's store (folder or URL)")
    p.add_argument("--config", help="the run's experiment YAML (default: the embedded default)")
    args = p.parse_args()
    exp = apply_overrides(load_experiment(args.config), [f"store.url={args.store}"], "--store")
    store = stages.open_store(exp)
    groups = [f"group.{g}" for g in exp.evaluation.groups]
    refs = [ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"]) for m in store.artifacts()]
    tables = [store.load_parquet(r, "rows.parquet") for r in refs if r.stage == "validation"]
    validation = max(tables, key=len)  # the one holding the choice, trained twice
    early = validation[validation["kind"].isin(["mix", "rerun"])].copy()
    early["key"] = [_key(a) for a in early[[f"alpha.{d}" for d in exp.domains]].to_numpy()]
    final = [
        store.load_json(r, "scores.json") for r in refs if (r.stage, r.name) == ("final", "scores")
    ]
    late = pd.DataFrame([s["metrics"] for s in final]).assign(key=[_key(s["alpha"]) for s in final])
    for runs in (early, late):
        runs["utility"] = runs[groups].mean(axis=1)
    uniform = _key(np.full(len(exp.domains), 1 / len(exp.domains)))
    columns = [*groups, "utility"]
    before, after = gains(early, uniform, columns), gains(late, uniform, columns)
    print(
        f"| mixture ({' / '.join(exp.domains)}) | runs (experts' / final budget) | "
        + " | ".join(columns)
        + " |"
    )
    print("| --- | --- |" + " ---: |" * len(columns))
    for key in before.index.intersection(after.index):
        cells = [f"{before.at[key, c]:+.3f} -> {after.at[key, c]:+.3f}" for c in columns]
        counts = f"{before.at[key, 'n']} / {after.at[key, 'n']}"
        print(f"| {key} | {counts} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
