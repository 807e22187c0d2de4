"""Which common scale of the capability groups lets the benchmark utility rank real runs.

    python benchmarks/utility_scales.py --dir /tmp/fid            # every store-<S> in it
    python benchmarks/utility_scales.py --dir /tmp/fid --seed 1 --before 2026-12-03T16:00:00Z

For each store `<dir>/store-<S>` of an end-to-end run of the default: the rows of the newest
validation (created before `--before`, when given: its mixtures' real runs, the reruns, their
merges and the experts) and the search's surrogates before it (the evaluated merges and their
paired standard errors against uniform: what `search.utility.normalise` scales by). Per mode
(raw, zscore, rank, noise) each group column is put on the mode's scale with
`search.normaliser`, exactly as the search does, and `proxy_validation.analyse` gives for the
utility what the validation reports for it: the noise ceiling with its 90 % interval, the merge's
Spearman against the real runs and the best trivial ranking. The real runs and merges are the
same for every mode: only the groups' weighing moves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core import proxy_validation  # noqa: E402
from parammix_core.config import Experiment  # noqa: E402
from parammix_core.search import normaliser  # noqa: E402
from parammix_core.store import ArtifactRef, Store  # noqa: E402

MODES = ("raw", "zscore", "rank", "noise")


def newest(store: Store, stage: str, before: str | None = None) -> ArtifactRef:
    found = [
        m
        for m in store.artifacts()
        if m["stage"] == stage and (not before or m["created"] < before)
    ]
    m = max(found, key=lambda m: m["created"])
    return ArtifactRef(stage=stage, name=m["name"], key=m["key"])


def utility_rows(store: Store, exp: Experiment, before: str | None) -> dict[str, dict]:
    """mode -> the validation's analysis of the utility with the groups on that scale."""
    validation = newest(store, "validation", before)
    created = store.manifest(validation)["created"]
    surrogates = newest(store, "surrogates", before=created)
    rows = store.load_parquet(validation, "rows.parquet")
    merges = store.load_parquet(surrogates, "rows.parquet")
    groups = exp.evaluation.groups
    measured = {g: merges[f"group.{g}"].to_numpy() for g in groups}
    paired = {g: n["paired_stderr"] for g, n in store.load_json(surrogates, "noise.json").items()}
    out = {}
    for mode in MODES:
        scale = normaliser(mode, measured, paired)
        scaled = rows.copy()
        for g in groups:
            scaled[f"group.{g}"] = scale(g, rows[f"group.{g}"].to_numpy(dtype=float))
        analysis = proxy_validation.analyse(scaled, exp.domains, exp.evaluation.tasks)
        out[mode] = analysis["utility"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="folder of store-<seed> stores")
    p.add_argument("--seed", type=int, action="append", help="only these seeds (repeatable)")
    p.add_argument("--before", help="read the newest validation created before this UTC time")
    args = p.parse_args()
    print("| seed | scale | utility ceiling [90 %] | merge rho | best trivial | merge - trivial |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for folder in sorted(args.dir.glob("store-*")):
        seed = int(folder.name.split("-")[1])
        if args.seed and seed not in args.seed:
            continue
        rows = utility_rows(Store(str(folder)), Experiment(seed=seed), args.before)
        for mode, u in rows.items():
            c = u["ceiling"]
            rho, trivial = u["proxy"]["merge"]["spearman"], u["best_trivial_spearman"]
            print(
                f"| {seed} | {mode} | {c['spearman']:.2f} [{c['spearman_low']:.2f}, "
                f"{c['spearman_high']:.2f}] | {rho:.2f} | {trivial:.2f} | {rho - trivial:+.2f} |"
            )


if __name__ == "__main__":
    main()
