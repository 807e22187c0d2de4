"""MixMin and MergeMix with the benchmark target (`search.target: tasks`) against the held-out
target (`heldout`, the only one before issue 19): the real utility of the mixture each chooses.

Protocol, on one store (data, base and experts trained once and shared):
1. each strategy's optimum for each target (`search_inputs`, the first proposal of the flow);
2. the merge at that mixture evaluated as every merge is (`merge_and_evaluate`): merge utility;
3. a real run on that mixture from the base with the experts' budget (`train_mixed`, as the
   validation's mixed runs), per seed, scored by the same evaluator: real utility.
Utility = the mean of the capability groups' scores (the default raw, equal-weight utility).
Uniform is scored the same way as the reference.

    python benchmarks/search_targets.py [--config configs/micro.yaml] [--store DIR] [--seeds 2]
        [--set seed=1 ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from parammix_core import simplex, stages
from parammix_core.config import Experiment, apply_overrides, load_experiment
from parammix_core.data import load_prepared
from parammix_core.model import load_model
from parammix_core.search import strategy_from_config
from parammix_core.stages.evaluate import make_evaluator
from parammix_core.stages.mixed import train_mixed
from parammix_core.stages.search_inputs import strategy_inputs

ROOT = Path(__file__).resolve().parents[1]


def utility(exp: Experiment, metrics: dict) -> float:
    return float(np.mean([metrics[f"group.{g}"] for g in exp.evaluation.groups]))


def choice(exp: Experiment, store, data, base, experts) -> np.ndarray:
    """The strategy's optimum: the flow's first proposal after the initial design."""
    ref = stages.search_inputs(exp, store, data, base, experts)
    inputs = strategy_inputs(exp, store, ref)
    return strategy_from_config(exp.search, exp.domains, exp.seed, **inputs).optimum


def real_scores(exp: Experiment, store, data, base, alpha, seeds: int) -> list[tuple]:
    """(utility, mean held-out loss) of real runs on `alpha` from the base, one per seed."""
    prepared = load_prepared(store.local_dir(data))
    out = []
    for seed in range(seeds):
        ref = train_mixed(exp, store, alpha.tolist(), seed, data, base)
        model = load_model(str(store.local_dir(ref)), exp.model, "cpu")
        metrics = make_evaluator(exp, store, data, prepared, model, torch.device("cpu")).evaluate()
        loss = float(np.mean([metrics[f"loss.{d}"] for d in exp.domains]))
        out.append((utility(exp, metrics), loss))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "micro.yaml"))
    parser.add_argument("--store", default=None, help="store folder (default: a temporary one)")
    parser.add_argument("--seeds", type=int, default=2, help="real runs per mixture")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # the CLI's runtime.torch_threads: seeds side by side, no thrashing
    store_dir = args.store or tempfile.mkdtemp(prefix="search-targets-")
    exp = load_experiment(Path(args.config))
    exp = apply_overrides(
        exp, [f"store.url={store_dir}", "runtime.device=cpu", *args.set], args.config
    )
    store = stages.open_store(exp)
    start = time.perf_counter()
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    choices = {"uniform": simplex.uniform(len(exp.domains))}
    for strategy in ("mixmin", "mergemix"):
        for target in ("heldout", "tasks"):
            variant = apply_overrides(
                exp, [f"search.strategy={strategy}", f"search.target={target}"], args.config
            )
            choices[f"{strategy} / {target}"] = choice(variant, store, data, base, experts)
    alphas = [a.tolist() for a in choices.values()]
    rows = stages.load_rows(
        store, [stages.merge_and_evaluate(exp, store, alphas, data, base, experts)]
    )
    print(
        f"config {args.config} {' '.join(args.set)}, store {store_dir}, "
        f"{args.seeds} real run(s) per mixture"
    )
    print(
        f"| choice | {' | '.join(exp.domains)} | merge utility | real utility (mean, per seed) "
        "| real mean held-out loss |"
    )
    print(f"| --- | {' | '.join('---:' for _ in exp.domains)} | ---: | --- | ---: |")
    for (name, alpha), (_, row) in zip(choices.items(), rows.iterrows(), strict=True):
        real = real_scores(exp, store, data, base, alpha, args.seeds)
        weights = " | ".join(f"{w:.3f}" for w in alpha)
        per_seed = ", ".join(f"{u:.4f}" for u, _ in real)
        print(
            f"| {name} | {weights} | {utility(exp, row.to_dict()):.4f} | "
            f"{np.mean([u for u, _ in real]):.4f} ({per_seed}) | "
            f"{np.mean([loss for _, loss in real]):.4f} |",
            flush=True,
        )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
