"""A validation's rankings again with more documents per built-in task: does the utility separate?

    python benchmarks/validation_docs.py --store /tmp/s0/store --seed 0 --docs 300 --docs 1200 \
        [--config configs/larger-cpu.yaml] [--task pm_stdlib_knowledge]

Reads the newest validation in a store of a finished `parammix run` (13 mixtures trained once,
6 again on another data order, their merges), scores every merge and real run again with
`--docs` documents per built-in task (the same seed, prompts and metric; only the count
changes), and prints the figures the flow's validation prints for the utility and each group:
the noise ceiling of single runs and of the runs' means with its 90 % interval, the merge's
Spearman, the best trivial ranking, and each group's run-to-run noise and spread between
mixtures, and per rescored task its noise beside what it would be if each document moved
independently of the others (a run-wide shift is what more documents cannot average away);
rescoring every task, also the utility's noise, its documents' part and the noise with twice
the documents (what the validation's report says, `validation_table.utility_run_noise`).
`--task NAME` (repeatable) rescores only those tasks, with `--docs` as their own
count (`EvalTask.docs`), and keeps the others' stored scores; `--metric` scores the rescored
tasks by another metric (`margin_bpb`, `p_gold`, ...). The held-out losses are the
stored ones. With the run's own document count the figures must equal the stored
validation's: the check that the rescoring is the product's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core.config import Experiment, load_experiment  # noqa: E402
from parammix_core.model import load_state  # noqa: E402
from parammix_core.noise import run_noise  # noqa: E402
from parammix_core.proxy_validation import analyse  # noqa: E402
from parammix_core.stages.evaluate import _bench  # noqa: E402
from parammix_core.stages.validation_table import Task, utility_run_noise  # noqa: E402
from parammix_core.store import ArtifactRef, Store  # noqa: E402

KINDS = ("expert", "merge", "mix", "rerun")  # the rows the utility's analysis reads


def ref_of(manifest: dict) -> ArtifactRef:
    return ArtifactRef(stage=manifest["stage"], name=manifest["name"], key=manifest["key"])


def newest(store: Store, stage: str) -> dict:
    return max((m for m in store.artifacts() if m["stage"] == stage), key=lambda m: m["created"])


def run_refs(store: Store) -> dict[tuple[tuple[float, ...], int], ArtifactRef]:
    """Every real mixed run in the store by (rounded alpha, data-order seed)."""
    return {
        (tuple(round(a, 9) for a in m["info"]["alpha"]), int(m["info"]["seed"])): ref_of(m)
        for m in store.artifacts()
        if m["stage"] == "mixed" and m["name"] == "run"
    }


PerDoc = dict[tuple[str, int], dict[str, np.ndarray]]  # (kind, mixture) -> task -> (n_docs,)


def rescore(exp: Experiment, store: Store, rows: pd.DataFrame) -> tuple[pd.DataFrame, PerDoc]:
    """`rows` (the validation's expert, merge, mix and rerun rows) with every task and group
    column scored again under `exp`'s evaluation, and the real runs' per-document scores."""
    data = ref_of(newest(store, "data"))
    base = ref_of(newest(store, "base"))
    experts = {m["info"]["domain"]: ref_of(m) for m in store.artifacts() if m["stage"] == "expert"}
    bench = _bench(exp, store, data, base, [experts[d] for d in exp.domains], None)
    model = bench.evaluator.model
    runs = run_refs(store)
    alpha_cols = [f"alpha.{d}" for d in exp.domains]
    out, per_doc = [], {}
    for _, row in rows.iterrows():
        alpha = row[alpha_cols].to_numpy(dtype=float)
        if row["kind"] == "expert":
            bench.merger.apply(np.eye(len(exp.domains))[int(row["mixture"])])
        elif row["kind"] == "merge":
            bench.set_mixture(alpha)
        else:
            ref = runs[(tuple(round(a, 9) for a in alpha), int(row["seed"]))]
            state = load_state(store.local_dir(ref), exp.model, bench.evaluator.device)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(state[name])
        metrics, docs = bench.evaluator.evaluate_docs()
        out.append({**row.to_dict(), **metrics})
        if row["kind"] in ("mix", "rerun"):
            per_doc[(row["kind"], int(row["mixture"]))] = docs
        print(f"  scored {row['kind']} {row['mixture']}", file=sys.stderr, flush=True)
    return pd.DataFrame(out), per_doc


def run_pair(per_doc: PerDoc, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The task's per-document scores (R, D) of the first runs and the reruns of the R rerun
    mixtures, as the validation's `run_docs.parquet` holds them."""
    reruns = sorted(m for kind, m in per_doc if kind == "rerun")
    first, second = (np.stack([per_doc[(k, m)][task] for m in reruns]) for k in ("mix", "rerun"))
    return first, second


def summary(rows: pd.DataFrame, compare: dict) -> dict[str, dict]:
    """The flow's analysis of the utility and each group (`proxy_validation.analyse`)."""
    tasks = [Task(name, group) for name, group in compare["tasks"]]
    return analyse(rows, compare["domains"], tasks, compare["weights"], chosen=compare["chosen"])


def print_table(label: str, seed: int, analysis: dict[str, dict]) -> None:
    for column, entry in analysis.items():
        if column != "utility" and not column.startswith("group."):
            continue
        c = entry["ceiling"]
        print(
            f"| {label} | {seed} | {column.removeprefix('group.')} | {c['noise_sd']:.4f} | "
            f"{c['spread_sd']:.4f} | {c['spearman']:.2f} [{c['spearman_low']:.2f}, "
            f"{c['spearman_high']:.2f}] | {c['truth_spearman']:.2f} | "
            f"{entry['proxy']['merge']['spearman']:.2f} | {entry['best_trivial_spearman']:.2f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", type=Path, action="append", required=True)
    p.add_argument("--seed", type=int, action="append", required=True, help="per --store")
    p.add_argument("--docs", type=int, action="append", required=True)
    p.add_argument("--config", type=Path, help="the run's config (default: the embedded one)")
    p.add_argument("--task", action="append", help="rescore only these tasks (repeatable)")
    p.add_argument("--metric", help="score the rescored tasks by this metric instead")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(
        "| docs | seed | column | noise sd | spread sd | ceiling, single runs [90 %] | "
        "ceiling, means | merge rho | best trivial |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for folder, seed in zip(args.store, args.seed, strict=True):
        store = Store(str(folder))
        validation = ref_of(newest(store, "validation"))
        compare = store.load_json(validation, "validation.json")["compare"]
        stored = store.load_parquet(validation, "rows.parquet")
        stored = stored[stored.kind.isin(KINDS)].reset_index(drop=True)
        print_table("stored", seed, summary(stored, compare))
        base = load_experiment(args.config).model_copy(update={"seed": seed})
        for docs in args.docs:
            metric = {"metric": args.metric} if args.metric else {}
            if args.task:  # those tasks' own count (`EvalTask.docs`), the others unscored
                tasks = [
                    t.model_copy(update={"docs": docs, **metric})
                    for t in base.evaluation.tasks
                    if t.name in args.task
                ]
                update = {"tasks": tasks}
            else:
                tasks = [t.model_copy(update=metric) for t in base.evaluation.tasks]
                update = {"tasks": tasks, "builtin_docs_per_task": docs}
            evaluation = base.evaluation.model_copy(update={**update, "heldout_loss": False})
            exp = base.model_copy(update={"evaluation": evaluation})
            rescored, per_doc = rescore(exp, store, stored)
            rows = stored.copy()
            for t in tasks:
                rows[[f"task.{t.name}", f"task.{t.name}.stderr"]] = rescored[
                    [f"task.{t.name}", f"task.{t.name}.stderr"]
                ]
            for _, group in compare["tasks"]:
                names = [f"task.{n}" for n, g in compare["tasks"] if g == group]
                rows[f"group.{group}"] = rows[names].mean(axis=1)
            label = f"{docs} {args.metric or ''}".strip()
            print_table(label, seed, summary(rows, compare))
            pairs = {t.name: run_pair(per_doc, t.name) for t in tasks}
            noise = {name: run_noise(*pair) for name, pair in pairs.items()}
            for name, n in noise.items():
                print(
                    f"  {label}, seed {seed}, {name}: run-to-run noise sd {n['noise_sd']:.4f}, "
                    f"{n['documents_sd']:.4f} if its documents moved independently"
                )
            if not args.task:  # every task rescored: the utility's split, as the report's
                named = [Task(t.name, t.group) for t in tasks]
                u = utility_run_noise(pairs, noise, named, compare["weights"])
                print(
                    f"  {label}, seed {seed}, utility: run-to-run noise sd {u['noise_sd']:.4f}, "
                    f"{u['documents_sd']:.4f} from its documents, {u['doubled_sd']:.4f} with "
                    "twice the documents"
                )


if __name__ == "__main__":
    main()
