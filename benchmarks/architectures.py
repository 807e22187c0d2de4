"""Every stage of a micro experiment on each architecture family: wall time and merge error.

    python benchmarks/architectures.py [--families llama,mixtral] [--threads 1]

Per family (dense Llama, Qwen2 with tied embeddings, GPT-NeoX; sparse MoE Mixtral, Qwen2-MoE,
OLMoE) a random checkpoint of 0.1-0.2 M parameters is written beside a 384-token tokenizer and
driven through prepare_domains, build_base, train_expert (3 domains), merge_and_evaluate (6
mixtures, 2 lm-eval tasks + held-out loss), interference_probe and one final run, exactly as
tests/parammix_core/test_architectures.py does (the same helpers: the repository root goes on
`sys.path`). Printed per family: parameters, each stage's seconds, and the largest error of the
in-memory merge over every mixture and every tensor of the checkpoint (routers and each routed
expert included) against theta_base + sum_k alpha_k (theta_k - theta_base) computed in float64
from the raw files: relative (||merged - ref|| / ||ref|| per tensor) and absolute.

The built-in lm-eval task folder is written once before the first family and not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.parammix_core.architectures import (
    FAMILIES,
    MicroRun,
    live_merges,
    micro_suite,
    micro_tokenizer,
    reference_merge,
    rel_err,
    run_stages,
)

STAGES = ("data", "base", "experts", "evaluate", "probe", "final")


def merge_errors(run: MicroRun, out: Path) -> tuple[float, float]:
    """(max relative, max absolute) error of every merged tensor over every mixture."""
    worst_rel = worst_abs = 0.0
    for alpha, merged in live_merges(run, out):
        for name, ref in reference_merge(run, alpha).items():
            worst_rel = max(worst_rel, rel_err(merged[name], ref))
            worst_abs = max(worst_abs, float((merged[name].double() - ref).abs().max()))
    return worst_rel, worst_abs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    families = args.families.split(",")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        p.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        tok, suite = micro_tokenizer(), micro_suite(root / "tasks")
        print(f"tokenizer + task folder: {time.perf_counter() - start:.1f} s (not counted)")
        header = ["family", "params", *STAGES, "total s", "merge max rel", "max abs"]
        print(" | ".join(header))
        for family in families:
            run = run_stages(family, root / family, tok, suite)
            rel, abs_ = merge_errors(run, root / f"{family}-merges")
            params = sum(t.numel() for t in run.written.parameters())
            cells = [family, f"{params:,}", *(f"{run.seconds[s]:.2f}" for s in STAGES)]
            cells += [f"{sum(run.seconds.values()):.1f}", f"{rel:.1e}", f"{abs_:.1e}"]
            print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
