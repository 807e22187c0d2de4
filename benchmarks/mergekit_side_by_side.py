"""`streaming_merge` beside mergekit's linear merge on the same random checkpoints.

    python benchmarks/mergekit_side_by_side.py --mergekit ~/mergekit-venv/bin/mergekit-yaml

mergekit lives in its own scratch venv (it pins its own transformers), never in the project's:
    python3.11 -m venv ~/mergekit-venv
    ~/mergekit-venv/bin/pip install torch==2.13.0 mergekit   # 0.1.5 tested

A random 134M-parameter Llama base and 3 experts (float32 safetensors, built in a temporary
folder and deleted after) are merged with alpha = (0.2, 0.3, 0.5) by both tools, each in a fresh
process with one thread: wall time of the whole process, resident-set peak, and the max
|difference| between the two outputs, tensor by tensor. mergekit's `linear` computes
sum_k w_k theta_k / sum_k w_k, which equals theta_base + sum_k alpha_k (theta_k - theta_base)
on the simplex.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from random_checkpoints import (
    mergekit_version,
    parameter_count,
    run_measured,
    write_checkpoints,
)
from safetensors import safe_open

ALPHA = (0.2, 0.3, 0.5)
OURS = """
import sys, torch
torch.set_num_threads(1)
from parammix_core.merge import streaming_merge
base, out, *experts = sys.argv[1:]
streaming_merge(base, experts, [0.2, 0.3, 0.5], out)
"""


def tensors_of(out: Path) -> dict[str, Path]:
    files = {}
    for shard in sorted(out.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as f:
            files.update(dict.fromkeys(f.keys(), shard))
    return files


def max_difference(a: Path, b: Path) -> tuple[float, int]:
    """Max |a - b| over all tensors, and how many tensors differ at all."""
    fa, fb = tensors_of(a), tensors_of(b)
    if fa.keys() != fb.keys():
        raise SystemExit(f"different tensor names: {sorted(fa.keys() ^ fb.keys())[:5]}")
    worst, differing = 0.0, 0
    for name in fa:
        with safe_open(fa[name], "pt") as x, safe_open(fb[name], "pt") as y:
            d = (x.get_tensor(name).double() - y.get_tensor(name).double()).abs().max().item()
        worst = max(worst, d)
        differing += d > 0
    return worst, differing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--mergekit",
        default=shutil.which("mergekit-yaml"),
        help="mergekit's mergekit-yaml (default: the one on PATH)",
    )
    args = p.parse_args()
    if args.mergekit is None or not Path(args.mergekit).is_file():
        raise SystemExit(
            "error: --mergekit: no mergekit-yaml found; install mergekit in a venv of its own "
            "(see the top of this file) and pass its bin/mergekit-yaml"
        )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dirs = write_checkpoints(root, len(ALPHA))
        params, largest = parameter_count(dirs)
        config = root / "linear.yml"
        models = "".join(
            f"  - model: {d}\n    parameters: {{weight: {a}}}\n"
            for d, a in zip(dirs[1:], ALPHA, strict=True)
        )
        config.write_text(f"merge_method: linear\nmodels:\n{models}dtype: float32\n")

        ours_cmd = [
            sys.executable,
            "-c",
            OURS,
            str(dirs[0]),
            str(root / "ours"),
            *map(str, dirs[1:]),
        ]
        ours_s, ours_peak, _ = run_measured(ours_cmd, env)
        mk_cmd = [args.mergekit, str(config), str(root / "mk"), "--no-copy-tokenizer", "--quiet"]
        mk_s, mk_peak, _ = run_measured(mk_cmd, env)
        worst, differing = max_difference(root / "ours", root / "mk")
        total = len(tensors_of(root / "ours"))

    mib = 2**20
    print(f"checkpoints: random Llama, {params:,} parameters, float32, {params * 4 / mib:.0f} MiB")
    print(
        f"each (base + {len(ALPHA)} experts); largest tensor {largest / mib:.0f} MiB; alpha {ALPHA}"
    )
    print("| tool | wall time (process) | peak RSS |")
    print("| --- | ---: | ---: |")
    print(f"| parammix streaming_merge | {ours_s:.1f} s | {ours_peak / mib:.0f} MiB |")
    version = mergekit_version(args.mergekit)
    print(f"| mergekit {version} linear | {mk_s:.1f} s | {mk_peak / mib:.0f} MiB |")
    print(f"mergekit/ours: time {mk_s / ours_s:.2f}x, peak RSS {mk_peak / ours_peak:.2f}x")
    print(f"max |ours - mergekit|: {worst:.2e} over {total} tensors ({differing} differ at all)")
    print(f"float32 spacing at 1.0: {torch.finfo(torch.float32).eps:.2e}")


if __name__ == "__main__":
    main()
