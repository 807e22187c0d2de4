"""The multi-fidelity search's tasks: a round's (mixture, fidelity) proposals, real runs scored
as the merges are, the validation's runs that join, and the choice at fidelity 1."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from parammix_core.config import Experiment
from parammix_core.report import summary_lines
from parammix_core.stages import fidelity_choice, load_choice
from parammix_core.stages import multifidelity as mf
from parammix_core.store import ArtifactRef
from tasks.common import (
    RESULTS,
    RETRIES,
    artifact_key,
    open_store,
    prepare,
    run_stage,
    stage_task,
    store_key,
)


class FidelityRound(BaseModel):
    """A round in the store: its merges (merge_and_evaluate batches), the mixtures of its real
    runs at the experts' budget and of its long runs (the final budget), and whether the search
    is done (budget spent or max_rounds reached)."""

    ref: ArtifactRef
    merges: list[list[list[float]]]
    runs: list[list[float]]
    long_runs: list[list[float]]
    done: bool


def _round_key(context, parameters) -> str:
    return store_key(mf.round_ref)(context, parameters) + "/work"


@stage_task(
    name="propose_fidelities",
    task_run_name="propose_fidelities[round {round_index}]",
    cache_key_fn=_round_key,
    **RESULTS,
    **RETRIES,
)
def propose_fidelities(
    exp: Experiment,
    round_index: int,
    merges: list[ArtifactRef],
    runs: list[ArtifactRef],
    joined: list[ArtifactRef],
    experts: list[ArtifactRef],
) -> FidelityRound:
    prepare(exp)
    store = open_store(exp)
    ref = mf.propose_round(exp, store, round_index, merges, runs, joined, experts)
    rows = store.load_parquet(ref, "rows.parquet")
    create_table_artifact(
        rows.round(4).to_dict(orient="records"),
        key=artifact_key(exp, f"fidelity-round-{round_index}"),
        description=f"Merges (fidelity 0) and real runs (above 0; 1 the highest configured "
        f"budget) proposed in round {round_index}; "
        f"{store.manifest(ref)['info']['spent']:.2f} real-run equivalents spent before it",
    )
    batches, runs, long_runs, done = mf.round_work(exp, store, ref)
    return FidelityRound(ref=ref, merges=batches, runs=runs, long_runs=long_runs, done=done)


@stage_task(
    name="evaluate_run",
    task_run_name="evaluate_run[{label}]",
    cache_key_fn=store_key(mf.run_eval_ref),
    **RESULTS,
    **RETRIES,
)
def evaluate_run(
    exp: Experiment,
    run: ArtifactRef,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    probe: ArtifactRef | None = None,
    label: str = "run",
) -> ArtifactRef:
    _, ref = run_stage(
        exp, f"score real run {label}", mf.evaluate_run, run, data, base, experts, probe
    )
    return ref


@stage_task(name="joined_runs", task_run_name="joined_runs")
def joined_runs(exp: Experiment, data: ArtifactRef, base: ArtifactRef) -> list[ArtifactRef]:
    """The validation's real runs already in the store: they join the search as observations."""
    return mf.joined_runs(exp, open_store(exp), data, base)


@stage_task(
    name="choose_at_fidelity",
    task_run_name="choose_at_fidelity",
    cache_key_fn=store_key(fidelity_choice.choice_ref),
    **RESULTS,
    **RETRIES,
)
def choose_at_fidelity(exp: Experiment, data: ArtifactRef, evals: list[ArtifactRef]) -> ArtifactRef:
    store, ref = run_stage(exp, "choose at fidelity 1", fidelity_choice.choose, data, evals)
    create_markdown_artifact(
        "# Chosen mixture\n\n" + "\n".join(summary_lines(load_choice(store, ref))),
        key=artifact_key(exp, "chosen-mixture"),
        description="The mixture the multi-fidelity GP ranks first at fidelity 1 (real runs)",
    )
    return ref
