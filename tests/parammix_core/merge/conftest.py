"""Fixtures of the merge tests: a pico base with three experts, in memory and on disk."""

import pytest
import safetensors.torch
import torch

from parammix_core.model import save_model
from tests.parammix_core.merge.common import pico


@pytest.fixture(scope="module")
def states():
    """A pico Llama base and three experts: the base plus small perturbations of different sizes."""
    base = {k: v.clone() for k, v in pico().state_dict().items()}
    g = torch.Generator().manual_seed(1)
    experts = [
        {n: v + 0.01 * (k + 1) * torch.randn(v.shape, generator=g) for n, v in base.items()}
        for k in range(3)
    ]
    return base, experts


@pytest.fixture(scope="module")
def checkpoints(states, tmp_path_factory):
    """The base as a HF checkpoint dir, the experts as bare safetensors files."""
    root = tmp_path_factory.mktemp("ckpts")
    base, experts = states
    model = pico()
    model.load_state_dict(base)
    save_model(model, root / "base")
    paths = []
    for k, expert in enumerate(experts):
        safetensors.torch.save_file(expert, root / f"expert{k}.safetensors")
        paths.append(root / f"expert{k}.safetensors")
    return root / "base", paths
