"""propose_mixtures (one round of the search), with the inputs some strategies need first:
search_inputs (MixMin's log-probabilities, MergeMix's learned weights, DeMix's prior) and
import_runs."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact
from pydantic import BaseModel

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, open_store, prepare, stage_task, store_key


class ProposedRound(BaseModel):
    """A round's proposals in the store, and the merge_and_evaluate batches they make."""

    ref: ArtifactRef
    batches: list[list[list[float]]]


def _proposed_round_key(context, parameters) -> str:
    return store_key(stages.proposals_ref)(context, parameters) + "/batches"


@stage_task(
    name="propose_mixtures",
    task_run_name="propose_mixtures[round {round_index}]",
    cache_key_fn=_proposed_round_key,
    **RESULTS,
    **RETRIES,
)
def propose_mixtures(
    exp: Experiment,
    round_index: int,
    evals: list[ArtifactRef],
    inputs: ArtifactRef | None = None,
    imported: ArtifactRef | None = None,
) -> ProposedRound:
    prepare(exp)
    store = open_store(exp)
    ref = stages.propose(exp, store, round_index, evals, inputs, imported)
    rows = store.load_parquet(ref, "rows.parquet")
    create_table_artifact(
        rows.round(4).to_dict(orient="records"),
        key=artifact_key(exp, f"proposals-round-{round_index}"),
        description=f"Mixtures proposed by {exp.search.strategy} in round {round_index}",
    )
    return ProposedRound(ref=ref, batches=stages.round_batches(exp, store, ref))


@stage_task(
    name="search_inputs",
    task_run_name="search_inputs",
    cache_key_fn=store_key(stages.inputs_ref),
    **RESULTS,
    **RETRIES,
)
def search_inputs(
    exp: Experiment, data: ArtifactRef, base: ArtifactRef, experts: list[ArtifactRef]
) -> ArtifactRef:
    prepare(exp)
    return stages.search_inputs(exp, open_store(exp), data, base, experts)


@stage_task(
    name="import_runs",
    task_run_name="import_runs",
    cache_key_fn=store_key(stages.imports_ref),
    **RESULTS,
    **RETRIES,
)
def import_runs(exp: Experiment) -> ArtifactRef:
    return stages.import_runs(exp, open_store(exp))
