"""What both engines share: the `Engine` protocol, the AdamW optimizer and bf16 autocast."""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from pathlib import Path
from typing import Protocol

import torch

from parammix_core.config import TrainConfig, TrainingConfig

log = logging.getLogger(__name__)


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

    def weights(self) -> dict[str, torch.Tensor]:
        """The full parameters by name (collective under DeepSpeed: every process gathers)."""
        ...

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


@functools.cache
def cpu_emulates_bf16() -> bool:
    """True on an x86 CPU with neither AVX512-BF16 nor AMX: oneDNN then emulates bf16 matmuls,
    6-8x slower than fp32 (benchmarks/precision.py). Unknown (other CPUs, older torch): False."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    probes = [
        getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    if None in probes:
        return False
    return not any(probe() for probe in probes)


@functools.cache
def _warn_emulated_bf16() -> None:
    log.warning(
        "training.precision: bf16 on a CPU without AVX512-BF16 or AMX: bf16 is emulated here and "
        "trains several times slower than fp32 (benchmarks/precision.py); set precision: fp32"
    )


def autocast(system: TrainingConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast of forward and loss (weights, gradients and Adam stay fp32), or nothing."""
    if system.precision == "bf16":
        if device.type == "cpu" and cpu_emulates_bf16():
            _warn_emulated_bf16()  # once per process
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
