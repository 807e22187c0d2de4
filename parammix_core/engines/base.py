"""What both engines share: the `Engine` protocol, the AdamW optimizer and bf16 autocast."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

import torch

from parammix_core.config import TrainConfig, TrainingConfig


class Engine(Protocol):
    device: torch.device
    is_writer: bool  # the one process that writes checkpoint files

    def set_lr(self, lr: float) -> None: ...

    def train_step(self, batch: torch.Tensor) -> float:
        """One update from the global batch (B, T); returns its mean loss."""
        ...

    def save(self, out_dir: Path) -> None:
        """Write model.safetensors and optimizer.safetensors (collective; the writer writes)."""
        ...

    def load_optimizer(self, ckpt_dir: Path) -> None: ...

    def barrier(self) -> None: ...

    def finish(self) -> None:
        """Leave the caller's model with the final, full weights."""
        ...


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    # nanoGPT's split: decay matrices and embeddings, never norm gains or biases
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device, fused: bool = False
) -> torch.optim.AdamW:
    betas = (cfg.beta1, cfg.beta2)
    if fused:
        return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=betas, fused=True)
    # foreach on the CPU: measured slightly faster there (torch picks it itself on CUDA)
    foreach = True if device.type == "cpu" else None
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=betas, foreach=foreach)


def autocast(system: TrainingConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast of forward and loss (weights, gradients and Adam stay fp32), or nothing."""
    if system.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
