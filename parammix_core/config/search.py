"""Config of the search for a mixture and its strategies."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from parammix_core.config.base import (
    Count,
    Flag,
    PositiveFloat,
    Strict,
    Text,
    UnitFloat,
)
from parammix_core.config.urls import known_scheme


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

    n_candidates: Count(1_000_000) = Field(8192, description="Candidates in the first round.")
    rounds: Count(100) = Field(3, description="Rounds; each halves the pool and the region.")
    top_k: Count(100_000) = Field(16, description="Averaged into each round's centre.")
    min_rows: Count(100_000, lo=2) = Field(8, description="Random draws below this.")
    spacing: UnitFloat = Field(0.05, description="Min L1 distance to evaluated mixtures.")
    explore: UnitFloat = Field(
        0.25, description="Share of proposals drawn near the best evaluated mixture."
    )


class DemixSettings(Strict):
    """DeMix's procedure: prior-centred Dirichlet draws under usage caps, then iterations that
    each evaluate half as many mixtures, drawn from the best a LightGBM predictor ranks."""

    initial: Count(100_000) = Field(
        32,
        description="Mixtures of iteration 0 (prior draws; the initial design and imported "
        "runs count towards it); iteration i evaluates initial / 2^i.",
    )
    halvings: Count(20, lo=0) = Field(
        2, description="Iterations after iteration 0, each half the size of the one before."
    )
    pool: Count(1_000_000) = Field(
        20_000, description="Prior draws the predictor ranks in each iteration."
    )
    top: Count(1_000_000) = Field(
        128,
        description="Best-predicted pool mixtures the proposals are drawn from; their mean is "
        "the final mixture proposed once the iterations are done.",
    )
    temperature: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        0.7, description="The prior is raised to this power and renormalised (< 1 flattens it)."
    )
    max_usage: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] = Field(
        4.0, description="Usage cap: a domain's weight is at most max_usage x its prior weight."
    )
    strength_min: PositiveFloat = Field(
        0.5, description="Smallest Dirichlet concentration scale (prior x strength)."
    )
    strength_max: PositiveFloat = Field(
        5.0, description="Largest; each draw's strength is log-uniform in [min, max]."
    )
    min_weight: Annotated[float, Field(ge=0, le=0.1, allow_inf_nan=False)] = Field(
        2e-4, description="Drawn weights below this are dropped (set to 0) before the caps."
    )

    @field_validator("top")
    @classmethod
    def _top_within_pool(cls, top: int, info: ValidationInfo) -> int:
        pool = info.data.get("pool")
        if pool is not None and top > pool:
            raise ValueError(f"top ({top}) must not exceed pool ({pool})")
        return top

    @field_validator("strength_max")
    @classmethod
    def _strengths_ordered(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("strength_min")
        if low is not None and high < low:
            raise ValueError(f"strength_max ({high}) must not be below strength_min ({low})")
        return high


class BayesSettings(Strict):
    """botorch GP + log expected improvement (per unit cost when costs are recorded)."""

    n_init: Count(10_000, lo=2) | None = Field(
        None, description="Random draws before the GP (None: number of domains + 1)."
    )
    num_restarts: Count(1000) = 8
    raw_samples: Count(100_000) = 256
    cost_exponent: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        0.0,
        description="EI / cost^exponent over the rows' measured seconds. 0 (default) ignores "
        "them, so the same config proposes the same mixtures on every machine; > 0 looks less "
        "where evaluations were slower, and proposals then depend on this machine's timings.",
    )


FIDELITY_ORDER = ("merge", "run", "long")  # cheapest first


class MultiFidelitySettings(Strict):
    """One GP over (mixture, fidelity): merges are the cheap fidelity (0), real mixed runs at
    the experts' budget the expensive one (1), and optionally runs at the final budget above
    them; EI per unit of measured cost, the cost's exponent decaying round by round; the choice
    is the GP's best mixture at the highest fidelity."""

    LOOP: ClassVar[frozenset[str]] = frozenset({"budget", "per_round", "max_rounds", "fidelities"})
    # settings of the choice alone: the rounds' proposals do not depend on them
    CHOICE: ClassVar[frozenset[str]] = frozenset({"choice", "held_out_folds", "shuffles"})

    fidelities: list[Literal["merge", "run", "long"]] = Field(
        ["merge", "run"],
        description="What the search may evaluate: merges and real runs at the experts' "
        "budget (the default), real runs alone (BO on real runs, the initial design trained "
        "for real) or merges alone (a GP on merges); `long` adds real runs at the final "
        "training's budget (final.train), the highest fidelity. The choice is made at the "
        "most expensive one.",
    )
    budget: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)] = Field(
        4.0,
        description="What the search may spend, in real-run equivalents (measured seconds "
        "over the experts' mean training seconds); rounds stop once it is spent.",
    )
    per_round: Count(1000) = Field(
        8, description="Proposals per round, each a merge or a real run as the acquisition picks."
    )
    max_rounds: Count(10_000) = Field(
        40, description="Rounds at most, whatever is left of the budget."
    )
    cost_exponent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        1.0,
        description="EI / cost^exponent in round 0; 0 ignores costs. Costs are measured "
        "seconds, so a fresh store on another machine may see other proposals (a rerun on "
        "the same store reuses every artifact).",
    )
    exponent_decay: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        0.8, description="The exponent of round t is cost_exponent * exponent_decay^t."
    )
    n_init: Count(10_000, lo=2) | None = Field(
        None, description="Random merges before the GP (None: number of domains + 1)."
    )
    num_restarts: Count(1000) = 8
    raw_samples: Count(100_000) = 256
    choice: Literal["lower_bound", "mean"] = Field(
        "lower_bound",
        description="How the GP picks the mixture at the highest fidelity: the best lower end "
        "of its search.interval.level interval (where runs were measured, not a corner the GP "
        "extrapolates to from a few runs), or the best posterior mean.",
    )
    held_out_folds: Count(1000, lo=2) = Field(
        5,
        description="Groups of the highest fidelity's runs the choice's GP predicts held out, "
        "each by a refit without it (about 2 s per refit on 130 rows on a 2-core CPU).",
    )
    shuffles: Count(10_000) = Field(
        19,
        description="Shuffles of those runs' utilities among their mixtures that the GP must "
        "predict worse than the truth, every one, before the choice says it beats a baseline; "
        "at least 2 / (1 - search.interval.level) - 1 (19 at level 0.9).",
    )

    @model_validator(mode="after")
    def _effort(self) -> MultiFidelitySettings:
        if self.raw_samples < self.num_restarts:
            raise ValueError("raw_samples must be at least num_restarts")
        if not self.fidelities or len(set(self.fidelities)) < len(self.fidelities):
            raise ValueError(
                f"fidelities must name merge, run and/or long once each; got {self.fidelities}"
            )
        self.fidelities = sorted(self.fidelities, key=FIDELITY_ORDER.index)  # cheapest first
        return self


class GradientSettings(Strict):
    """Mirror-descent steps for MixMin and MergeMix."""

    steps: Count(1_000_000) = 500
    lr: PositiveFloat = 1.0


class StrategySettings(Strict):
    """Settings of each search strategy; only the selected one is used."""

    random: RandomSettings = Field(default_factory=RandomSettings)
    surrogate: SurrogateSettings = Field(default_factory=SurrogateSettings)
    demix: DemixSettings = Field(default_factory=DemixSettings)
    bayes: BayesSettings = Field(default_factory=BayesSettings)
    mixmin: GradientSettings = Field(default_factory=GradientSettings)
    mergemix: GradientSettings = Field(default_factory=lambda: GradientSettings(steps=200, lr=0.5))
    multifidelity: MultiFidelitySettings = Field(default_factory=MultiFidelitySettings)


class TargetCorpus(Strict):
    """Target documents of your own, read as domain corpora are (any file the data loaders
    read), tokenised with the prepared tokenizer and packed into blocks."""

    paths: list[Annotated[Text, AfterValidator(known_scheme)]] = Field(
        min_length=1,
        max_length=1000,
        description="Local paths, globs or fsspec URLs of .txt, .jsonl, .parquet or .arrow files.",
    )
    text_field: str = Field(
        "text", min_length=1, max_length=256, description="Column or JSON key of the text."
    )


def _target_kind(value: object) -> str:
    """A mapping (or a TargetCorpus) is a corpus, anything else one of the named targets."""
    return "corpus" if isinstance(value, dict | BaseModel) else "tasks|heldout"


# Errors name the branch that was read: `search.target.corpus.paths: ...`.
Target = Annotated[
    Annotated[Literal["tasks", "heldout"], Tag("tasks|heldout")]
    | Annotated[TargetCorpus, Tag("corpus")],
    Discriminator(_target_kind),
]


class ImportedRuns(Strict):
    """Runs made elsewhere (`parammix import` checks the same files): `run_id` + one weight
    column per domain in `ratios`, `run_id` + `group.<group>` (required) and any other metric
    of the experiment (`task.<name>`, `loss.<domain>`) in `metrics`."""

    ratios: Text = Field(description="CSV file of mixtures: run_id, one column per domain.")
    metrics: Text = Field(description="CSV file of measured metrics: run_id, group.<g>, ...")


class UtilitySettings(Strict):
    """How capability groups are put on one scale before their weighted mean."""

    normalise: Literal["raw", "zscore", "rank", "noise"] = Field(
        "raw",
        description="raw: the scores as measured (the group with the widest spread decides); "
        "zscore: over the evaluated mixtures; rank: percentile among them (DeMix); noise: "
        "spread in units of the paired standard error against uniform.",
    )
    calibrate: Flag = Field(
        False,
        description="Map each group's merge scores onto the real runs' scale before summing "
        "(a line per group fitted at the validation's mixtures, which then train before the "
        "choice and without it): groups the merge exaggerates stop deciding the choice.",
    )


class IntervalSettings(Strict):
    """The interval around the chosen mixture's predicted gain over the baselines."""

    replicates: Count(10_000, lo=0) = Field(
        100, description="Bootstrap replicates over mixtures and documents (0: no interval)."
    )
    level: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = Field(
        0.9, description="Central share of the replicates the interval holds."
    )


class SearchConfig(Strict):
    """Which merges to evaluate, and how the surrogate picks the mixture."""

    n_mixtures: Count(100_000) = Field(
        96, description="Merged mixtures evaluated (vertices and uniform included)."
    )
    batch_size: Count(10_000) = Field(
        16, description="Mixtures proposed per round (per merge_and_evaluate task for random)."
    )
    n_candidates: Count(1_000_000) = Field(20_000, description="Surrogate-scored candidate pool.")
    top_k: Count(100_000) = Field(16, description="Average the top-k predicted candidates.")
    cv_folds: Count(100, lo=2) = 5
    group_weights: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        max_length=1000,
        description="Utility weight per capability group (default: equal).",
    )
    bounds: dict[str, Bounds] = Field(
        default_factory=dict,
        max_length=256,
        description="Per-domain floor/cap on proposals and the choice.",
    )
    strategy: Literal[
        "random", "surrogate", "demix", "bayes", "mixmin", "mergemix", "multifidelity"
    ] = Field(
        "random",
        description="How the mixtures to evaluate are proposed (parammix_core.search); random "
        "is a fixed plan evaluated all at once, the others propose round by round; "
        "multifidelity also trains real mixed runs, until its budget is spent.",
    )
    strategies: StrategySettings = Field(
        default_factory=StrategySettings, description="Settings per strategy."
    )
    target: Target = Field(
        "tasks",
        description="What mixmin (experts' log-probabilities) and mergemix (loss of the merge) "
        "optimise on. tasks: the gold answers of the evaluation tasks' documents given their "
        "prompts, each capability group weighted as in group_weights (what the utility "
        "measures); heldout: the first target_sequences held-out blocks of every domain; "
        "{paths, text_field}: your own documents, packed into at most target_sequences blocks.",
    )
    target_sequences: Count(100_000) = Field(
        32,
        description="Held-out blocks per domain (target heldout), or blocks of the target "
        "corpus, that mixmin and mergemix optimise on.",
    )
    utility: UtilitySettings = Field(default_factory=UtilitySettings)
    interval: IntervalSettings = Field(default_factory=IntervalSettings)
    import_runs: ImportedRuns | None = Field(
        None, description="Mixture -> metric tables from elsewhere, joined to the evaluated rows."
    )

    @model_validator(mode="after")
    def _sizes(self) -> SearchConfig:
        if self.top_k > self.n_candidates:
            raise ValueError("top_k must not exceed n_candidates")
        shuffles, alpha = self.strategies.multifidelity.shuffles, significance(self)
        if self.strategy == "multifidelity" and (1 + shuffles) * alpha < 1 - 1e-9:
            raise ValueError(
                f"strategies.multifidelity.shuffles: {shuffles} shuffles cannot show the GP "
                f"beats them at one-sided {alpha:.3g} (interval.level {self.interval.level:g}); "
                f"need at least {math.ceil(1 / alpha - 1e-9) - 1}"
            )
        return self


def significance(search: SearchConfig) -> float:
    """The one-sided significance of `search.interval.level`'s central interval."""
    return (1 - search.interval.level) / 2
