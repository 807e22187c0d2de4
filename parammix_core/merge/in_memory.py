"""The hot path of the mixture fan-out: rewrite a live model to theta(alpha) in place.

The model's parameters become views into one contiguous buffer per dtype. Beside it lies one
(K+1, P) buffer whose first row is the base and whose other rows are the K task vectors, so a
candidate is one BLAS call per dtype:

    flat = rows.T @ [1, alpha]             # torch.mv, (P,) = (P, K+1) @ (K+1,)

No Python loop over parameters, no allocation, no disk. Folding the base into the product
(instead of `addmv(base, ...)`, which first copies the base into the output and then reads it
back) leaves the minimum memory traffic: K+1 rows read once, the output written once. The
(K+1, P) layout makes the product a column-major gemv that streams each row once; in half
precision it accumulates in float32 and rounds once. On CUDA the only transfer per candidate is
the K weights, staged in pinned memory and copied without blocking the host.
benchmarks/merge_bandwidth.py measures it against a plain copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from parammix_core import simplex
from parammix_core.merge.linear import MergeError, check_compatible, check_specs, specs_of


class _FlatGroup:
    """All parameters of one dtype: the live flat buffer and the base + task-vector rows."""

    def __init__(self, flat: torch.Tensor, stack: torch.Tensor) -> None:
        self.flat = flat  # (P,) the model's parameters are views into this
        self.stack = stack  # (K+1, P) the base, then one task vector per row
        self.weights = torch.ones(stack.shape[0], dtype=flat.dtype, device=flat.device)  # (K+1,)
        self.correction: torch.Tensor | None = None  # (M, P) optional directions


class InMemoryMerger:
    """Rewrites a live model's parameters to theta(alpha) in place, one `mv` per dtype.

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
        check_specs(specs_of(expected), specs_of(base), "base", ref_name="the model")
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
        # alpha is validated on the host; on CUDA it travels from pinned memory, asynchronously
        cuda = device.type == "cuda"
        self._alpha_host = torch.empty(len(experts), dtype=torch.float64, pin_memory=cuda)
        self._copied = torch.cuda.Event() if cuda else None

        self._groups: list[_FlatGroup] = []
        with torch.no_grad():
            for buffer in buffers:
                model.get_buffer(buffer).copy_(base[buffer])
            by_dtype: dict[torch.dtype, list[int]] = {}
            for i, p in params.items():
                by_dtype.setdefault(p.dtype, []).append(i)
            for dtype, ids in by_dtype.items():
                group = [params[i] for i in ids], [keys[i] for i in ids]
                self._groups.append(_flatten(*group, base, experts, dtype, device))

    @torch.no_grad()
    def apply(self, alpha: Sequence[float] | np.ndarray) -> None:
        """Set the model's parameters to theta(alpha); alpha: merge weights summing to 1, of
        any sign (`merge.replay.merge_weights` maps a data mixture to them)."""
        a = simplex.validate_affine(alpha, self.names)  # (K,) float64
        if self._copied is not None:
            self._copied.synchronize()  # the previous candidate's weights have left the buffer
        self._alpha_host.copy_(torch.from_numpy(a))
        for g in self._groups:
            g.weights[1:].copy_(self._alpha_host, non_blocking=True)  # weights[0] = 1: the base
        if self._copied is not None:
            self._copied.record()
        for g in self._groups:
            torch.mv(g.stack.T, g.weights, out=g.flat)  # flat = base + deltas.T @ alpha

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
        group.correction = vectors.to(group.flat).contiguous()  # (M, P)

    @torch.no_grad()
    def correct(self, weights: Sequence[float] | np.ndarray) -> None:
        """Add the correction directions with these weights (M,) to the current merge."""
        group = self._groups[0]
        if group.correction is None:
            raise MergeError("no correction set; call set_correction first")
        w = torch.as_tensor(np.asarray(weights), dtype=group.flat.dtype, device=group.flat.device)
        group.flat.addmv_(group.correction.T, w)  # flat += C.T @ w


def _flatten(
    params: list[torch.nn.Parameter],
    keys: list[str],
    base: Mapping[str, torch.Tensor],
    experts: Sequence[Mapping[str, torch.Tensor]],
    dtype: torch.dtype,
    device: torch.device,
) -> _FlatGroup:
    """Move `params` into one flat buffer and lay out the base and the task vectors beside it."""
    size = sum(p.numel() for p in params)
    flat = torch.empty(size, dtype=dtype, device=device)  # (P,)
    stack = torch.empty(len(experts) + 1, size, dtype=dtype, device=device)  # (K+1, P)
    offset = 0
    for p, key in zip(params, keys, strict=True):
        n = p.numel()
        b = base[key].to(device=device, dtype=torch.float64).reshape(-1)  # (n,)
        stack[0, offset : offset + n].copy_(b)
        for k, expert in enumerate(experts, start=1):
            delta = expert[key].to(device=device, dtype=torch.float64).reshape(-1) - b
            stack[k, offset : offset + n].copy_(delta)
        p.data = flat[offset : offset + n].view(p.shape)
        offset += n
    flat.copy_(stack[0])
    return _FlatGroup(flat, stack)
