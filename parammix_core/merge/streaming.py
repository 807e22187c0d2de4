"""A merged checkpoint on disk for models too big to hold K+1 copies of.

Reads safetensors slices of at most CHUNK_ELEMENTS elements from the base and each expert,
merges them with the reference arithmetic (`merge_tensor`, elementwise, so the result equals
`linear_merge` bit for bit) and appends them to the output shard, whose header was written
up front. Peak memory is a constant (a few slices in float64, ~35 MiB over the idle process),
whatever the tensor sizes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from parammix_core import simplex
from parammix_core.merge.linear import MergeError, check_specs, merge_tensor
from parammix_core.merge.safetensors_files import (
    INDEX_NAME,
    Checkpoint,
    ShardWriter,
    nbytes,
    numel,
    plan_shards,
    shard_file_names,
)

CHUNK_ELEMENTS = 1 << 18  # per input slice: 2 MiB in float64; the peak is a few of these


def streaming_merge(
    base_path: Path,
    expert_paths: Sequence[Path],
    alpha: Sequence[float] | np.ndarray,
    out_dir: Path,
    max_shard_bytes: int = 2**30,
) -> Path:
    """Write theta(alpha) as a HF checkpoint in `out_dir`, one slice of a tensor at a time;
    alpha: merge weights summing to 1, of any sign.

    Inputs are safetensors files or HF checkpoint dirs (single or sharded). The output is
    `model.safetensors`, or `model-0000i-of-0000n.safetensors` shards of at most
    `max_shard_bytes` (a bigger tensor gets a shard of its own) plus `model.safetensors.index.json`;
    `config.json` is copied from a base dir. It is built in a temporary sibling directory and
    renamed, so `out_dir` never holds a partial merge. Returns out_dir.
    """
    base_path, out_dir = Path(base_path), Path(out_dir)
    expert_paths = [Path(p) for p in expert_paths]
    if not expert_paths:
        raise MergeError("no experts to merge")
    a = simplex.validate_affine(alpha, [str(p) for p in expert_paths])
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MergeError(f"{out_dir}: output exists and is not an empty directory")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)

    with ExitStack() as files:
        base = Checkpoint(base_path, files)
        experts = [Checkpoint(p, files) for p in expert_paths]
        for expert in experts:
            check_specs(base.specs(), expert.specs(), str(expert.path))
        tmp.mkdir(parents=True)
        try:
            _write_merged(tmp, base, experts, a, max_shard_bytes)
            if base_path.is_dir() and (base_path / "config.json").is_file():
                shutil.copy2(base_path / "config.json", tmp / "config.json")
            os.replace(tmp, out_dir)  # an empty out_dir is replaced atomically
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out_dir


def _write_merged(
    out: Path,
    base: Checkpoint,
    experts: list[Checkpoint],
    alpha: np.ndarray,
    max_shard_bytes: int,
) -> None:
    """Merge slice by slice into the planned shards; index them if there are several."""
    specs = base.specs()
    shards = plan_shards(specs, max_shard_bytes)
    files = shard_file_names(len(shards))
    for file, names in zip(files, shards, strict=True):
        with ShardWriter(out / file, {n: specs[n] for n in names}) as writer:
            for name in names:
                size = numel(specs[name][1])
                for start in range(0, size, CHUNK_ELEMENTS):
                    count = min(CHUNK_ELEMENTS, size - start)
                    slices = [e.read(name, start, count) for e in experts]
                    writer.write(merge_tensor(name, base.read(name, start, count), slices, alpha))
    if len(shards) > 1:
        weight_map = {n: file for file, names in zip(files, shards, strict=True) for n in names}
        total = sum(nbytes(s) for s in specs.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / INDEX_NAME).write_text(json.dumps(index, indent=2))
