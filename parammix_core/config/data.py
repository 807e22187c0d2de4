"""Config of the domains' corpora."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from parammix_core.config.base import (
    BUILTIN_DOMAINS,
    Count,
    Flag,
    PositiveInt,
    Strict,
    Text,
)
from parammix_core.config.urls import known_scheme

# Domain names become parts of file and folder names (`expert/<name>-<key>/`): short ones.
MAX_DOMAIN_NAME = 64


class DomainSpec(Strict):
    """One training domain: where its text comes from."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_\-]+$",
        max_length=MAX_DOMAIN_NAME,
        description="Domain name, used in keys and file names.",
    )
    builtin: Literal["math", "code", "sft", "web"] | None = Field(
        None, description="Generate this domain on the machine (no downloads)."
    )
    paths: list[Annotated[Text, AfterValidator(known_scheme)]] = Field(
        default_factory=list,
        max_length=10_000,
        description="Local paths, globs or fsspec URLs of .txt, .jsonl, .parquet or .arrow "
        "files, or of `datasets` save_to_disk folders.",
    )
    text_field: str = Field(
        "text", max_length=256, description="Column/key holding the text in JSONL/parquet."
    )
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

    domains: list[DomainSpec] = Field(
        default_factory=_default_domains, min_length=1, max_length=256
    )
    # cleaning
    min_chars: PositiveInt = Field(40, description="Drop documents shorter than this.")
    max_chars: PositiveInt = Field(
        6000,
        description="Keep the first this many characters of a longer document (the data "
        "stage logs how many it cut per domain); raise it for books or long files.",
    )
    dedup: Flag = Field(True, description="Drop exact duplicate documents (after whitespace norm).")
    # size
    max_train_tokens: Count(10**12) = Field(
        400_000, description="Cap on training tokens per domain (the rest is not used)."
    )
    heldout_tokens: PositiveInt = Field(
        32_768, description="Held-out tokens per domain (per-domain loss, built-in benchmarks)."
    )
    # tokenizer and packing
    tokenizer: Annotated[Text, AfterValidator(known_scheme)] | None = Field(
        None, description="Path of an existing HF tokenizer; None trains a BPE tokenizer here."
    )
    vocab_size: Count(1 << 20) = Field(2048, description="BPE vocabulary when training one here.")
    block_size: Count(1 << 20) = Field(128, description="Tokens per packed training sequence.")
    fingerprint: Literal["metadata", "content"] = Field(
        "metadata",
        description="How a change of a corpus file is noticed: metadata (size, mtime and a "
        "local file's inode change time, or ETag; one listing) or content (sha256 of the "
        "bytes).",
    )

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
