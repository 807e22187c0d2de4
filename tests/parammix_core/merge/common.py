"""Shared by the merge tests: the pico Llama, the alphas to try, and readers of its outputs."""

import safetensors.torch
import torch

from parammix_core.config import ModelConfig
from parammix_core.model import build_model

PICO = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
ALPHAS = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [1 / 3, 1 / 3, 1 / 3],
    [0.6, 0.1, 0.3],
    [0.0, 0.25, 0.75],
]


def pico():
    return build_model(PICO, 80, 32, 0, bos_token_id=1, eos_token_id=2, pad_token_id=0)


TOKENS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 40, 41, 42, 43, 44, 45, 79]])


def logits_of(state: dict) -> torch.Tensor:
    model = pico()
    model.load_state_dict(state)
    with torch.no_grad():
        return model(TOKENS).logits


def read_dir(out) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(out.glob("*.safetensors")):
        tensors.update(safetensors.torch.load_file(file))
    return tensors
