"""Helpers of the export tests: the float64 reference merge from a store, and the check that
a checkpoint folder holds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from parammix_core.config import Experiment
from parammix_core.stages.published import published_models
from parammix_core.store import Store


def reference(store: Store, exp: Experiment, weights: np.ndarray) -> dict[str, torch.Tensor]:
    """theta_base + sum_k w_k (theta_k - theta_base) in float64, from the stored files."""
    models = published_models(exp, store)
    base = store.load_tensors(models.base, "model.safetensors")
    experts = [store.load_tensors(r, "model.safetensors") for r in models.experts.values()]
    out = {}
    for name, b in base.items():
        b64 = b.double()
        out[name] = b64 + sum(
            w * (e[name].double() - b64) for w, e in zip(weights, experts, strict=True)
        )
    return out


def assert_is_merge(path: Path, want: dict[str, torch.Tensor]) -> None:
    """Every tensor transformers loads from `path` is the float64 merge to ~1e-6."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    got = model.state_dict()
    assert got.keys() == want.keys()
    for name, tensor in got.items():
        err = (tensor.double() - want[name]).abs().max().item()
        assert err < 1e-6, (name, err)
