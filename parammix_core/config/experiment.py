"""The whole experiment: every section, the cross-section checks, loading from YAML."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from parammix_core.config.base import (
    NonNegativeInt,
    Strict,
)
from parammix_core.config.data import DataConfig
from parammix_core.config.evaluation import EvaluationConfig, ProbeConfig
from parammix_core.config.model import ModelConfig
from parammix_core.config.runtime import RuntimeConfig, StoreConfig
from parammix_core.config.search import Bounds, SearchConfig
from parammix_core.config.training import TrainingConfig
from parammix_core.config.validation import FinalConfig, ValidationConfig


class Experiment(Strict):
    """A whole Param-Mix experiment; the parameter of the `param_mix` flow."""

    name: str = Field("embedded-default", min_length=1)
    seed: NonNegativeInt = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    final: FinalConfig = Field(default_factory=FinalConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Experiment:
        names = set(self.data.names)
        for field, keys in (("search.bounds", self.search.bounds),):
            unknown = sorted(set(keys) - names)
            if unknown:
                raise ValueError(f"{field}: unknown domains {unknown}; domains are {sorted(names)}")
        groups = set(self.evaluation.groups)
        unknown = sorted(set(self.search.group_weights) - groups)
        if unknown:
            raise ValueError(
                f"search.group_weights: unknown groups {unknown}; groups are {sorted(groups)}"
            )
        missing = sorted(groups - set(self.search.group_weights))
        if self.search.group_weights and missing:
            raise ValueError(
                f"search.group_weights: no weight for groups {missing}; give every group or none"
            )
        lo = sum(b.min for b in self.search.bounds.values())
        if lo > 1 + 1e-9:
            raise ValueError(f"search.bounds: the domain minimums sum to {lo:g} > 1")
        hi = sum(self.search.bounds.get(n, Bounds()).max for n in names)
        if hi < 1 - 1e-9:
            raise ValueError(f"search.bounds: the domain maximums sum to {hi:g} < 1")
        if self.search.n_mixtures < len(names) + 1:
            raise ValueError("search.n_mixtures must cover the vertices and the uniform mixture")
        if self.evaluation.proxy == "corrected" and not self.probe.enabled:
            raise ValueError("evaluation.proxy 'corrected' needs probe.enabled")
        if self.model.checkpoint is None and self.data.tokenizer is not None:
            raise ValueError("data.tokenizer needs model.checkpoint (a tokenizer fits a model)")
        self._batches_split_over_processes()
        return self

    def _batches_split_over_processes(self) -> None:
        """Every trained run's global batch splits evenly over training.processes."""
        n = self.training.processes
        batches = {
            "training.expert.batch_size": self.training.expert.batch_size,  # experts, mixed runs
        }
        if self.final.enabled:
            batches["final.train.batch_size"] = self.final.train.batch_size
        if self.model.checkpoint is None:  # the base is pre-trained here
            batches["training.base.batch_size"] = self.training.base.batch_size
        for field, size in batches.items():
            if size % n:
                raise ValueError(
                    f"{field}={size} is not divisible by training.processes={n}; "
                    "choose a multiple of the number of processes"
                )

    @property
    def domains(self) -> list[str]:
        return self.data.names

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Fields that never change an artifact: left out of every content hash.
NOT_HASHED = {"name", "store", "runtime"}


class ConfigError(ValueError):
    """A config file that does not load; the message names the file and each bad field."""


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} invalid field(s)"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {path}: {msg}" + (f" (got {e['input']!r})" if _short(e) else ""))
    return "\n".join(lines)


def _short(e: dict) -> bool:
    value = e.get("input")
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60


def parse_experiment(data: dict, source: str = "<config>") -> Experiment:
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_experiment(path: str | Path | None = None) -> Experiment:
    """Load a YAML experiment; None gives the embedded default."""
    if path is None:
        return Experiment()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return parse_experiment(data, str(path))
