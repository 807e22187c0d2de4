"""The validations of a store side by side, by the budget their real runs trained at.

    python benchmarks/validation_budget.py --store /tmp/s0/store [--store ...]

A store where `parammix run --config short-experts` ran once as is and once more with `--set
validation.budget=final` holds two validations of the same 13 mixtures (6 trained twice) and the
same merges: one whose real runs trained at the experts' budget (120 steps), one at the final
training's (360); a run of today's default (360-step experts) adds a third, with new merges.
Every validation is printed, oldest first, labelled with its
budget and creation time. Per validation, for the utility, each group and the mean
held-out loss, this prints what the flow's validation computes (`load_validation`): each run's
noise sd and the spread of the mixtures' scores, the ceiling of single runs with its 90 %
interval and of the runs' means, the merge's Spearman, the best trivial ranking and the merge's
lead over it with its interval; then the chosen mixture's real gain over uniform. Nothing is
trained or scored here: the figures are the stored validations'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core.report.markdown import num  # noqa: E402
from parammix_core.stages.validation_table import load_validation  # noqa: E402
from parammix_core.store import ArtifactRef, Store  # noqa: E402


def validations(store: Store) -> list[tuple[str, str, ArtifactRef]]:
    """Every validation in the store, oldest first: (created, budget, ref); stored before
    `validation.budget`: the experts'. A store holds several when runs differ in what the
    validation's key holds (its budget, the experts behind its merges)."""
    found = []
    for m in store.artifacts():
        if m["stage"] != "validation":
            continue
        ref = ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"])
        budget = (store.load_json(ref, "validation.json").get("budget") or {}).get("name")
        found.append((m["created"], budget or "experts", ref))
    return sorted(found, key=lambda f: f[0])


def rows(label: str, info: dict) -> list[str]:
    """One markdown row per column of the analysis: utility, groups, mean held-out loss."""
    out = []
    for column, a in info["analysis"].items():
        if column not in ("utility", "mean_loss") and not column.startswith("group."):
            continue
        c = {k: num(v) for k, v in a["ceiling"].items()}
        lead = [num((a.get("merge_lead") or {}).get(k)) for k in ("lead", "low", "high")]
        out.append(
            f"| {label} | {column.removeprefix('group.')} | {c['noise_sd']:.4f} | "
            f"{c['spread_sd']:.4f} | {c['spearman']:.2f} [{c['spearman_low']:.2f}, "
            f"{c['spearman_high']:.2f}] | {c['truth_spearman']:.2f} | "
            f"{num(a['proxy']['merge']['spearman']):.2f} | {num(a['best_trivial_spearman']):.2f} | "
            "{:+.2f} [{:+.2f}, {:+.2f}] |".format(*lead)
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", type=Path, action="append", required=True)
    args = p.parse_args()
    print(
        "| store, budget | column | noise sd | spread sd | ceiling, single runs [90 %] | "
        "ceiling, means | merge rho | best trivial | merge lead [90 %] |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    chosen = []
    for folder in args.store:
        store = Store(str(folder))
        for created, budget, ref in validations(store):
            info = load_validation(store, ref)
            steps = (info.get("budget") or {}).get("steps", "")
            label = " ".join(str(p) for p in (folder, budget, steps, created) if p != "")
            print("\n".join(rows(label, info)))
            c = info["analysis"]["utility"].get("chosen")
            if c:
                chosen.append(
                    f"{label}: chosen - uniform, real {c['real_gain']:+.4f} "
                    f"(± {num(c.get('real_gain_sd')):.4f}), merge {c['proxy_gain']:+.4f}"
                )
    print("\n".join(chosen))


if __name__ == "__main__":
    main()
