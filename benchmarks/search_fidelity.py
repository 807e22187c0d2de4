"""Multi-fidelity search vs merges alone vs real runs alone, at equal cost, on the default.

    python benchmarks/search_fidelity.py --seed 0 --dir /tmp/fidelity   # one seed
    python benchmarks/search_fidelity.py --summarise /tmp/fidelity      # the seeds' tables
    python benchmarks/search_fidelity.py --seed 0 --dir /tmp/fidelity --searches S.jsonl
        # grade the searches a stopped run printed (its JSON lines), searching nothing

For one experiment seed (its own base, experts and data order) and each budget N (real-run
equivalents: measured seconds over the experts' mean training seconds), three searches run
through the flow (`param_mix`; validation, final training and the probe off):
- `multifidelity`: merges and real mixed runs, one GP over both (`fidelities: [merge, run]`);
- `real`: BO on real runs alone (`fidelities: [run]`: the same GP and acquisition);
- `merges`: today's default, random merges scored by the LightGBM surrogates, as many merges
  as the budget buys at the merges' measured cost in the multifidelity search of budget N.
Each choice is then trained for real at the experts' budget (the fidelity the searches aim
at) on fresh seeds (1000 + 10 * seed + j: no search trained on them, so a search that picked
its luckiest run gains nothing from the luck), beside uniform and the natural proportions on
the same seeds. Per search it records what it spent, its merges and runs, the chosen mixture,
and the real utility and mean held-out loss of the choice. A search of budget 16 reuses
every evaluation its budget-8 twin made (same seeds, same proposals until the budgets part).

With `--long`, the third fidelity against the two-fidelity search at equal cost: the searches
are `multifidelity` ([merge, run]) and `multifidelity3` ([merge, run, long], long runs at the
final training's budget), and every choice is graded at the final training's budget (the
default `final.train`), the budget a user trains the chosen mixture at.

`--strategies` runs only the searches named (`merges` needs the multifidelity search of the
same budget, run now or already in the folder's results); a seed's results file keeps the
searches of earlier runs, so a search can be added to a finished comparison:

    python benchmarks/search_fidelity.py --long --seed 0 --dir /tmp/fidelity --strategies merges

The three signals graded where a user trains the chosen mixture (the final budget):

    python benchmarks/search_fidelity.py --long --seed 0 --dir /tmp/fidelity \
        --strategies multifidelity real merges

`multifidelity-flat` is the multifidelity search without the exponent's decay
(`exponent_decay: 1.0`): the cost weighs as much in the last round as in the first, so merges
keep being bought late; added to a finished comparison as any search is:

    python benchmarks/search_fidelity.py --long --seed 0 --dir /tmp/fidelity \
        --strategies multifidelity-flat
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MF = "search.strategies.multifidelity"
SEARCHES = {  # name -> the multifidelity settings it runs with
    "multifidelity": [f"{MF}.fidelities=[merge, run]"],
    "real": [f"{MF}.fidelities=[run]"],
    "multifidelity3": [f"{MF}.fidelities=[merge, run, long]"],
    # the cost keeps its round-0 weight: merges stay cheaper in every round, not only early
    "multifidelity-flat": [f"{MF}.fidelities=[merge, run]", f"{MF}.exponent_decay=1.0"],
}
COMMON = [
    "validation.enabled=false",
    "final.enabled=false",
    "probe.enabled=false",
    "runtime.max_workers=1",
    "search.strategies.multifidelity.per_round=2",
]
# the real runs that grade a choice: the experts' budget, as the fidelity-1 runs (without --long)
AT_EXPERTS_BUDGET = (
    "final.train={steps: 120, batch_size: 16, lr: 0.001, warmup_steps: 10, schedule: constant}"
)

CONFIG: list[str | None] = [None]  # --config: another experiment (a smoke test on micro)
LONG = [False]  # --long: the third fidelity, choices graded at the final training's budget


def experiment(store: Path, seed: int, *overrides: str):
    from parammix_core.config import apply_overrides, load_experiment

    grading = [] if LONG[0] else [AT_EXPERTS_BUDGET]
    sets = [f"store.url={store}", f"seed={seed}", *COMMON, *grading, *overrides]
    return apply_overrides(load_experiment(CONFIG[0]), sets, CONFIG[0] or "<embedded default>")


def search(store: Path, seed: int, strategy: str, budget: int, merges: int | None) -> dict:
    """One search through the flow: its choice and what it evaluated and spent."""
    from flows.param_mix import param_mix
    from parammix_core import stages
    from parammix_core.stages import multifidelity as mf

    if strategy == "merges":
        sets = ["search.strategy=random", f"search.n_mixtures={merges}"]
    else:
        sets = ["search.strategy=multifidelity", *SEARCHES[strategy], f"{MF}.budget={budget}"]
    exp = experiment(store, seed, *sets)
    st = stages.open_store(exp)
    before = {m["key"] for m in st.artifacts()}
    start = time.perf_counter()
    refs = param_mix(exp, return_state=True).result()
    wall = time.perf_counter() - start
    unit = mf.run_unit(st, [refs[f"expert.{d}"] for d in exp.domains])
    rows = st.load_parquet(refs["surrogates"], "rows.parquet")  # the merges (runs if none)
    if strategy == "merges":
        used = {"spent": float(rows["seconds"].sum() / unit), "merges": len(rows), "runs": 0}
    else:  # the rounds this search published: the last one's info has what all spent
        rounds = [
            m
            for m in st.artifacts()
            if m["stage"] == "proposals" and "spent" in m["info"] and m["key"] not in before
        ]
        at = np.concatenate(
            [st.load_parquet(r, "rows.parquet")["fidelity"].to_numpy() for r in map(ref_of, rounds)]
        )
        kinds = mf.fidelity_names(exp, at).tolist()
        used = {
            "spent": max(m["info"]["spent"] for m in rounds),
            **{
                k: kinds.count(f)
                for k, f in (("merges", "merge"), ("runs", "run"), ("long", "long"))
            },
        }
    choice = stages.load_choice(st, refs["choice"])
    return {
        "strategy": strategy,
        "budget": budget,
        "alpha": choice.alpha,
        "predicted_utility": choice.predicted_utility,
        "wall_seconds": wall,
        "unit_seconds": unit,
        "merge_seconds": None if strategy == "real" else geomean(rows["seconds"]),
        **used,
    }


def ref_of(manifest: dict):
    from parammix_core.store import ArtifactRef

    return ArtifactRef(stage=manifest["stage"], name=manifest["name"], key=manifest["key"])


def geomean(values) -> float:
    return float(np.exp(np.log(np.asarray(values, dtype=float)).mean()))


def grading_seed(seed: int, j: int) -> int:
    """The j-th data-order seed a choice of experiment seed `seed` is graded on."""
    return 1000 + 10 * seed + j


def mixture_key(alpha) -> str:
    return json.dumps([round(float(a), 6) for a in alpha])


def scored(exp, st, run, data) -> dict[str, float]:
    """A graded run's metrics under `exp`'s evaluation (scored now when not yet in the store)."""
    from parammix_core.stages.final import score_final_run

    return st.load_json(score_final_run(exp, st, run, data), "scores.json")["metrics"]


def graded_runs(store: Path, seed: int) -> list[tuple[str, int, object, dict[str, float]]]:
    """(mixture key, grading seed, run, metrics) of every run `grade` trained in the store for
    experiment seed `seed`; the flow's own final runs (seeds below 1000) are left out."""
    from parammix_core import stages

    exp = experiment(store, seed)
    st = stages.open_store(exp)
    data = stages.data_ref(exp)
    out = []
    for m in st.artifacts():
        if m["stage"] != "final" or m["name"] != "run":
            continue
        run, info = ref_of(m), m["info"]
        if 0 <= info["seed"] - grading_seed(seed, 0) < 10:
            out.append((mixture_key(info["alpha"]), info["seed"], run, scored(exp, st, run, data)))
    return out


def grade(store: Path, seed: int, alphas: dict[str, dict[str, float]], n_seeds: int) -> dict:
    """Real utility and mean held-out loss of each mixture, trained on fresh seeds."""
    from parammix_core import stages
    from parammix_core.data import natural_weights
    from parammix_core.search import utility
    from parammix_core.stages.mixed import final_run

    exp = experiment(store, seed)
    st = stages.open_store(exp)
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    natural = natural_weights(st.load_json(data, "stats.json"))
    points = {
        **alphas,
        "uniform": dict.fromkeys(exp.domains, 1 / len(exp.domains)),
        "natural": natural,
    }
    out = {}
    for name, alpha in points.items():
        vector = [alpha[d] for d in exp.domains]
        scores = []
        for j in range(n_seeds):
            ref = final_run(exp, st, vector, grading_seed(seed, j), data, base)
            metrics = scored(exp, st, ref, data)
            groups = {g: np.array([metrics[f"group.{g}"]]) for g in exp.evaluation.groups}
            scores.append(
                {
                    "utility": float(utility(groups, exp.search.group_weights or None)[0]),
                    "mean_loss": float(np.mean([metrics[f"loss.{d}"] for d in exp.domains])),
                }
            )
        out[name] = {"alpha": alpha, "runs": scores}
        print(f"graded {name}: {[round(s['utility'], 4) for s in scores]}", flush=True)
    return out


def run_searches(
    store: Path, seed: int, budgets: list[int], strategies: list[str], earlier: dict[str, dict]
) -> list[dict]:
    """The named searches of every budget, each printed as a JSON line when done, beside the
    `earlier` ones (by `strategy@budget`) they do not replace. Real runs alone go last: its
    initial design trains uniform at the experiment's seed, the validation's first run, which
    a later multi-fidelity search in the store would join as a free observation; merges alone
    go after the multi-fidelity search whose merge cost they are bought at."""
    from prefect.testing.utilities import prefect_test_harness

    searches = dict(earlier)
    order = sorted(strategies, key=lambda s: {"merges": 1, "real": 2}.get(s, 0))
    with prefect_test_harness(server_startup_timeout=180):
        for strategy in order:
            for budget in budgets:
                merges = merges_bought(searches, budget) if strategy == "merges" else None
                found = search(store, seed, strategy, budget, merges)
                searches[f"{strategy}@{budget}"] = found
                print(json.dumps(found), flush=True)
    return list(searches.values())


def merges_bought(searches: dict[str, dict], budget: int) -> int:
    """How many merges `budget` buys at the merges' cost measured in the multifidelity search."""
    twin = searches.get(f"multifidelity@{budget}")
    if twin is None:
        raise SystemExit(f"error: merges@{budget} needs multifidelity@{budget} (run it first)")
    return max(10, round(budget / (twin["merge_seconds"] / twin["unit_seconds"])))


def run_seed(
    seed: int,
    folder: Path,
    budgets: list[int],
    strategies: list[str],
    grade_seeds: int,
    done: Path | None,
) -> None:
    """The searches (or, with `done`, the JSON lines a stopped run printed), then the grading
    of every search in the seed's results."""
    store, out = folder / f"store-{seed}", folder / f"seed-{seed}.json"
    earlier = json.loads(out.read_text())["searches"] if out.exists() else []
    if done is not None:
        earlier += [json.loads(line) for line in done.read_text().splitlines() if line.strip()]
    earlier_by_name = {f"{s['strategy']}@{s['budget']}": s for s in earlier}
    searches = (
        run_searches(store, seed, budgets, strategies, earlier_by_name)
        if done is None
        else list(earlier_by_name.values())
    )
    choices = {f"{s['strategy']}@{s['budget']}": s["alpha"] for s in searches}
    graded = grade(store, seed, choices, grade_seeds)
    out.write_text(json.dumps({"seed": seed, "searches": searches, "graded": graded}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, help="run the searches of this experiment seed")
    p.add_argument("--dir", type=Path, help="folder of the stores and results")
    p.add_argument("--budgets", type=int, nargs="+", default=[8, 16])
    p.add_argument("--grade-seeds", type=int, default=2, help="real runs per graded mixture")
    p.add_argument("--summarise", type=Path, help="print the tables of a folder's results")
    p.add_argument("--config", help="experiment YAML (default: the embedded default)")
    p.add_argument(
        "--long",
        action="store_true",
        help="three fidelities against two, choices graded at the final training's budget",
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        choices=[*SEARCHES, "merges"],
        help="the searches to run (default: multifidelity real merges; with --long: "
        "multifidelity3 multifidelity)",
    )
    p.add_argument(
        "--searches",
        type=Path,
        help="JSON lines of searches a stopped run printed: grade them, search nothing",
    )
    args = p.parse_args()
    CONFIG[0], LONG[0] = args.config, args.long
    if args.summarise:
        from fidelity_tables import summarise

        summarise(args.summarise)
        return
    if args.seed is None or args.dir is None:
        p.error("give --seed and --dir, or --summarise")
    args.dir.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # the CLI's runtime.torch_threads: seeds side by side, no thrashing
    strategies = args.strategies or (
        ["multifidelity3", "multifidelity"] if args.long else ["multifidelity", "real", "merges"]
    )
    run_seed(args.seed, args.dir, args.budgets, strategies, args.grade_seeds, args.searches)


if __name__ == "__main__":
    main()
