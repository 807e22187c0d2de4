"""Config of where artifacts live and how the flow runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from parammix_core.config.base import (
    PositiveInt,
    Strict,
)


class StoreConfig(Strict):
    url: str = Field(".parammix/store", description="Local folder or fsspec URL (s3://b/p).")
    storage_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="fsspec options without secrets (endpoint_url, ...); keys come from the env.",
    )
    verify: Literal["sha256", "size"] = Field(
        "sha256", description="What readers check against the manifest."
    )


class RuntimeConfig(Strict):
    device: Literal["cpu", "cuda", "auto"] = "auto"
    torch_threads: PositiveInt = Field(
        1, description="Intra-op threads per task; 1 is fastest for tiny models on small CPUs."
    )
    max_workers: PositiveInt = Field(2, description="Tasks run at once in the flow.")
    progress: bool = Field(True, description="tqdm bars in the terminal.")
