"""Config of the domains' corpora."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from parammix_core.config.base import (
    BUILTIN_DOMAINS,
    PositiveInt,
    Strict,
)


class DomainSpec(Strict):
    """One training domain: where its text comes from."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", description="Domain name, used in keys.")
    builtin: Literal["math", "code", "sft", "web"] | None = Field(
        None, description="Generate this domain on the machine (no downloads)."
    )
    paths: list[str] = Field(
        default_factory=list,
        description="Local paths, globs or fsspec URLs of .txt, .jsonl or .parquet files.",
    )
    text_field: str = Field("text", description="Column/key holding the text in JSONL/parquet.")
    max_documents: PositiveInt | None = Field(None, description="Keep at most this many docs.")

    @model_validator(mode="after")
    def _one_source(self) -> DomainSpec:
        if (self.builtin is None) == (not self.paths):
            raise ValueError(f"domain {self.name!r}: set exactly one of 'builtin' or 'paths'")
        return self


def _default_domains() -> list[DomainSpec]:
    return [DomainSpec(name=name, builtin=name) for name in BUILTIN_DOMAINS]


class DataConfig(Strict):
    """Per-domain corpora: cleaning, tokenizer, packing and the held-out split."""

    domains: list[DomainSpec] = Field(default_factory=_default_domains, min_length=1)
    # cleaning
    min_chars: PositiveInt = Field(40, description="Drop documents shorter than this.")
    max_chars: PositiveInt = Field(6000, description="Truncate documents longer than this.")
    dedup: bool = Field(True, description="Drop exact duplicate documents (after whitespace norm).")
    # size
    max_train_tokens: PositiveInt = Field(
        400_000, description="Cap on training tokens per domain (the rest is not used)."
    )
    heldout_tokens: PositiveInt = Field(
        32_768, description="Held-out tokens per domain (per-domain loss, built-in benchmarks)."
    )
    # tokenizer and packing
    tokenizer: str | None = Field(
        None, description="Path of an existing HF tokenizer; None trains a BPE tokenizer here."
    )
    vocab_size: PositiveInt = Field(2048, description="BPE vocabulary when training one here.")
    block_size: PositiveInt = Field(128, description="Tokens per packed training sequence.")

    @field_validator("domains")
    @classmethod
    def _unique_names(cls, domains: list[DomainSpec]) -> list[DomainSpec]:
        names = [d.name for d in domains]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate domain names: {dupes}")
        return domains

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        if self.max_chars <= self.min_chars:
            raise ValueError("max_chars must be greater than min_chars")
        return self

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]
