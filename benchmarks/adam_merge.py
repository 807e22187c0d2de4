"""Does a merge that follows Adam's per-coordinate step sizes rank mixtures as real runs do?

    python benchmarks/adam_merge.py --store /tmp/run/store --set seed=0
    python benchmarks/adam_merge.py --store /tmp/big/store --config configs/larger-cpu.yaml \\
        --pool coordinate tensor model-sum1

Adam normalises each coordinate's step by the root of its squared-gradient average, so a real
run on mixture alpha moves a coordinate only one domain's data touches almost as far as that
domain's expert does, where the linear merge moves it alpha_k as far. With v_k the expert's
second moment and the mixed run's approximately sum_j alpha_j v_j, the mixed run's update is

    tau(alpha) ~ sum_k alpha_k * sqrt(v_k) / sqrt(sum_j alpha_j v_j) * tau_k

per coordinate: alpha_k where the domains' v agree (the linear merge), sqrt(alpha_k) where
only domain k's gradients reach, the expert itself at a vertex. The script reads each expert's
last training checkpoint in the store's `_work` folder for v_k (AdamW's `exp_avg_sq`), merges
the validation's mixtures both ways, scores them with the run's own evaluation and prints, per
group, the utility and the mean held-out loss, the Spearman of each merge against the real
runs (each mixture's run and reruns averaged) and the slope of real on merge. `--pool` averages
v over matrix rows, tensors or the whole model (one step size per expert: a warp of the
mixture), `-sum1` rescales the weights to sum to 1. The linear merge's scores must equal the
stored ones (printed: the largest difference). Results: benchmarks/RESULTS.md, "A merge that
follows Adam's step sizes".
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parammix_core import stages  # noqa: E402
from parammix_core.config import Experiment, apply_overrides, load_experiment  # noqa: E402
from parammix_core.data import load_prepared  # noqa: E402
from parammix_core.evaluate.harness import Evaluator  # noqa: E402
from parammix_core.merge import linear_merge  # noqa: E402
from parammix_core.model import load_model, load_state  # noqa: E402
from parammix_core.search.real_scale import fit_real_scale  # noqa: E402
from parammix_core.stages.evaluate import make_evaluator  # noqa: E402
from parammix_core.store import ArtifactRef  # noqa: E402

EPS = 1e-8  # AdamW's eps in the runs measured


def refs(store, stage: str) -> dict[str, ArtifactRef]:
    return {
        m["name"]: ArtifactRef(stage=stage, name=m["name"], key=m["key"])
        for m in store.artifacts()
        if m["stage"] == stage
    }


def optimizer_order(model: torch.nn.Module) -> list[str]:
    """Parameter names in the optimizer's index order (`engines.base.param_groups`)."""
    names = {id(p): n for n, p in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    ordered = [p for p in params if p.dim() >= 2] + [p for p in params if p.dim() < 2]
    return [names[id(p)] for p in ordered]


def second_moments(store, ref: ArtifactRef, order: list[str]) -> dict[str, torch.Tensor]:
    """AdamW's exp_avg_sq of the expert's last checkpoint, by parameter name."""
    steps = sorted(store.work_dir(ref).glob("step-*/optimizer.safetensors"))
    if not steps:
        raise SystemExit(f"error: no optimizer checkpoint under {store.work_dir(ref)}")
    with safe_open(str(steps[-1]), "pt") as f:
        return {name: f.get_tensor(f"{i}.exp_avg_sq").float() for i, name in enumerate(order)}


def pooled(moments: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    """v averaged over each matrix row (`row`), each whole tensor (`tensor`) or every coordinate
    of the model (`model`: one step size per expert, a warp of the mixture): fewer, less noisy
    step sizes than one per coordinate (`coordinate`)."""
    if how == "coordinate":
        return moments
    if how == "model":
        mean = sum(v.sum() for v in moments.values()) / sum(v.numel() for v in moments.values())
        return dict.fromkeys(moments, mean)
    if how == "row":
        return {
            n: v.mean(dim=-1, keepdim=True) if v.dim() >= 2 else v.mean()
            for n, v in moments.items()
        }
    return {n: v.mean() for n, v in moments.items()}


def adam_merge(base, taus, moments, alpha, sum_one: bool = False) -> dict[str, torch.Tensor]:
    """`sum_one`: the weights rescaled to sum to 1 at every coordinate, keeping Adam's
    reweighting of the experts but not its shrinking of the total step (Jensen: the weights
    sum to at most 1, to exactly 1 where the domains' v agree)."""
    out = {}
    for name, b in base.items():
        if name not in moments[0]:
            out[name] = b
            continue
        if sum_one:
            denom = sum(a * (v[name].sqrt() + EPS) for a, v in zip(alpha, moments, strict=True))
        else:
            denom = sum(a * v[name] for a, v in zip(alpha, moments, strict=True)).sqrt() + EPS
        delta = sum(
            a * (v[name].sqrt() + EPS) / denom * t[name]
            for a, v, t in zip(alpha, moments, taus, strict=True)
            if a > 0
        )
        out[name] = b + delta
    return out


def set_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(state[name])


def table(kinds: dict[str, np.ndarray], real: np.ndarray, labels: list[str]) -> None:
    print("| score | " + " | ".join(f"{k} rho | {k} slope" for k in kinds) + " |")
    print("| --- |" + " ---: | ---: |" * len(kinds))
    for j, label in enumerate(labels):
        cells = []
        for scores in kinds.values():
            rho = spearmanr(scores[:, j], real[:, j])[0]
            line = fit_real_scale({label: scores[:, j]}, {label: real[:, j]})[label]
            cells.append(f"{rho:.3f} | {line.slope:.2f} ± {line.slope_se:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


@dataclass
class ValidationRun:
    """A store's validation mixtures, their real runs' mean scores and what merging needs."""

    exp: Experiment
    alphas: np.ndarray
    merged: pd.DataFrame  # the validation's merge rows, one per mixture
    real: pd.DataFrame  # each mixture's run and reruns averaged, in `merged`'s order
    cols: list[str]  # the group score columns
    losses: list[str]  # the held-out loss columns
    model: torch.nn.Module
    evaluator: Evaluator
    base: dict[str, torch.Tensor]
    states: list[dict[str, torch.Tensor]]  # the experts, in `exp.domains` order
    moments: list[dict[str, torch.Tensor]]  # their AdamW second moments


def load_validation_run(store_url: str, config: str | None, sets: list[str]) -> ValidationRun:
    exp = apply_overrides(load_experiment(config), [*sets, f"store.url={store_url}"], "--set")
    if exp.training.replay:
        sys.exit(
            "these benchmarks compare merges of experts trained on one domain each: build the "
            "store and read it with --set training.replay=0"
        )
    store = stages.open_store(exp)
    keep = exp.validation.n_mixtures
    (val,) = refs(store, "validation").values()
    rows = store.load_parquet(val, "rows.parquet")
    losses = [c for c in rows.columns if c.startswith("loss.") and not c.endswith(".stderr")]
    merged = rows[(rows["kind"] == "merge") & (rows["mixture"] < keep)].sort_values("mixture")
    real_rows = rows[rows["kind"].isin(["mix", "rerun"]) & (rows["mixture"] < keep)]
    real = real_rows.groupby("mixture").mean(numeric_only=True).loc[merged["mixture"]]
    print(f"{val.stage}/{val.name}-{val.key[:12]}: {len(merged)} mixtures")

    (data,) = refs(store, "data").values()
    (base_ref,) = refs(store, "base").values()
    experts = refs(store, "expert")
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(base_ref)), exp.model, "cpu")
    evaluator = make_evaluator(exp, store, data, prepared, model, torch.device("cpu"))
    names = [n for n, _ in model.named_parameters()]
    base = load_state(store.local_dir(base_ref), exp.model, "cpu")
    states, moments = [], []
    order = optimizer_order(model)
    for d in exp.domains:
        state = load_state(store.local_dir(experts[d]), exp.model, "cpu")
        states.append({n: state[n].float() for n in names})
        moments.append(second_moments(store, experts[d], order))
    return ValidationRun(
        exp=exp,
        alphas=merged[[f"alpha.{d}" for d in exp.domains]].to_numpy(),
        merged=merged,
        real=real,
        cols=[f"group.{g}" for g in exp.evaluation.groups],
        losses=losses,
        model=model,
        evaluator=evaluator,
        base={n: base[n].float() for n in names},
        states=states,
        moments=moments,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="a local store with a validation and _work")
    p.add_argument("--config", help="the run's experiment YAML (default: the embedded default)")
    p.add_argument("--set", action="append", default=[], help="the run's --set overrides")
    p.add_argument(
        "--pool",
        nargs="+",
        default=["coordinate"],
        choices=["coordinate", "row", "tensor", "tensor-sum1", "model-sum1"],
        help="how finely the step sizes vary: one per coordinate, matrix row, tensor or model "
        "(`-sum1`: the weights rescaled to sum to 1)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    run = load_validation_run(args.store, args.config, args.set)
    base, states, cols, losses = run.base, run.states, run.cols, run.losses
    taus = [{n: e[n] - base[n] for n in base} for e in states]
    pools = {
        f"adam-{how}": [pooled(v, how.removesuffix("-sum1")) for v in run.moments]
        for how in args.pool
    }
    scored: dict[str, list[dict[str, float]]] = {"linear": [], **{k: [] for k in pools}}
    for i, alpha in enumerate(run.alphas):
        for kind in scored:
            start = time.perf_counter()
            state = (
                linear_merge(base, states, alpha)
                if kind == "linear"
                else adam_merge(base, taus, pools[kind], alpha, sum_one=kind.endswith("-sum1"))
            )
            set_weights(run.model, state)
            scored[kind].append(run.evaluator.evaluate())
            print(f"mixture {i} {kind}: {time.perf_counter() - start:.0f} s", flush=True)

    labels = [*run.exp.evaluation.groups, "utility", "mean loss"]
    real = run.real
    target = np.column_stack(
        [real[cols].to_numpy(), real[cols].mean(axis=1), -real[losses].mean(axis=1)]
    )

    def columns(metrics: list[dict[str, float]]) -> np.ndarray:
        g = np.array([[m[c] for c in cols] for m in metrics])
        loss = np.array([[m[c] for c in losses] for m in metrics])
        return np.column_stack([g, g.mean(axis=1), -loss.mean(axis=1)])

    kinds = {k: columns(v) for k, v in scored.items()}
    stored = columns(run.merged.to_dict("records"))
    print(
        f"linear merge re-scored vs stored: max |diff| {np.abs(kinds['linear'] - stored).max():.2e}"
    )
    table(kinds, target, labels)


if __name__ == "__main__":
    main()
