"""Which scoring of the built-in tasks separates real mixed runs of spread-out mixtures?

    python benchmarks/metric_sweep.py --store msweep/store-0 --seed 0 \
        --metric p_correct --metric neg_bpb [--docs 300] [--reuse-upstream] --out sweep.jsonl
    python benchmarks/metric_sweep.py --summarise sweep.jsonl     # the table of every result
    python benchmarks/metric_sweep.py --summarise sweep.jsonl --recompute 'msweep/store-{seed}'

For one experiment seed of the embedded default, the validation stage (`validate_proxy`) trains
real runs at the experts' budget on uniform and `--mixtures - 1` Dirichlet draws of
concentration `--concentration` (0.5: spread towards the faces of the simplex, unlike the
searches' clustered choices), every draw trained again on another data order, then scores
the merges and the runs once per metric of the built-in tasks (the runs are trained once: their
address does not depend on the metric). Per metric it prints what the issue asks for: the
rerun ceiling of the benchmark utility and of each group (with the 90 % interval), the merge's
Spearman rho on the utility, the best trivial ranking, and held-out loss beside them. The
utility is also recomputed with each group z-scored over the real runs (`zscore`), so that a
group with a wide spread does not decide it alone.

`--recompute STORE` (a path with `{seed}`) redoes each result's analysis with this checkout's
ranking code from the rows of the validation artifact that produced it (found in the seed's
store by its stored analysis), without scoring anything again: how a change to the analysis
(the noise ceiling) is measured on runs already scored.

`--reuse-upstream` takes the store's own data, base, experts and real runs (matched by their
recorded mixture and seed) when their addresses differ from this checkout's (a store built by
an earlier version, e.g. search_fidelity.py's, or by the checkout before a change to the
benchmarks), and says so; without it they are built (or found) by the stages. This is how one
set of real runs is scored by two versions of the built-in tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core import proxy_validation, ranking, stages  # noqa: E402
from parammix_core.config import Experiment, apply_overrides, load_experiment  # noqa: E402
from parammix_core.stages import validate  # noqa: E402
from parammix_core.stages.mixed import train_mixed  # noqa: E402
from parammix_core.stages.validation_table import load_validation  # noqa: E402
from parammix_core.store import ArtifactRef, Store  # noqa: E402

CONFIG: list[str | None] = [None]  # --config: the experiment swept (default: the embedded one)


def experiment(store: Path, seed: int, n: int, concentration: float, metric: str, docs: int):
    sets = [
        f"store.url={store}",
        f"seed={seed}",
        f"validation.n_mixtures={n}",
        f"validation.reruns={n - 1}",
        f"validation.concentration={concentration}",
        "validation.metrics=all",
        "validation.rescaled=false",
        f"evaluation.builtin_docs_per_task={docs}",
    ]
    exp = apply_overrides(load_experiment(CONFIG[0]), sets, "metric_sweep")
    tasks = [t.model_copy(update={"metric": metric}) for t in exp.evaluation.tasks]
    return exp.model_copy(update={"evaluation": exp.evaluation.model_copy(update={"tasks": tasks})})


def upstream(exp: Experiment, store: Store, reuse: bool):
    """data, base and expert refs: this checkout's addresses, or the store's own ones."""
    data = stages.data_ref(exp)
    if not store.exists(data) and reuse:
        found = {(m["stage"], m["name"]): m for m in store.artifacts()}

        def ref(stage: str, name: str) -> ArtifactRef:
            m = found[(stage, name)]
            return ArtifactRef(stage=stage, name=name, key=m["key"])

        print("reusing the store's data, base and experts (built by another version)")
        return ref("data", "domains"), ref("base", "base"), [ref("expert", d) for d in exp.domains]
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    return data, base, [stages.train_expert(exp, store, d, data, base) for d in exp.domains]


def run_key(alpha, seed: int) -> tuple:
    return tuple(round(float(a), 12) for a in alpha), int(seed)


def stored_runs(store: Store) -> dict[tuple, ArtifactRef]:
    """The store's real mixed runs by (mixture, seed), whichever version trained them."""
    runs = {
        run_key(m["info"]["alpha"], m["info"]["seed"]): ArtifactRef(
            stage=m["stage"], name=m["name"], key=m["key"]
        )
        for m in store.artifacts()
        if m["stage"] == "mixed"
    }
    if runs:
        print(f"reusing the store's {len(runs)} real mixed runs where mixture and seed match")
    return runs


def zscore_ceiling(rows: pd.DataFrame, groups: list[str]) -> dict:
    """The utility's rerun ceiling with each group z-scored over the real runs first."""
    real = rows[rows["kind"].isin(["mix", "rerun"])]
    z = sum(
        (real[f"group.{g}"] - real[f"group.{g}"].mean()) / real[f"group.{g}"].std(ddof=0)
        for g in groups
    ) / len(groups)
    real = real.assign(u=z)
    mix = real[real["kind"] == "mix"].set_index("mixture")["u"]
    rerun = real[real["kind"] == "rerun"].set_index("mixture")["u"]
    idx = [i for i in rerun.index if i in mix.index]
    return ranking.noise_ceiling(mix.to_numpy(), mix.loc[idx].to_numpy(), rerun.loc[idx].to_numpy())


def sweep(args) -> list[dict]:
    out = []
    for metric in args.metric:
        exp = experiment(
            args.store, args.seed, args.mixtures, args.concentration, metric, args.docs
        )
        store = stages.open_store(exp)
        data, base, experts = upstream(exp, store, args.reuse_upstream)
        mixtures = validate.validation_mixtures(exp)
        plan = validate.run_plan(exp, len(mixtures))
        stored = stored_runs(store) if args.reuse_upstream else {}
        runs = [
            stored.get(run_key(mixtures[i], seed))
            or train_mixed(exp, store, mixtures[i], seed, data, base)
            for i, seed in plan
        ]
        print(f"{metric}: {len(runs)} real runs ready", flush=True)
        ref = validate.validate_proxy(exp, store, mixtures, runs, data, base, experts)
        info = load_validation(store, ref)
        rows = store.load_parquet(ref, "rows.parquet")
        groups = exp.evaluation.groups
        out.append(
            {
                "seed": args.seed,
                "metric": metric,
                "docs": args.docs,
                "mixtures": [list(map(float, m)) for m in mixtures],
                "analysis": info["analysis"],
                "zscore_ceiling": zscore_ceiling(rows, groups),
            }
        )
        print(json.dumps(summary_row(out[-1], groups)), flush=True)
    return out


def recomputed(result: dict, store_pattern: str) -> dict:
    """`result` with its analysis and z-scored ceiling recomputed from its validation rows."""
    exp = experiment(
        Path(store_pattern.format(seed=result["seed"])), result["seed"], 9, 0.5, "neg_bpb", 300
    )
    store = stages.open_store(exp)
    for m in store.artifacts():
        if m["stage"] != "validation":
            continue
        ref = ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"])
        if load_validation(store, ref)["analysis"] != result["analysis"]:
            continue
        rows = store.load_parquet(ref, "rows.parquet")
        tasks, groups = exp.evaluation.tasks, exp.evaluation.groups
        analysis = proxy_validation.analyse(
            rows, exp.domains, tasks, exp.search.group_weights or None
        )
        return {**result, "analysis": analysis, "zscore_ceiling": zscore_ceiling(rows, groups)}
    raise SystemExit(f"no validation artifact in {store.root} matches seed {result['seed']}")


def summary_row(result: dict, groups: list[str]) -> dict:
    a = result["analysis"]

    def ceil(column: str) -> float:
        return round(a[column].get("ceiling", {}).get("spearman", float("nan")), 2)

    return {
        "seed": result["seed"],
        "metric": result["metric"],
        "docs": result["docs"],
        "utility ceiling": ceil("utility"),
        "utility ceiling 90%": [
            round(a["utility"]["ceiling"][k], 2) for k in ("spearman_low", "spearman_high")
        ],
        "zscore utility ceiling": round(result["zscore_ceiling"]["spearman"], 2),
        "merge rho utility": round(a["utility"]["proxy"]["merge"]["spearman"], 2),
        "best trivial utility": round(a["utility"]["best_trivial_spearman"], 2),
        "groups": {g: ceil(f"group.{g}") for g in groups},
        "groups merge rho": {
            g: round(a[f"group.{g}"]["proxy"]["merge"]["spearman"], 2) for g in groups
        },
        "mean_loss ceiling": ceil("mean_loss"),
        "merge rho mean_loss": round(a["mean_loss"]["proxy"]["merge"]["spearman"], 2),
    }


def summarise(path: Path, store_pattern: str | None = None) -> None:
    """One markdown row per (seed, metric, documents): ceilings and the merge's rho."""
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if store_pattern:
        results = [recomputed(r, store_pattern) for r in results]
    groups = sorted(
        c.removeprefix("group.") for c in results[0]["analysis"] if c.startswith("group.")
    )
    print(
        "| seed | metric | docs | utility ceiling [90 %] | z-scored | merge rho | best trivial "
        "| groups >= 0.6 | " + " | ".join(groups) + " | mean-loss ceiling | merge rho (loss) |"
    )
    print(
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * (len(groups) + 2)
    )
    for r in sorted(results, key=lambda r: (r["seed"], r["metric"] != "p_correct", r["docs"])):
        row = summary_row(r, groups)
        low, high = row["utility ceiling 90%"]
        cells = [row["groups"][g] for g in groups]
        print(
            f"| {row['seed']} | {row['metric']} | {row['docs']} | {row['utility ceiling']:.2f} "
            f"[{low:.2f}, {high:.2f}] | {row['zscore utility ceiling']:.2f} "
            f"| {row['merge rho utility']:.2f} | {row['best trivial utility']:.2f} "
            f"| {sum(c >= 0.6 for c in cells)} | "
            + " | ".join(f"{c:.2f}" for c in cells)
            + f" | {row['mean_loss ceiling']:.2f} | {row['merge rho mean_loss']:.2f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--summarise", type=Path, help="print the table of a --out file")
    p.add_argument("--recompute", help="with --summarise: the seeds' store, '.../store-{seed}'")
    p.add_argument("--store", type=Path)
    p.add_argument("--seed", type=int)
    p.add_argument("--metric", action="append", help="p_correct, neg_bpb, ... (repeatable)")
    p.add_argument("--mixtures", type=int, default=9, help="uniform + this minus one draws")
    p.add_argument("--concentration", type=float, default=0.5)
    p.add_argument("--docs", type=int, default=300, help="documents per built-in task")
    p.add_argument("--reuse-upstream", action="store_true")
    p.add_argument("--out", type=Path, help="append each metric's result here (JSON lines)")
    p.add_argument(
        "--config", help="a config file or preset (RESULTS' runs: the default, now short-experts)"
    )
    args = p.parse_args()
    CONFIG[0] = args.config
    if args.summarise:
        summarise(args.summarise, args.recompute)
        return
    if args.store is None or args.seed is None or not args.metric:
        p.error("give --store, --seed and --metric, or --summarise")
    torch.set_num_threads(1)
    for result in sweep(args):
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
