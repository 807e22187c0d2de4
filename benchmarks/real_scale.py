"""Does putting each group's merge scores on the real runs' scale rank mixtures better?

    python benchmarks/real_scale.py --store /tmp/run/store            # every validation in it
    python benchmarks/real_scale.py --store /tmp/run/store --mixtures 13

For each validation artifact of a store (a run with `validation.enabled`), over its first
`--mixtures` mixtures (uniform and the draws; a raw-mode run's last mixture, the choice, is left
out, as `search.utility.calibrate` fits without it): per group the spread of merge and real
scores, the slope of real on merge (± se) and their Spearman; then the Spearman of the
utility against the real runs' utility (each mixture's runs averaged), for the plain merge and
for the merge mapped group by group onto the real scale with lines fitted leave-one-out (each
mixture predicted by lines that never saw it). Last, the `search.group_weights` that make a run
of an older version choose what `search.utility.calibrate` would (with `normalise: raw` the
calibrated utility orders mixtures as the weights `w_g * slope_g` do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def scores(rows, kinds: list[str], groups: list[str], keep: int) -> np.ndarray:
    """(mixtures, groups): each mixture's mean score over the rows of `kinds`."""
    picked = rows[rows["kind"].isin(kinds) & (rows["mixture"] < keep)]
    means = picked.groupby("mixture").mean(numeric_only=True)
    return means[[f"group.{g}" for g in groups]].to_numpy()


def report(rows, groups: list[str], keep: int) -> None:
    from parammix_core.proxy_validation import real_scale_utility
    from parammix_core.search.real_scale import fit_real_scale

    merged = scores(rows, ["merge"], groups, keep)
    real = scores(rows, ["mix", "rerun"], groups, keep)
    lines = fit_real_scale(
        {g: merged[:, j] for j, g in enumerate(groups)},
        {g: real[:, j] for j, g in enumerate(groups)},
    )
    print(f"{len(merged)} mixtures")
    print("| group | sd merge | sd real | slope ± se | Spearman merge vs real |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for j, g in enumerate(groups):
        line = lines[g]
        print(
            f"| {g} | {merged[:, j].std(ddof=1):.4f} | {real[:, j].std(ddof=1):.4f} "
            f"| {line.slope:.3f} ± {line.slope_se:.3f} | {line.rho:.3f} |"
        )
    target = real.mean(axis=1)
    plain = spearmanr(merged.mean(axis=1), target)[0]
    loo = real_scale_utility(
        {g: merged[:, j] for j, g in enumerate(groups)},
        {g: real[:, j] for j, g in enumerate(groups)},
    )
    mapped = spearmanr(loo, target)[0] if loo is not None else float("nan")
    print(f"utility Spearman vs real runs: plain merge {plain:.3f}, real scale (LOO) {mapped:.3f}")
    weights = ", ".join(f"{g}: {max(lines[g].slope, 1e-6):.4g}" for g in groups)
    print(f"search.group_weights for an older version: {{{weights}}}")


def main() -> None:
    from parammix_core import stages
    from parammix_core.config import apply_overrides, load_experiment
    from parammix_core.store import ArtifactRef

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="a run's store (folder or URL)")
    p.add_argument("--config", help="the run's experiment YAML (default: the embedded default)")
    p.add_argument(
        "--mixtures",
        type=int,
        help="validation mixtures to use (default validation.n_mixtures: uniform and the draws)",
    )
    args = p.parse_args()
    exp = apply_overrides(load_experiment(args.config), [f"store.url={args.store}"], "--store")
    store = stages.open_store(exp)
    keep = args.mixtures or exp.validation.n_mixtures
    for m in store.artifacts():
        if m["stage"] == "validation":
            ref = ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"])
            print(f"\n{ref.stage}/{ref.name}-{ref.key}")
            report(store.load_parquet(ref, "rows.parquet"), exp.evaluation.groups, keep)


if __name__ == "__main__":
    main()
