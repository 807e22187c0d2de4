"""How precisely a dozen validation mixtures measure the merge's ranking: one larger pool.

    python benchmarks/validation_pool.py --store /tmp/s0/store [--size 12] [--draws 100]

Run once more on a store of the default with `--set validation.n_mixtures=36 --set
validation.reruns=12`, the validation trains 24 more Dirichlet draws (the first 11 draws, their
runs and reruns are the 12-mixture validation's own: the draws come from one seeded stream) and
6 more reruns. On the store's newest validation this prints, for the utility, each group and the
mean held-out loss, what the flow computes (`load_validation`): the noise ceiling with its 90 %
interval, the merge's Spearman, the best trivial ranking and the merge's lead over it; then the
same on the 12-mixture validation cut out of the pool (uniform, draws 1-11 with the reruns of
draws 1-6, the choice: the default run's own figures) and on the new draws alone (no ceiling:
at most one of them was rerun); last, over `--draws` random sets of `--size` - 1 of the pool's
draws (with uniform, `--size` mixtures as `validation.n_mixtures` counts them; the choice joins
them; every run of a drawn mixture kept), what a validation of the default's size would have
read on other draws, and how often the interval it gives the merge's Spearman holds the whole
pool's.
Nothing is trained or scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from validation_budget import validations  # noqa: E402

from parammix_core import proxy_validation  # noqa: E402
from parammix_core.search.common import scale_from_spec  # noqa: E402
from parammix_core.stages.validation_table import Task, load_validation  # noqa: E402
from parammix_core.store import Store  # noqa: E402

COLUMNS = ("utility", "mean_loss")


def cut(rows, keep: list[int], reruns: set[int] | None = None):
    """The rows of mixtures `keep`, renumbered 0.. in that order (experts untouched); with
    `reruns`, only the reruns of those mixtures."""
    index = {m: i for i, m in enumerate(keep)}
    experts = rows[rows["kind"] == "expert"]
    rest = rows[(rows["kind"] != "expert") & rows["mixture"].isin(keep)]
    if reruns is not None:
        rest = rest[(rest["kind"] != "rerun") | rest["mixture"].isin(reruns)]
    rest = rest.assign(mixture=rest["mixture"].map(index))
    return pd.concat([experts, rest], ignore_index=True)


def analyse(rows, compare: dict, chosen: int) -> dict:
    """The flow's analysis (`proxy_validation.analyse`) of these rows, `chosen` the choice."""
    tasks = [Task(name, group) for name, group in compare["tasks"]]
    return proxy_validation.analyse(
        rows,
        compare["domains"],
        tasks,
        compare["weights"],
        chosen=chosen,
        scale=scale_from_spec(compare["scale"]),
    )


def line(label: str, column: str, a: dict) -> str:
    c, lead = a.get("ceiling") or {}, a.get("merge_lead") or {}
    ceiling = (
        f"{c['spearman']:.2f} [{c['spearman_low']:.2f}, {c['spearman_high']:.2f}]"
        if c.get("reruns", 0) >= 2
        else "-"  # no reruns among these mixtures, or one: no ceiling worth printing
    )
    return (
        f"| {label} | {column.removeprefix('group.')} | {a['n']} | {ceiling} | "
        f"{a['proxy']['merge']['spearman']:.2f} | {a['best_trivial_spearman']:.2f} | "
        f"{lead.get('lead', float('nan')):+.2f} [{lead.get('low', float('nan')):+.2f}, "
        f"{lead.get('high', float('nan')):+.2f}] |"
    )


def subsets(rows, compare: dict, draws: list[int], chosen: int) -> list[tuple[str, dict]]:
    """The 12-mixture validation cut out of the pool (the first 11 draws, reruns of the first
    6), and the new draws alone (their one rerun, if any, left out)."""
    first = [0, *draws[:11], chosen]
    original = analyse(cut(rows, first, set(draws[:6])), compare, len(first) - 1)
    pools = [("first 11 draws", original)]
    fresh = [0, *draws[11:], chosen]
    if len(fresh) > 4:
        new = analyse(cut(rows, fresh, reruns=set()), compare, len(fresh) - 1)
        pools.append((f"{len(fresh) - 2} new draws", new))
    return pools


def random_sets(rows, info: dict, draws: list[int], size: int, sets: int, seed: int) -> dict:
    """Per column, (merge rho, best trivial rho, interval holds the pool's rho) of `sets`
    random validations of `size` - 1 draws, uniform and the choice."""
    compare, rng = info["compare"], np.random.default_rng(seed)
    got = {c: [] for c in COLUMNS}
    for _ in range(sets):
        pick = sorted(rng.choice(draws, size=size - 1, replace=False))
        a = analyse(cut(rows, [0, *pick, compare["chosen"]]), compare, size)
        for c in COLUMNS:
            lead, pool = a[c]["merge_lead"], info["analysis"][c]["proxy"]["merge"]["spearman"]
            rho = a[c]["proxy"]["merge"]["spearman"]
            held = lead["rho_low"] <= pool <= lead["rho_high"]
            got[c].append((rho, a[c]["best_trivial_spearman"], held))
    return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--size", type=int, default=12, help="uniform and draws per random set")
    p.add_argument("--draws", type=int, default=100, help="random sets of --size mixtures")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    store = Store(str(args.store))
    ref = validations(store)[-1][2]
    info = load_validation(store, ref)
    rows = store.load_parquet(ref, "rows.parquet")
    chosen = info["compare"]["chosen"]
    draws = sorted(set(rows.loc[rows["kind"] == "mix", "mixture"]) - {0, chosen})
    reruns = sorted(set(rows.loc[rows["kind"] == "rerun", "mixture"]))
    print(f"{ref.key[:12]}: {len(draws)} draws, reruns of {reruns}, chosen = mixture {chosen}")
    print("| pool | column | mixtures | ceiling [90 %] | merge rho | best trivial | lead [90 %] |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    groups = [c for c in info["analysis"] if c.startswith("group.")]
    for column in [COLUMNS[0], *groups, COLUMNS[1]]:
        print(line("all", column, info["analysis"][column]))
    for label, a in subsets(rows, info["compare"], draws, chosen):
        for column in COLUMNS:
            print(line(label, column, a[column]))
    got = random_sets(rows, info, draws, args.size, args.draws, args.seed)
    print(f"\n{args.draws} random sets of {args.size - 1} draws + uniform + the choice:")
    print(
        "| column | merge rho 5 / 50 / 95 % | share merge >= 0.85 | share merge > best trivial "
        "| share whose 90 % interval holds the pool's rho |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for c, found in got.items():
        m, t, held = np.array(found, dtype=float).T
        q = np.percentile(m, [5, 50, 95])
        print(
            f"| {c} | {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} | {np.mean(m >= 0.85):.2f} | "
            f"{np.mean(m > t):.2f} | {np.mean(held):.2f} |"
        )


if __name__ == "__main__":
    main()
