"""The reference linear merge of state dicts, and the compatibility checks every path shares.

    theta(w) = theta_base + sum_k w_k (theta_k - theta_base),   sum_k w_k = 1

w is a data mixture's merge weights (`merge.replay`): on the simplex for experts trained on
one domain each, possibly below zero (an extrapolation) for experts that replay every domain.

Computed per tensor in float64, so a vertex gives its expert back exactly, then cast back to
each tensor's dtype. Only floating-point tensors are merged; anything else (rare integer
buffers) must be equal in the base and every expert and is copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from parammix_core import simplex

Spec = tuple[str, tuple[int, ...]]  # (dtype, shape) of one tensor


class MergeError(ValueError):
    """Models that cannot be merged; the message names the expert or file and the tensor."""


def check_specs(
    ref: Mapping[str, Spec], other: Mapping[str, Spec], name: str, ref_name: str = "the base"
) -> None:
    """Raise MergeError naming `name` and the tensor unless both have the same names and specs."""
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


def specs_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, Spec]:
    return {n: (str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in tensors.items()}


def check_compatible(
    base: Mapping[str, torch.Tensor], expert: Mapping[str, torch.Tensor], expert_name: str
) -> None:
    """Raise MergeError unless `expert` has exactly the base's tensor names, shapes and dtypes."""
    check_specs(specs_of(base), specs_of(expert), expert_name)


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


def merge_tensor(
    name: str, base: torch.Tensor, experts: Sequence[torch.Tensor], alpha: np.ndarray
) -> torch.Tensor:
    """base + sum_k alpha_k (expert_k - base) in float64, cast back to the base's dtype.

    Elementwise, so merging a tensor chunk by chunk gives the same bits as merging it whole.
    """
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
    """The reference merge of whole state dicts (every tensor on the CPU is fine); `alpha`:
    merge weights summing to 1, of any sign."""
    names = [f"expert {k}" for k in range(len(experts))]
    a = simplex.validate_affine(alpha, names)
    for name, expert in zip(names, experts, strict=True):
        check_compatible(base, expert, name)
    return {n: merge_tensor(n, b, [e[n] for e in experts], a) for n, b in base.items()}
