"""validate_proxy: real mixed runs from the base, ranked against the merges standing in."""

from __future__ import annotations

from prefect import unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.report import validation_section
from parammix_core.stages import mixed, validate, validation_table
from parammix_core.store import ArtifactRef
from tasks.artifacts import inline_figures
from tasks.common import (
    RESULTS,
    RETRIES,
    artifact_key,
    open_store,
    run_stage,
    stage_task,
    store_key,
)
from tasks.final import final_run


@stage_task(
    name="train_mixed",
    task_run_name="train_mixed[{label}]",
    cache_key_fn=store_key(mixed.mixed_ref),
    **RESULTS,
    **RETRIES,
)
def train_mixed(
    exp: Experiment,
    alpha: list[float],
    seed: int,
    data: ArtifactRef,
    base: ArtifactRef,
    label: str = "run",
) -> ArtifactRef:
    _, ref = run_stage(exp, f"mixed run {label}", mixed.train_mixed, alpha, seed, data, base)
    return ref


@stage_task(
    name="validate_proxy",
    task_run_name="validate_proxy",
    cache_key_fn=store_key(validate.validation_ref),
    **RESULTS,
    **RETRIES,
)
def validate_proxy(
    exp: Experiment,
    mixtures: list[list[float]],
    runs: list[ArtifactRef],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    probe: ArtifactRef | None = None,
    utility_scale: dict | None = None,
) -> ArtifactRef:
    store, ref = run_stage(
        exp,
        "validate proxy",
        validate.validate_proxy,
        mixtures,
        runs,
        data,
        base,
        experts,
        probe,
        utility_scale,
    )
    section = validation_section(validation_table.load_validation(store, ref))
    create_markdown_artifact(
        "# Proxy validation\n\n" + inline_figures(store, ref, section),
        key=artifact_key(exp, "proxy-validation"),
        description="How the merge ranks mixtures against real mixed runs, beside trivial "
        "rankings and the noise ceiling",
    )
    return ref


def run_validation(
    exp: Experiment,
    choice: ArtifactRef | None,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    probe: ArtifactRef | PrefectFuture | None,
) -> PrefectFuture | None:
    """Inside the flow: the validation mixtures (uniform, Dirichlet draws, the choice when
    given), their mapped real runs, then the comparison, all submitted (None when disabled).
    Nothing waits here, so work queued next (final runs, merges) trains beside it."""
    if not exp.validation.enabled:
        return None
    chosen = stages.load_choice(open_store(exp), choice) if choice is not None else None
    alpha = [chosen.alpha[d] for d in exp.domains] if chosen is not None else None
    mixtures = validate.validation_mixtures(exp, alpha)
    plan = validate.run_plan(exp, len(mixtures))
    train = final_run if exp.validation.budget == "final" else train_mixed
    runs = train.map(
        unmapped(exp),
        [mixtures[i] for i, _ in plan],
        [seed for _, seed in plan],
        unmapped(data),
        unmapped(base),
        label=validate.run_labels(exp, len(mixtures), plan),
    )
    scale = chosen.scale if chosen is not None else None
    return validate_proxy.submit(exp, mixtures, list(runs), data, base, experts, probe, scale)
