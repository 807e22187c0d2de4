"""Gradients and Hessian-vector products of a causal LM's loss, on one flat parameter vector.

Why flat: the interference probe needs inner products and linear combinations of whole-model
vectors (g_k, H_k g_j), so every vector here is one tensor of shape (P,) in
`model.named_parameters()` order (tied parameters once). `unflatten` turns such a vector back
into views keyed by parameter name for `torch.func.functional_call`.

Two HVP kernels, never materialising a Hessian:

- forward_over_reverse: `jvp` of `torch.func.grad` of the loss, batched over the V vectors
  with `vmap` (in chunks of `chunk_size` to bound memory). One forward+backward pass carries
  all tangents.
- double_backward: one backward pass with `create_graph=True`, then one more backward per
  vector through that kept graph. It differentiates with respect to the parameters' own
  storage (detached aliases, so neither the model nor `.grad` is touched) and writes each
  parameter's piece of the result into the flat output: no flat copy of the parameters and
  no concatenated gradient, two (P,) tensors fewer than differentiating a flat vector (the
  gradient likewise).

Both do the same matmul work: per linear layer 9 matmuls for the first vector (forward,
tangent forward 2, backward 2, tangent backward 4) and 6 for each further one, against 3 for
a gradient; `benchmarks/hvp.py` counts the FLOPs (one HVP = 3.1-3.4 gradients on its two
models, four sequential HVPs = 1.33 batched ones of four). What differs is the elementwise
work: under torch.profiler the forward-mode formulas spend about twice as long in small
mul/add/sub ops, where the backward-of-backward calls fused kernels such as
`_log_softmax_backward_data` and `_softmax_backward_data`. So "auto" is device-aware: on the
CPU it runs double backward first (against forward-over-reverse it took 24% less CPU time
for one vector and 34% less for a batch of four on the default model, 2% and 9% less on a 27M
one, and half or less of the memory for the batch); elsewhere (CUDA) forward-over-reverse
first, whose vmapped tangents make large batched kernels (an unmeasured choice: no GPU
here). Either way it falls back to the other kernel if the first raises, logs which ran, and
`HVPResult.method` says it too.

PyTorch's CPU flash-attention kernel has neither forward-mode AD nor a double backward, so a
model using SDPA runs both kernels with transformers' eager attention (the same arithmetic as
the MATH backend, switched on that model only; checked with torch 2.13: with flash, jvp raises
NotImplementedError, double backward RuntimeError). Likewise
a sparse MoE's routed experts (`torch._grouped_mm` in transformers 5) have no forward-mode AD:
forward-over-reverse switches the model to transformers' eager expert loop while it runs
(double backward through `_grouped_mm` works and matches the loop to 5e-9 relative).

The loss is the training objective (`loss_at`): for a sparse MoE the LM loss plus the weighted
router load-balancing loss. Top-k routing makes it piecewise smooth in the router weights; H
is that of the piece the base sits on (the routing choice has no derivative).

Both kernels give H v for a twice-differentiable loss. One exception matters for checkpoints
whose embedding has a `padding_idx` (an HF config with `pad_token_id`): its row's gradient is
masked although the forward uses it, so forward-over-reverse returns M H v and double backward
M H M v (M masking that row). They agree whenever v's masked row is zero, which holds for every
gradient, hence for everything the interference probe computes. Models built here set no
`padding_idx`: the pad token is the end-of-text separator, which must train.

The model must be in eval mode (dropout would make the loss, hence H, random). Nothing global
is changed; the model's own parameters and `.grad` are never touched (forward-over-reverse
switches an MoE's expert kernel for its duration and restores it, so do not run other work on
the same model object at the same time).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.func import functional_call, grad, jvp, vmap

from parammix_core.objective import training_inputs

log = logging.getLogger(__name__)

Method = Literal["auto", "forward_over_reverse", "double_backward"]
METHODS = ("auto", "forward_over_reverse", "double_backward")


class HVPError(ValueError):
    """Bad input to a gradient/HVP call (shapes, dtypes, mode); the message names it."""


@dataclass
class HVPResult:
    values: Tensor  # (V, P): H v_i for each input vector v_i
    method: str  # the kernel that actually ran: "forward_over_reverse" or "double_backward"


def param_names(model: torch.nn.Module) -> list[str]:
    """Parameter names in flat-vector order; a tied parameter appears once (its first name)."""
    return [name for name, _ in model.named_parameters()]


def flat_params(model: torch.nn.Module) -> Tensor:
    """All parameters as one detached vector, shape (P,)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten(model: torch.nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """Views of `flat` (P,) shaped like the model's parameters, keyed by name."""
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    if flat.ndim != 1 or flat.shape[0] != total:
        raise HVPError(f"flat vector has shape {tuple(flat.shape)}, the model has ({total},)")
    chunks = torch.split(flat, [p.numel() for p in params.values()])
    return {n: c.view(p.shape) for (n, p), c in zip(params.items(), chunks, strict=True)}


def loss_at(model: torch.nn.Module, params: dict[str, Tensor], batch: Tensor) -> Tensor:
    """The training loss (scalar) of `model` with `params` substituted, on token blocks (B, T):
    the LM loss, plus the weighted router auxiliary loss for a sparse MoE
    (`parammix_core.objective`)."""
    out = functional_call(model, params, args=(), kwargs=training_inputs(model, batch))
    return out.loss


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _accumulate_dtype(model: torch.nn.Module) -> torch.dtype:
    """float32 for bf16/fp16/fp32 weights, float64 for float64 weights."""
    return torch.promote_types(next(model.parameters()).dtype, torch.float32)


def _check(model: torch.nn.Module, batch: Tensor) -> None:
    if model.training:
        raise HVPError("model is in training mode; call model.eval() (dropout makes H random)")
    if batch.ndim != 2 or batch.dtype != torch.int64:
        raise HVPError(
            f"batch must be int64 token blocks (B, T), got {batch.dtype} {tuple(batch.shape)}"
        )


def _autocast(
    model: torch.nn.Module, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=_device(model).type, dtype=dtype)


@contextlib.contextmanager
def _math_attention(model: torch.nn.Module) -> Iterator[None]:
    """Eager attention on this model for the duration, for models using SDPA: the fused CPU
    flash kernel has neither forward-mode AD nor a derivative of its backward (double
    backward). `sdpa_kernel([MATH])` would do it too, but for the whole process: every merge
    evaluated in another thread meanwhile took the MATH kernel, and its scores differed by up
    to 8e-6 from a run where the probe did not overlap it."""
    current = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if current != "sdpa":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(current)


@contextlib.contextmanager
def _eager_experts(model: torch.nn.Module) -> Iterator[None]:
    """Eager expert loops in a sparse MoE for the duration: transformers 5 runs routed experts
    with `torch._grouped_mm` by default, which has no forward-mode AD (torch 2.13); its double
    backward works and agrees with the eager loop, so only forward-over-reverse needs this."""
    current = getattr(getattr(model, "config", None), "_experts_implementation", None)
    if current in (None, "eager"):
        yield
        return
    model.set_experts_implementation("eager")
    try:
        yield
    finally:
        model.set_experts_implementation(current)


def gradient(
    model: torch.nn.Module, batches: Sequence[Tensor], autocast: torch.dtype | None = None
) -> Tensor:
    """Mean over `batches` (each (B, T)) of the loss gradient, shape (P,), float32 or wider.

    One flat copy of the parameters serves every batch, and the first batch's gradient
    becomes the running sum: besides the model, two (P,) tensors and a backward pass.
    """
    if not batches:
        raise HVPError("gradient needs at least one batch")
    leaves = _leaves(model)
    total = torch.zeros(
        sum(t.numel() for t in leaves), dtype=_accumulate_dtype(model), device=_device(model)
    )  # (P,)
    for batch in batches:
        _check(model, batch)
        with _autocast(model, autocast):
            loss = loss_at(model, dict(zip(param_names(model), leaves, strict=True)), batch)
        _add_flat(total, torch.autograd.grad(loss, leaves))
    return total.div_(len(batches))


def _leaves(model: torch.nn.Module) -> list[Tensor]:
    """The parameters as new autograd leaves sharing their storage (no copy), in flat order."""
    return [p.detach().requires_grad_(True) for p in model.parameters()]


def _add_flat(flat: Tensor, pieces: Sequence[Tensor]) -> None:
    """flat (P,) += the per-parameter tensors laid end to end, without concatenating them."""
    offset = 0
    for piece in pieces:
        flat[offset : offset + piece.numel()].add_(piece.reshape(-1))
        offset += piece.numel()


def _forward_over_reverse(
    model: torch.nn.Module,
    batch: Tensor,
    vectors: Tensor,
    chunk_size: int | None,
    autocast: torch.dtype | None,
    out: Tensor,
) -> Tensor:
    flat = flat_params(model)  # (P,)

    def loss_of(x: Tensor) -> Tensor:
        return loss_at(model, unflatten(model, x), batch)

    def hv(v: Tensor) -> Tensor:  # (P,) -> (P,)
        return jvp(grad(loss_of), (flat,), (v.to(flat.dtype),))[1]

    with _math_attention(model), _eager_experts(model), _autocast(model, autocast):
        return out.add_(vmap(hv, chunk_size=chunk_size)(vectors))  # (V, P)


def _double_backward(
    model: torch.nn.Module,
    batch: Tensor,
    vectors: Tensor,
    autocast: torch.dtype | None,
    out: Tensor,
) -> Tensor:
    leaves = _leaves(model)
    with _math_attention(model), _autocast(model, autocast):
        loss = loss_at(model, dict(zip(param_names(model), leaves, strict=True)), batch)
    g = torch.autograd.grad(loss, leaves, create_graph=True)  # per parameter, differentiable
    for row, v in zip(out, vectors, strict=True):  # one backward pass of g·v per vector
        pieces = unflatten(model, v.to(g[0].dtype)).values()  # views of v
        h = torch.autograd.grad(g, leaves, grad_outputs=list(pieces), retain_graph=True)
        _add_flat(row, h)  # one result alive at a time, not V of them and their stack
        del h
    return out  # (V, P)


def auto_order(device: torch.device) -> tuple[str, str]:
    """The kernels "auto" tries on `device`, fastest first (see the module docstring)."""
    if device.type == "cpu":
        return ("double_backward", "forward_over_reverse")
    return ("forward_over_reverse", "double_backward")


def hvp(
    model: torch.nn.Module,
    batch: Tensor,
    vectors: Tensor,
    method: Method = "auto",
    chunk_size: int | None = None,
    autocast: torch.dtype | None = None,
    out: Tensor | None = None,
) -> HVPResult:
    """H v for each row of `vectors` (V, P), H = Hessian of the loss on `batch` (B, T).

    Args:
        method: "forward_over_reverse", "double_backward", or "auto" (by device, `auto_order`:
            double backward on the CPU, forward-over-reverse elsewhere; the other if it raises).
        chunk_size: vectors per vmap call in forward-over-reverse (None: all V at once);
            double backward takes one vector at a time and ignores it.
        autocast: run the loss under `torch.autocast` with this dtype (e.g. torch.bfloat16).
        out: add H v into the rows of this (V, P) tensor (the result's dtype, on the model's
            device) instead of a new one, so summing over batches needs no second (V, P)
            buffer. It needs a named method: a kernel failing half way through would leave
            `out` partly summed for the fallback to add to again.
    Returns:
        HVPResult with `.values` (V, P) in float32 (float64 for a float64 model) and `.method`;
        `.values` is `out` when given.
    """
    _check(model, batch)
    if method not in METHODS:
        raise HVPError(f"unknown HVP method {method!r}; choose one of {list(METHODS)}")
    if chunk_size is not None and chunk_size < 1:
        raise HVPError(f"chunk_size must be a positive int or None, got {chunk_size}")
    n_params = sum(p.numel() for p in model.parameters())
    if vectors.ndim != 2 or vectors.shape[1] != n_params:
        raise HVPError(f"vectors must have shape (V, {n_params}), got {tuple(vectors.shape)}")
    out = _output(model, vectors, method, out)
    vectors = vectors.to(_device(model))
    kernels = {
        "forward_over_reverse": lambda: _forward_over_reverse(
            model, batch, vectors, chunk_size, autocast, out
        ),
        "double_backward": lambda: _double_backward(model, batch, vectors, autocast, out),
    }
    first, second = auto_order(_device(model)) if method == "auto" else (method, None)
    try:
        values, ran = kernels[first](), first
    except (RuntimeError, NotImplementedError) as err:
        if second is None:
            raise
        log.warning("%s HVP failed (%s); falling back to %s", first, err, second)
        out.zero_()  # ours ("auto" takes no `out`): drop what the failed kernel added
        values, ran = kernels[second](), second
    log.info("HVP of %d vector(s) by %s", len(vectors), ran)
    return HVPResult(values, ran)


def _output(model: torch.nn.Module, vectors: Tensor, method: str, out: Tensor | None) -> Tensor:
    """`out` checked, or zeros of the result's dtype and shape on the model's device."""
    dtype, device = _accumulate_dtype(model), _device(model)
    if out is None:
        return torch.zeros(vectors.shape, dtype=dtype, device=device)
    if method == "auto":
        raise HVPError("out needs a named method, not 'auto' (a fallback would add twice)")
    if out.shape != vectors.shape or out.dtype != dtype or out.device != device:
        raise HVPError(
            f"out must be {dtype} of shape {tuple(vectors.shape)} on {device}, got "
            f"{out.dtype} of shape {tuple(out.shape)} on {out.device}"
        )
    return out
