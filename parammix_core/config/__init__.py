"""One pydantic model describes a whole Param-Mix experiment.

The defaults *are* the embedded default: a tiny Llama pre-trained here on four domains built
from what every machine has. `configs/default.yaml` is this model dumped to YAML (a test keeps
them equal). A real run overrides only what differs: base checkpoint, corpora, lm-eval tasks,
store URL, device.

Every model forbids unknown keys, so a typo fails at load time with the field's path
(`data.domains.1.paths: Extra inputs are not permitted`). Fields that do not change any
artifact (logging, parallelism, the store's location) are listed in `NOT_HASHED` and kept out
of the content hashes that address artifacts. One module per section.
"""

from parammix_core.config.base import BUILTIN_DOMAINS, DEFAULT_GROUPS, Strict
from parammix_core.config.data import DataConfig, DomainSpec
from parammix_core.config.evaluation import EvalTask, EvaluationConfig, ProbeConfig
from parammix_core.config.experiment import (
    NOT_HASHED,
    ConfigError,
    Experiment,
    load_experiment,
    load_yaml,
    parse_experiment,
)
from parammix_core.config.model import ModelConfig
from parammix_core.config.overrides import (
    apply_overrides,
    config_path,
    presets,
    resolve_experiment,
)
from parammix_core.config.runtime import RuntimeConfig, StoreConfig
from parammix_core.config.search import (
    Bounds,
    ImportedRuns,
    SearchConfig,
    StrategySettings,
    TargetCorpus,
)
from parammix_core.config.training import DeepSpeedConfig, TrainConfig, TrainingConfig
from parammix_core.config.validation import FinalConfig, ValidationConfig

__all__ = [
    "BUILTIN_DOMAINS",
    "DEFAULT_GROUPS",
    "NOT_HASHED",
    "Bounds",
    "ConfigError",
    "DataConfig",
    "DeepSpeedConfig",
    "DomainSpec",
    "EvalTask",
    "EvaluationConfig",
    "Experiment",
    "FinalConfig",
    "ImportedRuns",
    "ModelConfig",
    "ProbeConfig",
    "RuntimeConfig",
    "SearchConfig",
    "StoreConfig",
    "StrategySettings",
    "Strict",
    "TargetCorpus",
    "TrainConfig",
    "TrainingConfig",
    "ValidationConfig",
    "apply_overrides",
    "config_path",
    "load_experiment",
    "load_yaml",
    "parse_experiment",
    "presets",
    "resolve_experiment",
]
