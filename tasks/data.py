"""prepare_domains: per-domain corpora, tokenizer and packed token blocks."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, run_stage, stage_task, store_key


@stage_task(
    name="prepare_domains",
    task_run_name="prepare_domains",
    cache_key_fn=store_key(stages.data_ref),
    **RESULTS,
    **RETRIES,
)
def prepare_domains(exp: Experiment) -> ArtifactRef:
    store, ref = run_stage(exp, "prepare_domains", stages.prepare_domains)
    stats = store.load_json(ref, "stats.json")
    create_table_artifact(
        [{"domain": d, **s} for d, s in stats.items()],
        key=artifact_key(exp, "domains"),
        description="Per-domain corpus statistics",
    )
    return ref
