"""Engine settings of the `training` section: the engine they name, the checkpoint identity."""

from __future__ import annotations

import torch

from parammix_core.config import TrainConfig, TrainingConfig
from parammix_core.engines.base import Engine
from parammix_core.engines.deepspeed_engine import DeepSpeedEngine
from parammix_core.engines.plain import PlainEngine

SYSTEM_FIELDS = {"engine", "deepspeed", "precision", "fused_adamw", "compile"}


def system_spec(system: TrainingConfig) -> dict:
    """The engine settings: part of a run's checkpoint identity (resume only with the same)."""
    return system.model_dump(mode="json", include=SYSTEM_FIELDS)


def make_engine(
    model: torch.nn.Module, cfg: TrainConfig, system: TrainingConfig, device: torch.device
) -> Engine:
    """The engine `system.engine` names; the model's weights must already be final for a resume."""
    if system.engine == "deepspeed":
        return DeepSpeedEngine(model, cfg, system, device)
    return PlainEngine(model, cfg, system, device)
