"""One pydantic model describes a whole Param-Mix experiment.

The defaults *are* the embedded default: a tiny Llama pre-trained here on four domains built
from what every machine has. `configs/default.yaml` is this model dumped to YAML (a test keeps
them equal). A real run overrides only what differs: base checkpoint, corpora, lm-eval tasks,
store URL, device.

Every model forbids unknown keys, so a typo fails at load time with the field's path
(`data.domains.1.paths: Extra inputs are not permitted`). Fields that do not change any
artifact (logging, parallelism, the store's location) are listed in `NOT_HASHED` and kept out
of the content hashes that address artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

BUILTIN_DOMAINS = ("math", "code", "sft", "web")
DEFAULT_GROUPS = ("math", "code", "knowledge", "language", "reasoning")

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
UnitFloat = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Strict(BaseModel):
    """Base for every config section: unknown keys and NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)


# --- data -----------------------------------------------------------------------------------


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


# --- model ----------------------------------------------------------------------------------


class ModelConfig(Strict):
    """The shared base: a checkpoint, or a tiny Llama built from these shapes and pre-trained."""

    checkpoint: str | None = Field(
        None, description="HF checkpoint dir or fsspec URL; None builds and pre-trains a tiny one."
    )
    trust_remote_code: bool = Field(False, description="Allow custom modeling code (off).")
    hidden_size: PositiveInt = 96
    num_layers: PositiveInt = 3
    num_heads: PositiveInt = 4
    num_kv_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 256
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


# --- training -------------------------------------------------------------------------------


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


# --- evaluation -----------------------------------------------------------------------------


class EvalTask(Strict):
    """One lm-eval task, the capability group it counts for, and the metric read from it."""

    name: str = Field(min_length=1)
    group: str = Field(min_length=1)
    metric: str = Field("acc", description="lm-eval metric name; higher is better.")


def _default_tasks() -> list[EvalTask]:
    # p_correct: probability of the right choice, normalised over the choices. Continuous, so
    # it separates tiny models' mixtures where 0/1 accuracy is mostly noise.
    return [
        EvalTask(name="pm_arithmetic", group="math", metric="p_correct"),
        EvalTask(name="pm_code_completion", group="code", metric="p_correct"),
        EvalTask(name="pm_stdlib_knowledge", group="knowledge", metric="p_correct"),
        EvalTask(name="pm_word_order", group="language", metric="p_correct"),
        EvalTask(name="pm_sequences", group="reasoning", metric="p_correct"),
    ]


class EvaluationConfig(Strict):
    """Benchmarks (lm-eval tasks grouped into capabilities) and per-domain held-out loss."""

    tasks: list[EvalTask] = Field(default_factory=_default_tasks, min_length=1)
    include_path: str | None = Field(
        None, description="Directory of your own lm-eval task YAMLs; None uses the built-in suite."
    )
    builtin_docs_per_task: PositiveInt = Field(
        300, description="Documents generated per built-in task."
    )
    batch_size: PositiveInt = 64
    num_fewshot: NonNegativeInt = 0
    heldout_loss: bool = Field(True, description="Also score held-out loss per domain.")
    proxy: Literal["merge", "corrected"] = Field(
        "merge",
        description="merge: theta(alpha); corrected: theta(alpha) plus the interference "
        "probe's predicted Delta(alpha), the second-order merge-vs-mix gap (needs the probe).",
    )

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[EvalTask]) -> list[EvalTask]:
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate task names: {dupes}")
        return tasks

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(t.group for t in self.tasks))


# --- interference probe ---------------------------------------------------------------------


class ProbeConfig(Strict):
    """The second-order probe at the base: gradients g_k and Hessian-vector products H_k g_j."""

    enabled: bool = Field(True, description="Run the interference_probe stage.")
    batches_per_domain: PositiveInt = Field(2, description="Batches averaged per domain.")
    batch_size: PositiveInt = Field(8, description="Blocks per probe batch.")
    method: Literal["auto", "forward_over_reverse", "double_backward"] = Field(
        "auto", description="HVP kernel; auto tries forward-over-reverse, then double backward."
    )
    chunk_size: PositiveInt | None = Field(
        None, description="HVP vectors per vmap call (None: all K at once); lower bounds memory."
    )


# --- search ---------------------------------------------------------------------------------


class Bounds(Strict):
    min: UnitFloat = 0.0
    max: UnitFloat = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class RandomSettings(Strict):
    """Random search: Dirichlet draws (the baseline)."""

    concentration: PositiveFloat = Field(1.0, description="< 1 favours corners, > 1 the centre.")


class SurrogateSettings(Strict):
    """LightGBM on the evaluated rows, candidate rounds N -> N/2 -> N/4 around the best."""

    n_candidates: PositiveInt = Field(8192, description="Candidates in the first round.")
    rounds: PositiveInt = Field(3, description="Rounds; each halves the pool and the region.")
    top_k: PositiveInt = Field(16, description="Averaged into each round's centre.")
    min_rows: Annotated[int, Field(ge=2)] = Field(8, description="Random draws below this.")
    spacing: UnitFloat = Field(0.05, description="Min L1 distance to evaluated mixtures.")
    explore: UnitFloat = Field(
        0.25, description="Share of proposals drawn near the best evaluated mixture."
    )


class BayesSettings(Strict):
    """botorch GP + log expected improvement (per unit cost when costs are recorded)."""

    n_init: Annotated[int, Field(ge=2)] | None = Field(
        None, description="Random draws before the GP (None: number of domains + 1)."
    )
    num_restarts: PositiveInt = 8
    raw_samples: PositiveInt = 256
    cost_exponent: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        1.0, description="EI / cost^exponent; 0 ignores costs."
    )


class GradientSettings(Strict):
    """Mirror-descent steps for MixMin and MergeMix."""

    steps: PositiveInt = 500
    lr: PositiveFloat = 1.0


class StrategySettings(Strict):
    """Settings of each search strategy; only the selected one is used."""

    random: RandomSettings = Field(default_factory=RandomSettings)
    surrogate: SurrogateSettings = Field(default_factory=SurrogateSettings)
    bayes: BayesSettings = Field(default_factory=BayesSettings)
    mixmin: GradientSettings = Field(default_factory=GradientSettings)
    mergemix: GradientSettings = Field(default_factory=lambda: GradientSettings(steps=200, lr=0.5))


class SearchConfig(Strict):
    """Which merges to evaluate, and how the surrogate picks the mixture."""

    n_mixtures: PositiveInt = Field(
        96, description="Merged mixtures evaluated (vertices and uniform included)."
    )
    dirichlet_concentration: PositiveFloat = Field(1.0, description="Sampling of the rest.")
    batch_size: PositiveInt = Field(16, description="Mixtures per merge_and_evaluate task.")
    n_candidates: PositiveInt = Field(20_000, description="Surrogate-scored candidate pool.")
    top_k: PositiveInt = Field(16, description="Average the top-k predicted candidates.")
    cv_folds: Annotated[int, Field(ge=2)] = 5
    group_weights: dict[str, PositiveFloat] = Field(
        default_factory=dict, description="Utility weight per capability group (default: equal)."
    )
    bounds: dict[str, Bounds] = Field(
        default_factory=dict, description="Per-domain floor/cap on the chosen mixture."
    )
    strategy: Literal["surrogate", "random", "bayes", "mixmin", "mergemix"] = Field(
        "surrogate", description="How mixtures to evaluate are proposed (parammix_core.search)."
    )
    strategies: StrategySettings = Field(
        default_factory=StrategySettings, description="Settings per strategy."
    )

    @model_validator(mode="after")
    def _sizes(self) -> SearchConfig:
        if self.top_k > self.n_candidates:
            raise ValueError("top_k must not exceed n_candidates")
        return self


# --- store and runtime ----------------------------------------------------------------------


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
        return self

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


def load_experiment(path: str | Path | None = None) -> Experiment:
    """Load a YAML experiment; None gives the embedded default."""
    if path is None:
        return Experiment()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return parse_experiment(data, str(path))
