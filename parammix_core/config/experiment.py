"""The whole experiment: every section, the cross-section checks, loading from YAML."""

from __future__ import annotations

import difflib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from parammix_core.config.base import Count, Strict
from parammix_core.config.data import DataConfig
from parammix_core.config.evaluation import EvaluationConfig, ProbeConfig
from parammix_core.config.model import ModelConfig
from parammix_core.config.runtime import RuntimeConfig, StoreConfig
from parammix_core.config.search import Bounds, SearchConfig
from parammix_core.config.training import TrainingConfig
from parammix_core.config.urls import (
    SECRET_IN_CONFIG,
    WHERE_SECRETS_GO,
    secret_in_url,
    urls_with_secrets,
)
from parammix_core.config.validation import FinalConfig, ValidationConfig
from parammix_core.config.yaml_loader import ConfigError, load_yaml


class Experiment(Strict):
    """A whole Param-Mix experiment; the parameter of the `param_mix` flow."""

    name: str = Field("embedded-default", min_length=1, max_length=200)
    seed: Count(2**31 - 1, lo=0) = 0
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
    def _no_urls_with_secrets(self) -> Experiment:
        """No field may hold a URL with a password or a signed query (a flow's parameters are
        shown in the UI, stored by Prefect and written into an exported model card); fields
        that name locations refuse them on their own, this catches every other one."""
        bad = urls_with_secrets(self.model_dump(mode="json"))
        if bad:
            raise PydanticCustomError(
                SECRET_IN_CONFIG,
                "credentials in a URL are not accepted ({fields}): {where}",
                {"fields": ", ".join(bad), "where": WHERE_SECRETS_GO},
            )
        return self

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
        n, folds = self.search.n_mixtures, self.search.cv_folds
        if self.search.import_runs is None and n - -(-n // folds) < 2:
            raise ValueError(
                f"search.n_mixtures={n} is too few for search.cv_folds={folds}: every "
                "cross-validation fit needs 2 mixtures; raise n_mixtures or lower cv_folds"
            )
        steps, expert = self.final.train.steps, self.training.expert.steps
        if "long" in self.search.strategies.multifidelity.fidelities and steps <= expert:
            raise ValueError(
                "search.strategies.multifidelity.fidelities: long runs train final.train.steps "
                f"({steps}), which must exceed training.expert.steps ({expert})"
            )
        self._calibration_inputs()
        if self.evaluation.proxy == "corrected" and not self.probe.enabled:
            raise ValueError("evaluation.proxy 'corrected' needs probe.enabled")
        if self.model.checkpoint is None and self.data.tokenizer is not None:
            raise ValueError("data.tokenizer needs model.checkpoint (a tokenizer fits a model)")
        self._batches_split_over_processes()
        return self

    def _calibration_inputs(self) -> None:
        """search.utility.calibrate fits its lines on the validation's merges and real runs."""
        if not self.search.utility.calibrate:
            return
        needs = {
            "validation.enabled": self.validation.enabled,
            "evaluation.proxy: merge": self.evaluation.proxy == "merge",
            "a search.strategy other than multifidelity (its real runs decide already)": (
                self.search.strategy != "multifidelity"
            ),
        }
        missing = [what for what, ok in needs.items() if not ok]
        if missing:
            raise ValueError(f"search.utility.calibrate needs {'; '.join(missing)}")

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


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} invalid field(s)"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])  # none: a check across fields names them
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = _unknown_field(e["loc"])
        got = f" (got {e['input']!r})" if _short(e) and path else ""
        if e["input"] is None and path:
            got = " (got null: the value is empty)"
        lines.append(f"  {path}: {msg}{got}" if path else f"  {msg}")
    return "\n".join(lines)


def _short(e: dict) -> bool:
    """Whether to show the bad value: short, and never a secret (nor a URL holding one under
    a mistyped key, `store.ur: s3://user:password@...`)."""
    value = e.get("input")
    shown = isinstance(value, str | int | float | bool) and len(repr(value)) <= 60
    hidden = isinstance(value, str) and ("@" in value or secret_in_url(value) is not None)
    return shown and not hidden and e["type"] != SECRET_IN_CONFIG


def _unknown_field(loc: tuple) -> str:
    """Pydantic's "Extra inputs are not permitted" as a user reads it: the field is not
    there, and the nearest one that is (or the section's fields when none is near)."""
    node: Any = Experiment
    for key in loc[:-1]:
        node = _field_type(node, key)
    node = _unwrap(node)
    names = list(node.model_fields) if isinstance(node, type) else []
    near = difflib.get_close_matches(str(loc[-1]), names, n=1)
    if near:
        return f"no such field; did you mean {near[0]!r}?"
    return f"no such field; the fields here are {', '.join(names)}" if names else "no such field"


def _field_type(node: Any, key: object) -> Any:
    """What `key` holds in a section, list or mapping annotation; None when not known."""
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(key))
        return field.annotation if field else None
    return get_args(node)[-1] if get_origin(node) in (list, dict) else None


def _unwrap(node: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None`."""
    while True:
        if get_origin(node) is Annotated:
            node = get_args(node)[0]
        elif get_origin(node) in (Union, UnionType):
            kinds = [a for a in get_args(node) if a is not type(None)]
            if len(kinds) != 1:
                return node
            node = kinds[0]
        else:
            return node


def parse_experiment(data: dict, source: str = "<config>") -> Experiment:
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def load_experiment(path: str | Path | None = None) -> Experiment:
    """Load a YAML experiment; None gives the embedded default."""
    if path is None:
        return Experiment()
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file")
    if path.exists() and not path.is_file():  # a device or a pipe: never read
        raise ConfigError(f"{path}: not a regular file; give a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {err.start})") from None
    data = load_yaml(text, str(path))
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty; write the fields to change (parammix show-config "
            "prints them all), or leave out --config for the embedded default"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return parse_experiment(data, str(path))
