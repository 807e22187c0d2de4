"""Linear merging of domain experts in parameter space.

    theta(alpha) = theta_base + sum_k alpha_k (theta_k - theta_base),   alpha on the simplex

Three ways to compute the same thing, for three jobs:

- `linear_merge`: the reference, on state dicts, per tensor in float64 (so a vertex gives its
  expert back exactly), cast back to each tensor's dtype.
- `InMemoryMerger`: the hot path of the mixture fan-out. The live model's parameters become
  views into one flat buffer per dtype, and a candidate costs one `torch.addmv` per dtype on the
  device: no Python loop over parameters, no allocation, no disk.
- `streaming_merge`: a merged checkpoint on disk for models too big to hold K+1 copies of,
  reading memory-mapped safetensors one tensor at a time and writing HF-style shards.

Only floating-point tensors are merged; anything else (rare integer buffers) must be equal in
the base and every expert and is copied.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from parammix_core import simplex

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

Spec = tuple[str, tuple[int, ...]]  # (dtype, shape) of one tensor


class MergeError(ValueError):
    """Models that cannot be merged; the message names the expert or file and the tensor."""


# --- the math -------------------------------------------------------------------------------


def _check_specs(
    ref: Mapping[str, Spec], other: Mapping[str, Spec], name: str, ref_name: str = "the base"
) -> None:
    missing = [n for n in ref if n not in other]
    if missing:
        raise MergeError(f"{name}: missing tensor(s) {_few(missing)}")
    extra = [n for n in other if n not in ref]
    if extra:
        raise MergeError(f"{name}: tensor(s) not in {ref_name}: {_few(extra)}")
    for tensor, (dtype, shape) in ref.items():
        o_dtype, o_shape = other[tensor]
        if o_shape != shape:
            raise MergeError(
                f"{name}: tensor {tensor!r} has shape {list(o_shape)}, {ref_name} has {list(shape)}"
            )
        if o_dtype != dtype:
            raise MergeError(
                f"{name}: tensor {tensor!r} has dtype {o_dtype}, {ref_name} has {dtype}"
            )


def _few(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def _specs(tensors: Mapping[str, torch.Tensor]) -> dict[str, Spec]:
    return {n: (str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in tensors.items()}


def check_compatible(
    base: Mapping[str, torch.Tensor], expert: Mapping[str, torch.Tensor], expert_name: str
) -> None:
    """Raise MergeError unless `expert` has exactly the base's tensor names, shapes and dtypes."""
    _check_specs(_specs(base), _specs(expert), expert_name)


def task_vector(
    base: Mapping[str, torch.Tensor], expert: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """expert - base per floating-point tensor, in float32 (float64 for float64 inputs)."""
    check_compatible(base, expert, "expert")
    out = {}
    for name, b in base.items():
        if b.is_floating_point():
            wide = torch.float64 if b.dtype == torch.float64 else torch.float32
            out[name] = expert[name].to(wide) - b.to(wide)
    return out


def _merge_tensor(
    name: str, base: torch.Tensor, experts: Sequence[torch.Tensor], alpha: np.ndarray
) -> torch.Tensor:
    """base + sum_k alpha_k (expert_k - base) in float64, cast back to the base's dtype."""
    if not base.is_floating_point():
        for k, e in enumerate(experts):
            if not torch.equal(e, base):
                raise MergeError(
                    f"tensor {name!r} ({base.dtype}) cannot be merged and differs between the "
                    f"base and expert {k}"
                )
        return base.clone()
    b = base.to(torch.float64)
    out = b.clone()
    for a, e in zip(alpha.tolist(), experts, strict=True):
        if a != 0.0:
            out.add_(e.to(torch.float64) - b, alpha=a)
    return out.to(base.dtype)


def linear_merge(
    base: Mapping[str, torch.Tensor],
    experts: Sequence[Mapping[str, torch.Tensor]],
    alpha: Sequence[float] | np.ndarray,
) -> dict[str, torch.Tensor]:
    """The reference merge of whole state dicts (every tensor on the CPU is fine)."""
    names = [f"expert {k}" for k in range(len(experts))]
    a = simplex.validate(alpha, names)
    for name, expert in zip(names, experts, strict=True):
        check_compatible(base, expert, name)
    return {n: _merge_tensor(n, b, [e[n] for e in experts], a) for n, b in base.items()}


# --- merging the live model in place ----------------------------------------------------------


class _FlatGroup:
    """All parameters of one dtype: the live flat buffer, the base and the task-vector stack."""

    def __init__(self, flat: torch.Tensor, base: torch.Tensor, stack: torch.Tensor) -> None:
        self.flat = flat  # (P,) the model's parameters are views into this
        self.base = base  # (P,)
        self.stack = stack  # (P, K) task vectors as columns
        self.alpha = torch.empty(stack.shape[1], dtype=flat.dtype, device=flat.device)  # (K,)
        self.correction: torch.Tensor | None = None  # (P, M) optional directions


class InMemoryMerger:
    """Rewrites a live model's parameters to theta(alpha) in place, one `addmv` per dtype.

    After construction the model holds the base weights, and its parameters are views into one
    contiguous buffer per dtype; do not move the model to another device or dtype afterwards.
    Memory: the model plus a base copy plus K task vectors, all on the model's device.

    Only parameters are merged. Persistent buffers must be equal in the base and every expert
    (they are copied from the base). A tied parameter is one coordinate; a state dict may list
    it under any of its names.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        base: Mapping[str, torch.Tensor],
        experts: Sequence[Mapping[str, torch.Tensor]],
        names: Sequence[str] | None = None,
    ) -> None:
        if not experts:
            raise MergeError("no experts to merge")
        if names is None:
            names = [f"expert {k}" for k in range(len(experts))]
        self.names = list(names)
        if len(self.names) != len(experts):
            raise MergeError(f"{len(self.names)} names for {len(experts)} experts")

        # parameters deduplicated by identity; a tied one may appear under any of its names
        aliases: dict[int, list[str]] = {}
        params: dict[int, torch.nn.Parameter] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(p), []).append(name)
            params[id(p)] = p
        keys = {i: next((n for n in group if n in base), group[0]) for i, group in aliases.items()}
        param_names = {n for group in aliases.values() for n in group}
        absent_aliases = {n for n in param_names if n not in base and n not in keys.values()}
        expected = {n: t for n, t in model.state_dict().items() if n not in absent_aliases}
        _check_specs(_specs(expected), _specs(base), "base", ref_name="the model")
        for name, expert in zip(self.names, experts, strict=True):
            check_compatible(base, expert, name)
        buffers = [n for n in expected if n not in param_names]
        for buffer in buffers:
            for name, expert in zip(self.names, experts, strict=True):
                if not torch.equal(expert[buffer], base[buffer]):
                    raise MergeError(
                        f"{name}: buffer {buffer!r} differs from the base; only parameters are "
                        "merged"
                    )

        devices = {p.device for p in params.values()}
        if len(devices) != 1:
            raise MergeError(f"model parameters are on several devices {sorted(map(str, devices))}")
        device = devices.pop()

        self._groups: list[_FlatGroup] = []
        with torch.no_grad():
            for buffer in buffers:
                model.get_buffer(buffer).copy_(base[buffer])
            by_dtype: dict[torch.dtype, list[int]] = {}
            for i, p in params.items():
                by_dtype.setdefault(p.dtype, []).append(i)
            for dtype, ids in by_dtype.items():
                group = [params[i] for i in ids], [keys[i] for i in ids]
                self._groups.append(self._flatten(*group, base, experts, dtype, device))

    @staticmethod
    def _flatten(
        params: list[torch.nn.Parameter],
        keys: list[str],
        base: Mapping[str, torch.Tensor],
        experts: Sequence[Mapping[str, torch.Tensor]],
        dtype: torch.dtype,
        device: torch.device,
    ) -> _FlatGroup:
        size = sum(p.numel() for p in params)
        flat = torch.empty(size, dtype=dtype, device=device)  # (P,)
        base_flat = torch.empty_like(flat)  # (P,)
        stack = torch.empty(size, len(experts), dtype=dtype, device=device)  # (P, K)
        offset = 0
        for p, key in zip(params, keys, strict=True):
            n = p.numel()
            b = base[key].to(device=device, dtype=torch.float64).reshape(-1)  # (n,)
            base_flat[offset : offset + n].copy_(b)
            for k, expert in enumerate(experts):
                delta = expert[key].to(device=device, dtype=torch.float64).reshape(-1) - b
                stack[offset : offset + n, k].copy_(delta)
            p.data = flat[offset : offset + n].view(p.shape)
            offset += n
        flat.copy_(base_flat)
        return _FlatGroup(flat, base_flat, stack)

    @torch.no_grad()
    def apply(self, alpha: Sequence[float] | np.ndarray) -> None:
        """Set the model's parameters to theta(alpha); alpha must lie on the simplex."""
        a = torch.from_numpy(simplex.validate(alpha, self.names))  # (K,) float64, CPU
        for g in self._groups:
            g.alpha.copy_(a)
            torch.addmv(g.base, g.stack, g.alpha, out=g.flat)  # flat = base + stack @ alpha

    def set_correction(self, vectors: torch.Tensor) -> None:
        """M correction directions (M, P), in `named_parameters()` order (tied ones once).

        `correct(weights)` then adds vectors.T @ weights to the merged weights: the
        curvature-corrected proxy theta(alpha) + Delta(alpha) is one more `addmv`.
        """
        if len(self._groups) != 1:
            raise MergeError("a correction needs a model whose parameters share one dtype")
        group = self._groups[0]
        if vectors.ndim != 2 or vectors.shape[1] != group.flat.numel():
            raise MergeError(
                f"correction vectors have shape {tuple(vectors.shape)}; "
                f"expected (M, {group.flat.numel()})"
            )
        group.correction = vectors.to(group.flat).T.contiguous()  # (P, M)

    @torch.no_grad()
    def correct(self, weights: Sequence[float] | np.ndarray) -> None:
        """Add the correction directions with these weights (M,) to the current merge."""
        group = self._groups[0]
        if group.correction is None:
            raise MergeError("no correction set; call set_correction first")
        w = torch.as_tensor(np.asarray(weights), dtype=group.flat.dtype, device=group.flat.device)
        group.flat.addmv_(group.correction, w)  # flat += C @ w


# --- merging checkpoints on disk --------------------------------------------------------------


class _LazyCheckpoint:
    """The tensors of a safetensors file or HF checkpoint dir, read one at a time (mmap)."""

    def __init__(self, path: Path, files: ExitStack) -> None:
        self.path = path
        self._files = files
        self._handles: dict[Path, object] = {}
        self.locations = self._locate(path)  # tensor name -> file

    @staticmethod
    def _locate(path: Path) -> dict[str, Path]:
        if path.is_dir():
            index = path / INDEX_NAME
            if index.is_file():
                try:
                    weight_map = json.loads(index.read_text())["weight_map"]
                except (ValueError, KeyError) as err:
                    raise MergeError(f"{index}: not a valid safetensors index ({err})") from None
                return {name: path / file for name, file in weight_map.items()}
            if not (path / SINGLE_NAME).is_file():
                raise MergeError(f"{path}: neither {SINGLE_NAME} nor {INDEX_NAME} found")
            path = path / SINGLE_NAME
        elif not path.is_file():
            raise MergeError(f"{path}: no such file or directory")
        try:
            with safe_open(path, framework="pt") as f:
                return dict.fromkeys(f.keys(), path)
        except SafetensorError as err:
            raise MergeError(f"{path}: not a readable safetensors file ({err})") from None

    def _handle(self, file: Path):
        if file not in self._handles:
            try:
                self._handles[file] = self._files.enter_context(safe_open(file, framework="pt"))
            except (SafetensorError, OSError) as err:
                raise MergeError(f"{file}: cannot open ({err})") from None
        return self._handles[file]

    def specs(self) -> dict[str, Spec]:
        out = {}
        for name, file in self.locations.items():
            try:
                s = self._handle(file).get_slice(name)
            except SafetensorError as err:
                raise MergeError(f"{file}: tensor {name!r} not found ({err})") from None
            out[name] = (s.get_dtype(), tuple(s.get_shape()))
        return out

    def get(self, name: str) -> torch.Tensor:
        return self._handle(self.locations[name]).get_tensor(name)


def streaming_merge(
    base_path: Path,
    expert_paths: Sequence[Path],
    alpha: Sequence[float] | np.ndarray,
    out_dir: Path,
    max_shard_bytes: int = 2**30,
) -> Path:
    """Write theta(alpha) as a HF checkpoint in `out_dir`, one tensor in memory at a time.

    Inputs are safetensors files or HF checkpoint dirs (single or sharded). The output is
    `model.safetensors`, or `model-0000i-of-0000n.safetensors` shards of at most
    `max_shard_bytes` (a bigger tensor gets a shard of its own) plus `model.safetensors.index.json`;
    `config.json` is copied from a base dir. It is built in a temporary sibling directory and
    renamed, so `out_dir` never holds a partial merge. Peak memory: one shard plus one tensor
    per input. Returns out_dir.
    """
    base_path, out_dir = Path(base_path), Path(out_dir)
    expert_paths = [Path(p) for p in expert_paths]
    if not expert_paths:
        raise MergeError("no experts to merge")
    a = simplex.validate(alpha, [str(p) for p in expert_paths])
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MergeError(f"{out_dir}: output exists and is not an empty directory")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)

    with ExitStack() as files:
        base = _LazyCheckpoint(base_path, files)
        experts = [_LazyCheckpoint(p, files) for p in expert_paths]
        base_specs = base.specs()
        for expert in experts:
            _check_specs(base_specs, expert.specs(), str(expert.path))
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
    base: _LazyCheckpoint,
    experts: list[_LazyCheckpoint],
    alpha: np.ndarray,
    max_shard_bytes: int,
) -> None:
    """Merge tensor by tensor into shards of at most max_shard_bytes, then name them."""
    shards: list[list[str]] = []  # tensor names per written shard
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = total_bytes = 0
    for name in base.locations:
        merged = _merge_tensor(name, base.get(name), [e.get(name) for e in experts], alpha)
        size = merged.numel() * merged.element_size()
        if shard and shard_bytes + size > max_shard_bytes:
            _write_shard(out, len(shards), shard)
            shards.append(list(shard))
            shard, shard_bytes = {}, 0
        shard[name] = merged
        shard_bytes += size
        total_bytes += size
    _write_shard(out, len(shards), shard)
    shards.append(list(shard))
    _name_shards(out, shards, total_bytes)


def _write_shard(out: Path, index: int, tensors: dict[str, torch.Tensor]) -> None:
    safetensors.torch.save_file(tensors, out / f"shard-{index:05d}", metadata={"format": "pt"})


def _name_shards(out: Path, shards: list[list[str]], total_bytes: int) -> None:
    """Give the shards their HF names now that their count is known; index them if several."""
    if len(shards) == 1:
        os.replace(out / "shard-00000", out / SINGLE_NAME)
        return
    weight_map = {}
    for i, names in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        os.replace(out / f"shard-{i:05d}", out / file)
        weight_map.update(dict.fromkeys(names, file))
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (out / INDEX_NAME).write_text(json.dumps(index, indent=2))
