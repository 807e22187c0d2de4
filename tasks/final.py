"""final_training: the base mid-trained on the chosen mixture and on the baselines."""

from __future__ import annotations

from prefect import unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.report import final_section
from parammix_core.stages import final, mixed
from parammix_core.store import ArtifactRef
from tasks.common import (
    RESULTS,
    RETRIES,
    artifact_key,
    open_store,
    run_stage,
    stage_task,
    store_key,
)


def plan_final(exp: Experiment, chosen: dict[str, float], data: ArtifactRef) -> list[list]:
    """[name, alpha, seed] of every final run: chosen, uniform and natural, each seed."""
    stats = open_store(exp).load_json(data, "stats.json")
    mixtures = final.final_mixtures(exp, chosen, stats)
    return [[n, a, s] for n, a in mixtures.items() for s in final.final_seeds(exp)]


@stage_task(
    name="final_run",
    task_run_name="final_run[{label}]",
    cache_key_fn=store_key(mixed.final_run_ref),
    **RESULTS,
    **RETRIES,
)
def final_run(
    exp: Experiment,
    alpha: list[float],
    seed: int,
    data: ArtifactRef,
    base: ArtifactRef,
    label: str = "run",
) -> ArtifactRef:
    _, ref = run_stage(exp, f"final run {label}", mixed.final_run, alpha, seed, data, base)
    return ref


@stage_task(
    name="score_final_run",
    task_run_name="score_final_run[{label}]",
    cache_key_fn=store_key(final.final_scores_ref),
    **RESULTS,
    **RETRIES,
)
def score_final_run(
    exp: Experiment, run: ArtifactRef, data: ArtifactRef, label: str = "run"
) -> ArtifactRef:
    _, ref = run_stage(exp, f"score final run {label}", final.score_final_run, run, data)
    return ref


@stage_task(
    name="final_training",
    task_run_name="final_training",
    cache_key_fn=store_key(final.final_summary_ref),
    **RESULTS,
    **RETRIES,
)
def final_training(
    exp: Experiment,
    runs: dict[str, list[ArtifactRef]],
    scores: dict[str, list[ArtifactRef]],
    utility_scale: dict | None = None,
) -> ArtifactRef:
    store = open_store(exp)
    ref = final.final_training(exp, store, runs, scores, utility_scale)
    table = store.load_parquet(ref, "comparison.parquet")
    summary = store.load_json(ref, "final.json")
    create_markdown_artifact(
        "# Final mid-training\n\n" + final_section(table, summary),
        key=artifact_key(exp, "final-training"),
        description="The chosen mixture mid-trained against uniform and natural, per group",
    )
    return ref


def run_final(
    exp: Experiment, choice: ArtifactRef, data: ArtifactRef, base: ArtifactRef
) -> PrefectFuture | None:
    """Inside the flow: the mapped final runs, each scored as it ends, then their comparison,
    submitted (None when disabled)."""
    if not exp.final.enabled:
        return None
    chosen = stages.load_choice(open_store(exp), choice)
    plan = plan_final(exp, chosen.alpha, data)
    labels = [f"{name}, seed {seed}" for name, _, seed in plan]
    trained = final_run.map(
        unmapped(exp),
        [alpha for _, alpha, _ in plan],
        [seed for _, _, seed in plan],
        unmapped(data),
        unmapped(base),
        label=labels,
    )
    scored = score_final_run.map(unmapped(exp), trained, unmapped(data), label=labels)
    runs: dict[str, list[PrefectFuture]] = {}
    scores: dict[str, list[PrefectFuture]] = {}
    for (name, _, _), run, score in zip(plan, trained, scored, strict=True):
        runs.setdefault(name, []).append(run)
        scores.setdefault(name, []).append(score)
    return final_training.submit(exp, runs, scores, chosen.scale)
