"""merge_and_evaluate: a batch of mixtures merged in memory and scored with lm-eval."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from parammix_core import stages
from parammix_core.config import Experiment
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


@stage_task(
    name="evaluation_suite",
    task_run_name="evaluation_suite",
    cache_key_fn=store_key(stages.suite_ref),
    **RESULTS,
)
def evaluation_suite(exp: Experiment, data: ArtifactRef) -> None:
    """The built-in tasks' documents written from the prepared data, before any training: a
    count their sources cannot reach fails here, naming its field."""
    stages.builtin_suite(exp, open_store(exp), data)


@stage_task(name="plan_mixtures", task_run_name="plan_mixtures")
def plan_mixtures(exp: Experiment) -> list[list[list[float]]]:
    """The mixtures to evaluate, in batches of `search.batch_size`."""
    return stages.mixture_batches(exp)


@stage_task(name="already_scored", task_run_name="already_scored")
def already_scored(
    exp: Experiment,
    batches: list[list[list[float]]],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    probe: ArtifactRef | None = None,
) -> list[str]:
    """Keys of the batches the store holds before they are scored: what a run did not add."""
    store = open_store(exp)
    refs = [stages.eval_ref(exp, alphas, data, base, experts, probe) for alphas in batches]
    return [ref.key for ref in refs if store.exists(ref)]


@stage_task(
    name="merge_and_evaluate",
    task_run_name="merge_and_evaluate[batch {index}]",
    cache_key_fn=store_key(stages.eval_ref),
    **RESULTS,
    **RETRIES,
)
def merge_and_evaluate(
    exp: Experiment,
    alphas: list[list[float]],
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    probe: ArtifactRef | None = None,
    index: int | str = 0,
) -> ArtifactRef:
    """`index` names the batch (its task run and table artifact): planned batches count from
    0, given ones (`given-0`, ...) apart, so neither replaces the other's table."""
    store, ref = run_stage(
        exp,
        f"merge_and_evaluate batch {index}",
        stages.merge_and_evaluate,
        alphas,
        data,
        base,
        experts,
        probe,
    )
    rows = store.load_parquet(ref, "rows.parquet")
    shown = [c for c in rows.columns if c.startswith(("alpha.", "group.")) and "stderr" not in c]
    create_table_artifact(
        rows[shown].round(4).to_dict(orient="records"),
        key=artifact_key(exp, f"evaluated-batch-{index}"),
        description=f"Merged mixtures of batch {index} and their capability-group scores",
    )
    return ref
