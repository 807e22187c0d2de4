"""Config of the training runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from parammix_core.config.base import (
    Count,
    Flag,
    NotBool,
    PositiveFloat,
    Strict,
    UnitFloat,
)


class TrainConfig(Strict):
    """Hyper-parameters of one training run (the same for every expert)."""

    steps: Count(10**8) = 200
    batch_size: Count(1 << 20) = 16
    lr: PositiveFloat = 2e-3
    warmup_steps: Count(10**8, lo=0) = 10
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="LR after warm-up: constant, or cosine down to min_lr_ratio * lr at the "
        "last step (the embedded default's experts: it halves the run-to-run noise of real runs "
        "at their budget, benchmarks/RESULTS.md).",
    )
    min_lr_ratio: UnitFloat = Field(0.1, description="Cosine floor as a fraction of lr.")
    sampler: Literal["iid", "blended"] = Field(
        "iid",
        description="How rows are drawn: iid (each row's domain drawn by the mixture, blocks "
        "with replacement) or blended (every stretch of rows in the mixture's proportions, "
        "each domain read without replacement, as Megatron-style pipelines blend; "
        "parammix_core/blending.py). On the embedded default blended did not lower the real "
        "runs' noise on the benchmark utility (benchmarks/RESULTS.md).",
    )
    average_last: UnitFloat = Field(
        0.0,
        description="Tail averaging: the run returns the mean of its weights after each of its "
        "last average_last * steps steps (at least one) instead of the last step's, as "
        "stochastic weight averaging does; 0 (the default) returns the last step's weights "
        "(parammix_core/averaging.py).",
    )
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    beta1: UnitFloat = 0.9
    beta2: UnitFloat = 0.95
    grad_clip: PositiveFloat = 1.0
    checkpoint_every: Count(10**8) = Field(50, description="Steps between resumable checkpoints.")

    @model_validator(mode="after")
    def _warmup(self) -> TrainConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError("warmup_steps must be smaller than steps")
        return self


class DeepSpeedConfig(Strict):
    """DeepSpeed settings; used only with `training.engine: deepspeed` (the `deepspeed` extra)."""

    zero_stage: Literal[0, 1, 2, 3] = Field(
        2, description="ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also weights."
    )
    offload_optimizer: Flag = Field(
        False, description="ZeRO-Offload: optimizer states in host memory (stages 1-3)."
    )
    offload_param: Flag = Field(False, description="Weights in host memory (stage 3 only).")
    overlap_comm: Flag = Field(False, description="Overlap gradient reduction with backward.")
    bucket_size: Count(10**11) = Field(
        50_000_000,
        description="Elements per gradient-reduce / all-gather bucket (DeepSpeed's own default, "
        "5e8, is 2 GB of fp32 buffers).",
    )

    @model_validator(mode="after")
    def _offload(self) -> DeepSpeedConfig:
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        if self.offload_param and self.zero_stage != 3:
            raise ValueError("offload_param needs zero_stage 3")
        return self


class TrainingConfig(Strict):
    base: TrainConfig = Field(
        default_factory=lambda: TrainConfig(
            steps=1800, lr=3e-3, schedule="cosine", warmup_steps=30
        ),
        description="Pre-training of the tiny base on the uniform mixture (unused with a "
        "checkpoint).",
    )
    expert: TrainConfig = Field(
        default_factory=lambda: TrainConfig(steps=360, lr=1e-3, warmup_steps=10, schedule="cosine"),
        description="Training of each domain expert from the base (and of the real mixed runs "
        "a merge stands in for: the same hyper-parameters and schedule). The default's 360 "
        "steps are final training's: merges of such experts ranked 360-step real runs better "
        "on the embedded default than merges of 120-step ones (benchmarks/RESULTS.md).",
    )
    replay: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False), NotBool] = Field(
        0.1,
        description="Share of each expert's rows drawn from the uniform mix of every domain "
        "(the rest from its own domain). A data mixture alpha is then merged at the weights "
        "(alpha - replay / K) / (1 - replay) (parammix_core/merge/replay.py); 0 trains each "
        "expert on its domain alone. 0.1 ranked the real mixed runs better than 0 on the "
        "embedded default and the larger CPU preset (benchmarks/RESULTS.md).",
    )
    # system: how runs execute (the same for base, experts, mixed and final runs)
    engine: Literal["plain", "deepspeed"] = Field(
        "plain", description="plain: one process, torch AdamW; deepspeed: ZeRO data parallel."
    )
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    processes: Count(1024) = Field(
        1,
        description="Processes per training run on this node (one per GPU): > 1 runs every "
        "training stage under torchrun, data parallel with DeepSpeed. Not in artifact keys: "
        "the global batch, hence the run, is the same.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: forward/backward under bf16 autocast, fp32 weights and Adam."
    )
    fused_adamw: Flag = Field(False, description="torch's fused AdamW kernel (for GPUs).")
    compile: Flag = Field(False, description="torch.compile the forward pass (opt-in; GPUs).")

    @model_validator(mode="after")
    def _processes(self) -> TrainingConfig:
        if self.processes > 1 and self.engine != "deepspeed":
            raise ValueError(
                f"training.processes {self.processes} needs training.engine 'deepspeed' "
                f"(the {self.engine} engine trains in one process)"
            )
        return self
