"""Config of the base model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from parammix_core.config.base import Count, Flag, Strict, Text
from parammix_core.config.urls import known_scheme


class ModelConfig(Strict):
    """The shared base: a checkpoint, or a tiny Llama built from these shapes and pre-trained."""

    checkpoint: Annotated[Text, AfterValidator(known_scheme)] | None = Field(
        None, description="HF checkpoint dir or fsspec URL; None builds and pre-trains a tiny one."
    )
    trust_remote_code: Flag = Field(False, description="Allow custom modeling code (off).")
    hidden_size: Count(1 << 16) = 96
    num_layers: Count(1024) = 3
    num_heads: Count(1024) = 4
    num_kv_heads: Count(1024) = 4
    intermediate_size: Count(1 << 20) = 256
    attn_implementation: Literal["eager", "sdpa"] = "sdpa"
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights and merge dtype; bfloat16 is for GPUs."
    )

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be divisible by num_kv_heads")
        return self
