"""Config of the training runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from parammix_core.config.base import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Strict,
    UnitFloat,
)


class TrainConfig(Strict):
    """Hyper-parameters of one training run (the same for every expert)."""

    steps: PositiveInt = 200
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 2e-3
    warmup_steps: NonNegativeInt = 10
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="LR after warm-up; constant keeps experts mergeable."
    )
    min_lr_ratio: UnitFloat = Field(0.1, description="Cosine floor as a fraction of lr.")
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    beta1: UnitFloat = 0.9
    beta2: UnitFloat = 0.95
    grad_clip: PositiveFloat = 1.0
    checkpoint_every: PositiveInt = Field(50, description="Steps between resumable checkpoints.")

    @model_validator(mode="after")
    def _warmup(self) -> TrainConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError("warmup_steps must be smaller than steps")
        return self


class TrainingConfig(Strict):
    base: TrainConfig = Field(
        default_factory=lambda: TrainConfig(steps=600, lr=3e-3, schedule="cosine", warmup_steps=30),
        description="Pre-training of the tiny base on the uniform mixture (unused with a "
        "checkpoint).",
    )
    expert: TrainConfig = Field(
        default_factory=lambda: TrainConfig(steps=120, lr=1e-3, warmup_steps=10),
        description="Short-horizon training of each domain expert from the base.",
    )
