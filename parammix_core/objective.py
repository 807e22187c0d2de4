"""What a forward pass's `.loss` means: the objective training descends, or the LM loss.

A transformers sparse Mixture-of-Experts (Mixtral, Qwen2-MoE, OLMoE, ...) adds the router's
load-balancing loss to its next-token loss when its forward gets `output_router_logits=True`:
`.loss = LM + config.router_aux_loss_coef * .aux_loss` (Switch Transformer eqs. 4-6, over the
router logits of every layer; checked in transformers 5.24's modeling_mixtral.py, and the same
in Qwen2-MoE and OLMoE). Without the flag `.loss` is the LM loss alone; the flag's default
comes from the checkpoint's config (off in the Mixtral, Qwen2-MoE and OLMoE config classes, but a
checkpoint's config.json may turn it on). So nothing here trusts the default:

- training (both engines) and the interference probe use `training_inputs`: the LM loss plus
  the weighted auxiliary loss, the objective such models are trained with (the balance term
  is what keeps the routing spread over the experts), so g_k and H_k are those of the loss
  training actually descends;
- every score uses the LM loss only: held-out loss and lm-eval work from the logits, MergeMix's
  dev loss asks for `lm_inputs`, so a number is comparable across dense and MoE models and
  across checkpoints whatever their config says.

A model whose forward has no `output_router_logits` parameter (every dense model) gets no
extra argument, so for it both are the plain LM loss.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch


def is_sparse_moe(model: torch.nn.Module) -> bool:
    """True for a model whose forward takes `output_router_logits`, the switch of the router
    auxiliary loss (a config attribute alone is not enough: DeepSeek-V3 has one, no loss)."""
    return _has_router_switch(type(model))


@functools.cache
def _has_router_switch(cls: type) -> bool:
    """Per class, once: `training_inputs` is called every training step."""
    return "output_router_logits" in inspect.signature(cls.forward).parameters


def training_inputs(model: torch.nn.Module, batch: torch.Tensor) -> dict[str, Any]:
    """Forward arguments whose `.loss` is the training objective on token blocks `batch`."""
    return _inputs(model, batch, router_loss=True)


def lm_inputs(model: torch.nn.Module, batch: torch.Tensor) -> dict[str, Any]:
    """Forward arguments whose `.loss` is the next-token cross-entropy alone."""
    return _inputs(model, batch, router_loss=False)


def _inputs(model: torch.nn.Module, batch: torch.Tensor, router_loss: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"input_ids": batch, "labels": batch, "use_cache": False}
    if is_sparse_moe(model):
        kwargs["output_router_logits"] = router_loss
    return kwargs
