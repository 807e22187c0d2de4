"""Which merge ranks mixtures as real runs do? Warps of the mixture and TIES beside linear.

    python benchmarks/merge_rankings.py --store /tmp/run/store --set seed=0 --out s0.json
    python benchmarks/merge_rankings.py --store /tmp/run/store --warp 0:1 1:0.75 --ties 0.5:sum
    python benchmarks/merge_rankings.py --summary s0.json s1.json ...

On every store measured, the linear merge of a validation mixture heavy in sft or math loses
much more of the language group than the real run of that mixture does (the experts' task
vectors interfere where a mixed run's batches do not), and ranks the utility below its noise
ceiling. Two families of fixes, each a merge of the validation's mixtures scored with the
run's own evaluation:

- `--warp GAMMA:POWER`: the linear merge at the warped mixture alpha'_k proportional to
  c_k^GAMMA alpha_k^POWER, c_k = sqrt of expert k's AdamW second moment averaged over the model
  (0:1 is today's linear merge; 1:1 is Adam's pooled step-size warp of `adam_merge.py --pool
  model-sum1`; 0:0.5 the concave response Adam predicts where one domain alone reaches).
- `--ties DENSITY:sum|mean`: TIES-Merging (Yadav et al., 2023): each task vector trimmed to
  its largest DENSITY fraction per tensor, a sign elected per coordinate from the
  alpha-weighted sum, and only the agreeing experts added, alpha-weighted (`sum`) or averaged
  by their weights (`mean`, mergekit's `normalize`).

Printed per merge: the Spearman against the real runs (each mixture's runs averaged) of the
utility, of the mean held-out loss and of each group, saved to `--out`. `--summary` reads
several stores' files (each also holds the trivial rankings: each domain's weight and the
mixture's entropy) and picks a merge leave one store out: the one best on the other
stores' mean utility Spearman, scored on the store left out, the only choice a run could have
made without its own real runs. Results: benchmarks/RESULTS.md, "Merges that rank the
utility better: warps of the mixture and TIES".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from adam_merge import ValidationRun, load_validation_run, set_weights  # noqa: E402

from parammix_core.merge import linear_merge  # noqa: E402
from parammix_core.proxy_validation import real_scale_utility  # noqa: E402

State = dict[str, torch.Tensor]


def step_scales(moments: list[State]) -> np.ndarray:
    """c_k = sqrt of expert k's second moment averaged over every coordinate of the model."""
    means = [sum(v.sum() for v in m.values()) / sum(v.numel() for v in m.values()) for m in moments]
    return np.sqrt(np.array([float(x) for x in means]))


def warp(alpha: np.ndarray, scales: np.ndarray, gamma: float, power: float) -> np.ndarray:
    w = alpha**power * scales**gamma
    return w / w.sum()


def trim(tau: State, density: float) -> State:
    """Each tensor's largest `density` fraction of coordinates by magnitude; the rest zeroed."""
    out = {}
    for name, t in tau.items():
        k = max(1, round(density * t.numel()))
        threshold = t.abs().flatten().topk(k).values[-1]
        out[name] = torch.where(t.abs() >= threshold, t, torch.zeros_like(t))
    return out


def ties_merge(base: State, trimmed: list[State], alpha: np.ndarray, mean: bool) -> State:
    """TIES's elect and disjoint merge of trimmed task vectors with mixture weights alpha."""
    out = {}
    for name, b in base.items():
        deltas = torch.stack([t[name] for t in trimmed])
        w = torch.tensor(alpha, dtype=deltas.dtype).view(-1, *[1] * b.dim())
        weighted = deltas * w
        elected = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
        agree = deltas.sign() == elected
        mixed = (weighted * agree).sum(0)
        if mean:
            weight = (w * agree).sum(0)
            mixed = mixed / torch.where(weight.abs() < 1e-8, 1.0, weight)
        out[name] = b + mixed
    return out


def merges(run: ValidationRun, args: argparse.Namespace) -> dict[str, Callable]:
    """Each asked-for merge as a function of the mixture, by its printed name."""
    scales = step_scales(run.moments)
    shares = zip(run.exp.domains, scales / scales.sum(), strict=True)
    print("c_k / sum: " + ", ".join(f"{d} {s:.3f}" for d, s in shares))
    out = {}
    for spec in args.warp:
        gamma, power = map(float, spec.split(":"))
        out[f"warp {spec}"] = lambda a, g=gamma, p=power: linear_merge(
            run.base, run.states, warp(a, scales, g, p)
        )
    taus = [{n: e[n] - run.base[n] for n in run.base} for e in run.states] if args.ties else []
    for spec in args.ties:
        density, how = spec.split(":")
        trimmed = [trim(t, float(density)) for t in taus]
        out[f"ties {spec}"] = lambda a, t=trimmed, m=how == "mean": ties_merge(run.base, t, a, m)
    return out


def score(run: ValidationRun, merge: Callable[[np.ndarray], State]) -> list[dict[str, float]]:
    """The run's own evaluation of the merge of every validation mixture."""
    scored = []
    for alpha in run.alphas:
        set_weights(run.model, merge(alpha))
        scored.append(run.evaluator.evaluate())
    return scored


def spearmans(run: ValidationRun, scored: list[dict[str, float]]) -> dict[str, float]:
    """Against the real runs: the utility's (raw, and with each group mapped onto the real
    runs' scale leave one out as `search.utility.calibrate` does), the mean held-out loss's
    and each group's."""
    real, cols = run.real, run.cols
    utility = np.array([np.mean([m[c] for c in cols]) for m in scored])
    loss = -np.array([np.mean([m[c] for c in run.losses]) for m in scored])
    groups = {c: np.array([m[c] for m in scored]) for c in cols}
    mapped = real_scale_utility(groups, {c: real[c].to_numpy() for c in cols})
    return {
        "utility": float(spearmanr(utility, real[cols].mean(axis=1))[0]),
        "calibrated utility": float(spearmanr(mapped, real[cols].mean(axis=1))[0]),
        "loss": float(spearmanr(loss, -real[run.losses].mean(axis=1))[0]),
        **{c: float(spearmanr(v, real[c])[0]) for c, v in groups.items()},
    }


def trivial_rankings(run: ValidationRun) -> dict[str, dict[str, float]]:
    """What needs no merge: each domain's weight and the mixture's entropy, against the real
    runs' utility and mean held-out loss (the validation's trivial rankings, on the same runs)."""
    real = run.real
    truth = {"utility": real[run.cols].mean(axis=1), "loss": -real[run.losses].mean(axis=1)}
    a = np.clip(run.alphas, 1e-12, None)
    rankers = {f"alpha.{d}": run.alphas[:, k] for k, d in enumerate(run.exp.domains)}
    rankers["entropy"] = -(a * np.log(a)).sum(axis=1)
    return {
        name: {k: float(spearmanr(x, y)[0]) for k, y in truth.items()}
        for name, x in rankers.items()
    }


def measure(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    run = load_validation_run(args.store, args.config, args.set)
    result = {"store": args.store, "rho": {}, "trivial": trivial_rankings(run)}
    for name, rho in result["trivial"].items():
        print(f"trivial {name}: utility {rho['utility']:.3f}, loss {rho['loss']:.3f}")
    for name, merge in merges(run, args).items():
        scored = score(run, merge)
        rho = spearmans(run, scored)
        if name == "warp 0:1":  # today's linear merge: the stored rows are its scores
            diff = [
                abs(m[c] - row[c])
                for m, row in zip(scored, run.merged.to_dict("records"), strict=True)
                for c in run.cols
            ]
            rho["max_diff_vs_stored"] = max(diff)
        result["rho"][name] = rho
        print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in rho.items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


def summary(paths: list[str]) -> None:
    """Files of the same store (runs with other merges) count as one."""
    stores: dict[str, dict] = {}
    for path in paths:
        part = json.loads(Path(path).read_text())
        entry = stores.setdefault(part["store"], {"store": part["store"], "rho": {}, "trivial": {}})
        entry["rho"].update(part["rho"])
        entry["trivial"].update(part.get("trivial", {}))
    runs = list(stores.values())
    if len(runs) < 2:
        raise SystemExit("error: --summary needs the files of at least two stores")
    names = [n for n in runs[0]["rho"] if all(n in r["rho"] for r in runs)]
    print("| store | " + " | ".join(names) + " | left one out |")
    print("| --- |" + " ---: |" * (len(names) + 1))
    picked = []
    for i, r in enumerate(runs):
        others = [o for j, o in enumerate(runs) if j != i]
        best = max(names, key=lambda n: np.mean([o["rho"][n]["utility"] for o in others]))
        picked.append(r["rho"][best])
        cells = [f"{r['rho'][n]['utility']:.3f} / {r['rho'][n]['loss']:.3f}" for n in names]
        left = f"{best}: {r['rho'][best]['utility']:.3f} / {r['rho'][best]['loss']:.3f}"
        print(f"| {r['store']} | " + " | ".join(cells) + f" | {left} |")
    means = [
        f"{np.mean([r['rho'][n]['utility'] for r in runs]):.3f} / "
        f"{np.mean([r['rho'][n]['loss'] for r in runs]):.3f}"
        for n in names
    ]
    utility, loss = (np.mean([p[k] for p in picked]) for k in ("utility", "loss"))
    print("| mean | " + " | ".join(means) + f" | {utility:.3f} / {loss:.3f} |")
    for r in runs:
        if r["trivial"]:
            best = {
                k: max(r["trivial"].items(), key=lambda t, k=k: t[1][k])
                for k in ("utility", "loss")
            }
            print(
                f"best trivial ranking on {r['store']}: "
                + ", ".join(f"{k} {n} {v[k]:.3f}" for k, (n, v) in best.items())
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", help="a local store with a validation and _work")
    p.add_argument("--config", help="the run's experiment YAML (default: the embedded default)")
    p.add_argument("--set", action="append", default=[], help="the run's --set overrides")
    p.add_argument("--warp", nargs="*", default=["0:1", "0.5:1", "1:1", "1.5:1", "2:1"])
    p.add_argument("--ties", nargs="*", default=[], help="DENSITY:sum or DENSITY:mean")
    p.add_argument("--out", help="where to save this store's Spearmans (JSON)")
    p.add_argument("--summary", nargs="+", help="JSON files of several stores: pick a merge")
    args = p.parse_args()
    if args.summary:
        summary(args.summary)
    elif args.store:
        measure(args)
    else:
        p.error("give --store or --summary")


if __name__ == "__main__":
    main()
