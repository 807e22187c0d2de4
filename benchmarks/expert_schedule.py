"""Do the experts' learning-rate schedule and batch sampler decide whether real runs separate?

    python benchmarks/expert_schedule.py --store /tmp/sched/store-0 --seed 0
    python benchmarks/expert_schedule.py --store S --seed 8 --schedule constant --schedule cosine
    python benchmarks/expert_schedule.py --store S --seed 8 --schedule cosine \
        --sampler iid --sampler blended
    python benchmarks/expert_schedule.py --store S --seed 8 --schedule cosine \
        --set training.expert.batch_size=32
    python benchmarks/expert_schedule.py --store S --seed 8 --schedule cosine \
        --set training.expert.average_last=0.5
    python benchmarks/expert_schedule.py --store S --seed 8 --schedule cosine \
        --set validation.reruns=12

The validation's real runs have the experts' budget and hyper-parameters, so the experts'
schedule and sampler (`training.expert.sampler`) are theirs too. For one experiment seed and
each schedule and sampler named, the embedded default (its data, base: built or found in the
store) trains the four experts and the validation's 12 draws (uniform and 11 Dirichlet
mixtures, six of them again on another data order) with them and scores merges and runs with
`validate_proxy`, as a run of the flow does; `--set` changes the experiment further for every
arm (any setting of `parammix run --set`). Per
metric it prints what issue 16 asks of the validation: the rerun ceiling with its 90 %
interval, the spread over mixtures and the run-to-run noise it comes from, the merge's
Spearman rho against the real runs, the best trivial ranking, and the merge's lead over it
with its 90 % interval. The validation ranks each mixture by the mean of its runs (a rerun
mixture's two), so the table also gives the runs per mixture, the ceiling of those means and
the merge's rho against the first runs alone; `--set validation.reruns=12` trains every draw
twice. Every arm sees the same mixtures, seeds and base.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core import proxy_validation, stages  # noqa: E402
from parammix_core.config import Experiment, apply_overrides  # noqa: E402
from parammix_core.stages import validate  # noqa: E402
from parammix_core.stages.mixed import train_mixed  # noqa: E402

N_DRAWS = 12  # the validation's draws; the flow adds the chosen mixture as a 13th


def validation_rows(store_url: str, seed: int, schedule: str, sampler: str, extra: list[str]):
    """The rows of a validation of the 12 draws, every run trained with `schedule`, `sampler`."""
    sets = [
        f"store.url={store_url}",
        f"seed={seed}",
        f"training.expert.schedule={schedule}",
        f"training.expert.sampler={sampler}",
        *extra,
    ]
    exp = apply_overrides(Experiment(), sets, "expert_schedule")
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    mixtures = validate.validation_mixtures(exp)
    plan = validate.run_plan(exp, len(mixtures))
    runs = []
    for n, (i, run_seed) in enumerate(plan, 1):
        runs.append(train_mixed(exp, store, mixtures[i], run_seed, data, base))
        print(f"{schedule}/{sampler}: {n}/{len(plan)} real runs", file=sys.stderr, flush=True)
    ref = validate.validate_proxy(exp, store, mixtures, runs, data, base, experts)
    return exp, store.load_parquet(ref, "rows.parquet")


def table_rows(seed: int, arm: str, exp: Experiment, rows) -> list[str]:
    rows = rows[rows["mixture"] < N_DRAWS]
    analysis = proxy_validation.analyse(rows, exp.domains, exp.evaluation.tasks)
    first = proxy_validation.analyse(
        rows[rows["kind"] != "rerun"], exp.domains, exp.evaluation.tasks
    )
    out = []
    for metric in ["utility", *(f"group.{g}" for g in exp.evaluation.groups), "mean_loss"]:
        e = analysis[metric]
        c, lead = e["ceiling"], e.get("merge_lead") or {}
        interval = f"[{_signed(lead.get('low'))}, {_signed(lead.get('high'))}]"
        out.append(
            f"| {seed} | {arm} | {metric} | {c['spearman']:.2f} [{c['spearman_low']:.2f}, "
            f"{c['spearman_high']:.2f}] | {c['spread_sd']:.4f} | {c['noise_sd']:.4f} | "
            f"{e['runs_per_mixture']:.2f} | {c['truth_spearman']:.2f} "
            f"[{c['truth_spearman_low']:.2f}, {c['truth_spearman_high']:.2f}] | "
            f"{first[metric]['proxy']['merge']['spearman']:.2f} | "
            f"{e['proxy']['merge']['spearman']:.2f} | {e['best_trivial_spearman']:.2f} | "
            f"{_signed(lead.get('lead'))} {interval} |"
        )
    return out


def _signed(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="store folder or URL (built or reused)")
    p.add_argument("--seed", type=int, default=0, help="the experiment's seed")
    p.add_argument("--schedule", action="append", choices=["constant", "cosine"], help="repeatable")
    p.add_argument(
        "--sampler", action="append", choices=["iid", "blended"], help="repeatable; default iid"
    )
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for every arm")
    args = p.parse_args()
    lines = [
        "| seed | schedule/sampler | metric | ceiling [90 %] | spread sd | noise sd | runs per "
        "mixture | ceiling of means [90 %] | merge rho, first runs | merge rho, means | best "
        "trivial | merge lead [90 %] |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for schedule in args.schedule or ["constant", "cosine"]:
        for sampler in args.sampler or ["iid"]:
            exp, rows = validation_rows(args.store, args.seed, schedule, sampler, args.set)
            arm = " ".join([f"{schedule}/{sampler}", *args.set])
            lines += table_rows(args.seed, arm, exp, rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
