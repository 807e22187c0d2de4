"""Config of proxy validation (real mixed runs) and of the final mid-training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from parammix_core.config.base import Count, Flag, PositiveFloat, Strict
from parammix_core.config.training import TrainConfig


class ValidationConfig(Strict):
    """Really train on sampled mixtures and compare with the merges' ranking."""

    enabled: Flag = Field(True, description="Run the validate_proxy stage.")
    n_mixtures: Count(1000, lo=3) = Field(
        12,
        description="Non-vertex mixtures trained for real (uniform + Dirichlet draws), "
        "plus the chosen one.",
    )
    concentration: PositiveFloat = Field(1.0, description="Dirichlet concentration of the draws.")
    reruns: Count(100, lo=0) = Field(
        6,
        description="Mixtures trained again with another data order (the draws first, then "
        "uniform, then the chosen one): the noise ceiling, and a rerun mixture is ranked by "
        "the mean of its two runs; n_mixtures + 1 reruns train every mixture twice. From "
        "R reruns the noise variance is known within a factor 0.45-4.4 at R = 6 (90 %), "
        "0.26-254 at R = 2.",
    )
    budget: Literal["experts", "final"] = Field(
        "final",
        description="How long each real run trains: final (final.train), the budget the "
        "chosen mixture is trained at, so the merges' ranking is judged where it is used (the "
        "runs of uniform and the chosen mixture on the experiment's seed are final training's "
        "own); experts (training.expert), what a merge stands in for, cheaper when the final "
        "budget is much longer. On the embedded default the benchmarks separate 360-step runs "
        "and not 120-step ones (benchmarks/RESULTS.md).",
    )
    metrics: Literal["all", "loss"] = Field(
        "all",
        description="all: benchmarks and held-out loss, as the merges; loss: held-out "
        "loss only (cheap).",
    )
    rescaled: Flag = Field(
        False,
        description="Also score the norm-matched merge (the merged update stretched to the "
        "alpha-weighted experts' length), a diagnostic of the proxy sweep.",
    )


def _final_train() -> TrainConfig:
    return TrainConfig(steps=360, lr=1e-3, warmup_steps=20, schedule="cosine")


class FinalConfig(Strict):
    """Mid-train the base on the chosen mixture and on the uniform and natural baselines."""

    enabled: Flag = Field(True, description="Run the final_training stage.")
    train: TrainConfig = Field(
        default_factory=_final_train,
        description="Hyper-parameters of the final runs (the same for the chosen mixture and "
        "the baselines); several times an expert's budget.",
    )
    seeds: Count(100) = Field(2, description="Data-order seeds per mixture (the spread).")
