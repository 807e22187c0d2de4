"""Peak memory of `streaming_merge` against model size, measured in fresh processes.

    python benchmarks/streaming_merge_rss.py [--experts 3] [--shard-mb 200] [--sizes 29M 134M]

For two random Llama checkpoint sets (about 29M and 134M parameters, float32, base + K experts,
built in a temporary directory and deleted after), each in its own process: the resident-set
peak of Python + torch + parammix_core imported and idle (the constant), of `streaming_merge`
writing sharded output, and of reading every input tensor once through `safetensors.safe_open`
(the library's memory-mapped reader, whole tensors one at a time: the floor for a merge that
holds a whole tensor). Goal: merge peak - idle <= 2 x largest tensor.
The merged tensors are checked bit for bit against `merge_tensor` on the whole tensors.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from random_checkpoints import parameter_count, run_measured, write_checkpoints
from safetensors import safe_open

from parammix_core.merge import merge_tensor

SIZES = {"29M": {"hidden": 512, "layers": 4, "vocab": 16000}, "134M": {}}

IDLE = "import torch, parammix_core.merge"
MERGE = """
import sys, time, torch
torch.set_num_threads(1)
from parammix_core.merge import streaming_merge
base, out, shard, *experts = sys.argv[1:]
alpha = [1 / len(experts)] * len(experts)
t0 = time.perf_counter()
streaming_merge(base, experts, alpha, out, max_shard_bytes=int(shard))
print(time.perf_counter() - t0)
"""
MMAP_READ = """
import sys
from safetensors import safe_open
for path in sys.argv[1:]:
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            del t
"""


def check(dirs: list[Path], out: Path) -> int:
    """Number of merged tensors equal bit for bit to merge_tensor on the whole inputs."""
    files = [safe_open(d / "model.safetensors", framework="pt") for d in dirs]
    alpha = np.full(len(dirs) - 1, 1 / (len(dirs) - 1))
    merged = {}
    for shard in sorted(out.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as f:
            merged.update({n: (shard, n) for n in f.keys()})  # noqa: SIM118
    equal = 0
    for name in files[0].keys():  # noqa: SIM118
        ts = [f.get_tensor(name) for f in files]
        with safe_open(merged[name][0], framework="pt") as f:
            equal += torch.equal(f.get_tensor(name), merge_tensor(name, ts[0], ts[1:], alpha))
    return equal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--shard-mb", type=int, default=200)
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    py = sys.executable
    _, idle, _ = run_measured([py, "-c", IDLE], env)
    print(f"idle process (python + torch + parammix_core.merge): {idle / 2**20:.0f} MiB")
    print(
        "| model | parameters | checkpoint | largest tensor | merge s | merge peak | "
        "peak - idle | / largest | mmap-read peak | tensors equal |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label in args.sizes:
        shape = SIZES[label]
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            dirs = write_checkpoints(Path(tmp), args.experts, **shape)
            params, largest = parameter_count(dirs)
            out = Path(tmp) / "merged"
            cmd = [py, "-c", MERGE, str(dirs[0]), str(out), str(args.shard_mb * 10**6)]
            _, peak, stdout = run_measured([*cmd, *map(str, dirs[1:])], env)
            files = [str(d / "model.safetensors") for d in dirs]
            _, mmap_peak, _ = run_measured([py, "-c", MMAP_READ, *files], env)
            equal = check(dirs, out)
            mib = 2**20
            print(
                f"| {label} | {params:,} | {params * 4 / mib:.0f} MiB | {largest / mib:.0f} MiB "
                f"| {float(stdout):.1f} | {peak / mib:.0f} MiB | {(peak - idle) / mib:.0f} MiB "
                f"| {(peak - idle) / largest:.2f} | {mmap_peak / mib:.0f} MiB "
                f"| {equal}/{len(list(safe_open(files[0], 'pt').keys()))} |"
            )
            shards = sorted(x.name for x in out.iterdir())
            print(f"  output: {len(shards)} files ({shards[0]} ... {shards[-1]})")


if __name__ == "__main__":
    main()
