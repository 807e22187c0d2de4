"""Which settings make merge scores rank mixtures as real mixed training does?

Each sweep point changes one setting of the embedded default, trains K experts and real mixed
runs (validation.n_mixtures non-vertex mixtures, validation.reruns of them again with another
data order) from the base, and prints the rank agreement of the proxy with the real runs on the
utility (non-vertex mixtures), its noise ceiling (mix vs rerun) and the trivial rankings
(entropy of alpha, alpha-weighted experts). Bases are shared between points with the same base
length and model size (the store is content-addressed). Points at `metrics=all` also score the
lm-eval benchmarks (utility = mean of the group scores, as the search uses); the others only
held-out loss (utility = mean loss over domains, far cheaper). Every point also scores the
norm-matched merge ("rescaled"); with the probe on, the merge corrected by the fitted step scale
(leave-one-out) too. The held-out blocks are re-averaged over 1/8, 1/2 and all of the set to show
what evaluation-set noise does to the ranking.

    python benchmarks/proxy_sweep.py --store sweep-store --out sweep.jsonl \
        [--points default,T40,...]

One JSON line per point goes to --out (appended; finished points are skipped on a rerun).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from parammix_core import proxy_validation, ranking, stages
from parammix_core.config import Experiment
from parammix_core.stages import validate
from parammix_core.stages.mixed import mixed_ref, train_mixed
from parammix_core.stages.validation_table import load_validation

# Points without a base length of their own (base1800/3600, wide1800) start from SWEEP_BASE, the
# 600-step base pre-training the embedded default had when the sweep ran; base1800 ranked best
# and became the default.
# experts on their domain alone (training.replay 0), as when the sweep was measured
SWEEP_BASE = {"training": {"base": {"steps": 600}, "replay": 0.0}}
WIDE = {"hidden_size": 192, "intermediate_size": 512, "num_heads": 4}
# name -> (overrides of SWEEP_BASE + the embedded default, score benchmarks too, probe)
POINTS: dict[str, tuple[dict, bool, bool]] = {
    "default": ({}, False, True),
    "default-s1": ({"seed": 1}, False, True),
    "bench": ({}, True, False),
    "T40": ({"training": {"expert": {"steps": 40}}}, False, False),
    "lr3e-3": ({"training": {"expert": {"lr": 3e-3}}}, False, False),
    "cosine": ({"training": {"expert": {"schedule": "cosine"}}}, False, False),
    "cosine-s1": ({"seed": 1, "training": {"expert": {"schedule": "cosine"}}}, False, False),
    "base1800": ({"training": {"base": {"steps": 1800}}}, False, False),
    "base1800-s1": ({"seed": 1, "training": {"base": {"steps": 1800}}}, False, False),
    "base1800-s2": ({"seed": 2, "training": {"base": {"steps": 1800}}}, False, False),
    "base1800-s3": ({"seed": 3, "training": {"base": {"steps": 1800}}}, False, False),
    "base3600": ({"training": {"base": {"steps": 3600}}}, False, False),
    "base3600-s1": ({"seed": 1, "training": {"base": {"steps": 3600}}}, False, False),
    "T40-s1": ({"seed": 1, "training": {"expert": {"steps": 40}}}, False, False),
    "lr3e-3-s1": ({"seed": 1, "training": {"expert": {"lr": 3e-3}}}, False, False),
    "T40-lr3e-3": ({"training": {"expert": {"steps": 40, "lr": 3e-3}}}, False, False),
    "T360": ({"training": {"expert": {"steps": 360}}}, False, False),
    "wide": ({"model": WIDE}, False, False),
    "wide1800": ({"model": WIDE, "training": {"base": {"steps": 1800}}}, False, False),
    "wide1800-s1": (
        {"seed": 1, "model": WIDE, "training": {"base": {"steps": 1800}}},
        False,
        False,
    ),
}
# Seed points that keep the seed-0 data and base: the spread of expert and mixed-run data orders
# and of the validation mixtures, without pre-training a second base.
SHARED_BASE = {
    "T40-s1",
    "default-s1",
    "cosine-s1",
    "base1800-s1",
    "base1800-s2",
    "base1800-s3",
    "base3600-s1",
}
EVAL_FRACTIONS = (0.125, 0.5, 1.0)  # share of the held-out blocks: evaluation-set noise


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def experiment(name: str, store: str) -> Experiment:
    over, full, probe = POINTS[name]
    data = Experiment().model_dump(mode="json")
    data = _merge(_merge(data, SWEEP_BASE), over)
    data = _merge(
        data,
        {
            "store": {"url": store},
            "probe": {"enabled": probe},
            "validation": {"metrics": "all" if full else "loss", "rescaled": True},
        },
    )
    return Experiment.model_validate(data)


def run_point(name: str, store_url: str) -> dict:
    exp = experiment(name, store_url)
    store = stages.open_store(exp)
    start = time.perf_counter()
    upstream = exp.model_copy(update={"seed": 0}) if name in SHARED_BASE else exp
    data = stages.prepare_domains(upstream, store)
    base = stages.build_base(upstream, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    probe = (
        stages.interference_probe(exp, store, data, base, experts) if exp.probe.enabled else None
    )
    mixtures = validate.validation_mixtures(exp)
    plan = validate.run_plan(exp, len(mixtures))
    runs = [train_mixed(exp, store, mixtures[i], s, data, base) for i, s in plan]
    ref = validate.validate_proxy(exp, store, mixtures, runs, data, base, experts, probe)
    info = load_validation(store, ref)
    out = {"point": name, "seconds": time.perf_counter() - start, "analysis": info["analysis"]}
    out["step_scale_fit"] = info["step_scale_fit"]
    out["eval_size"] = _eval_size(exp, store, ref)
    return out


def _eval_size(exp: Experiment, store, ref) -> dict[str, dict[str, float]]:
    """Mean-loss ranking on the first fraction of the held-out blocks (noise of a smaller set)."""
    rows = store.load_parquet(ref, "rows.parquet")
    blocks = load_file(store.local_dir(ref) / "heldout_blocks.safetensors")
    out = {}
    for fraction in EVAL_FRACTIONS:
        frame = rows.copy()
        for d in exp.domains:
            b = blocks[d]  # (rows, N)
            n = max(1, round(fraction * b.shape[1]))
            frame[f"loss.{d}"] = b[:, :n].double().mean(dim=1).numpy()
        a = proxy_validation.analyse(frame, exp.domains, [])["mean_loss"]
        out[str(fraction)] = {
            "merge": a["proxy"]["merge"]["spearman"],
            "ceiling": a.get("ceiling", {}).get("spearman", float("nan")),
            "entropy": a["baselines"]["entropy"]["spearman"],
        }
    return out


def _fmt(v) -> str:
    return "  n/a" if v is None or not np.isfinite(v) else f"{v:5.2f}"


def summary(result: dict) -> str:
    lines = []
    for metric in ("utility", "mean_loss"):
        a = result["analysis"].get(metric)
        if a is None:
            continue
        proxy = a["proxy"]
        base = a["baselines"]
        lines.append(
            f"{result['point']:<11} {metric:<9} merge {_fmt(proxy['merge']['spearman'])}"
            f"  corrected {_fmt(proxy.get('corrected', {}).get('spearman'))}"
            f"  rescaled {_fmt(proxy.get('rescaled', {}).get('spearman'))}"
            f"  ceiling {_fmt(a.get('ceiling', {}).get('spearman'))}"
            f"  entropy {_fmt(base['entropy']['spearman'])}"
            f"  interp {_fmt(base['expert_interpolation']['spearman'])}"
            f"  gap {proxy['merge']['gap']:+.4f}  ({result['seconds']:.0f} s)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--correction", help="measure the probe's correction on this point")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.correction:
        print(json.dumps(correction(args.correction, args.store)), flush=True)
        return
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {json.loads(line)["point"] for line in out.read_text().splitlines() if line}
    print(f"torch {torch.__version__}; 1 thread; points {args.points}", flush=True)
    for name in args.points.split(","):
        if name in done:
            continue
        result = run_point(name, args.store)
        with out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(summary(result), flush=True)


def correction(name: str, store_url: str) -> dict:
    """The second-order correction measured on a finished point whose probe was off: probe at
    the base, least-squares step scale of the mixed runs' gaps onto d(alpha), and the mean-loss
    ranking of the merge corrected with the leave-one-out scale (held-out loss only; the merge
    and mixed-run scores are read from the point's validation rows)."""
    exp = experiment(name, store_url)
    store = stages.open_store(exp)
    upstream = exp.model_copy(update={"seed": 0}) if name in SHARED_BASE else exp
    data = stages.prepare_domains(upstream, store)
    base = stages.build_base(upstream, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    mixtures = validate.validation_mixtures(exp)
    plan = validate.run_plan(exp, len(mixtures))
    runs = [mixed_ref(exp, mixtures[i], s, data, base) for i, s in plan]
    ref = validate.validation_ref(exp, mixtures, runs, data, base, experts, None)
    table = store.load_parquet(ref, "rows.parquet")
    table["mean_loss"] = table[[f"loss.{d}" for d in exp.domains]].mean(axis=1)
    probed = exp.model_copy(update={"probe": exp.probe.model_copy(update={"enabled": True})})
    probe = stages.interference_probe(probed, store, data, base, experts)
    alphas = [np.asarray(m) for m in mixtures]
    scorer = validate._Scorer(exp, store, data, base, experts, None)
    direction = validate._directions(store, probe, alphas, exp.training.replay)
    rows = []
    for i, alpha in enumerate(alphas):
        scorer.plain(alpha)
        merge = validate.flat_params(scorer.model).clone()
        scorer.load(store.load_tensors(runs[i], "model.safetensors"))
        gap = (validate.flat_params(scorer.model) - merge).double()
        d = direction[i].double()
        rows.append(
            {
                "kind": "mix",
                "mixture": i,
                "gap_dot": float(gap @ d),
                "dir_sq": float(d @ d),
                "gap_norm": float(gap.norm()),
            }
        )
    fit = validate._fit_scale(store, probe, rows, alphas, exp.training.replay)
    corrected = []
    for i, alpha in enumerate(alphas):
        scorer.plain(alpha)
        with torch.no_grad():
            validate._add_flat(scorer.model, fit["loo_scale"][i] * direction[i])
        corrected.append(float(np.mean([v.mean() for v in scorer.score()[1].values()])))
    kind = table.set_index(["kind", "mixture"])["mean_loss"]
    mix = [-kind["mix", i] for i in range(len(alphas))]
    merged = [-kind["merge", i] for i in range(len(alphas))]
    return {
        "point": name,
        "fit": {k: v for k, v in fit.items() if k != "loo_scale"},
        "mean_loss_merge": ranking.spearman(merged, mix),
        "mean_loss_corrected": ranking.spearman([-c for c in corrected], mix),
        "corrected_gap": float(np.mean(corrected) + np.mean(mix)),
    }


if __name__ == "__main__":
    main()
