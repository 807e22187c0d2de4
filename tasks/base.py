"""base_model: the shared start of every expert (a checkpoint, or a tiny pre-trained one)."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, run_stage, stage_task, store_key


@stage_task(
    name="base_model",
    task_run_name="base_model",
    cache_key_fn=store_key(stages.base_ref),
    **RESULTS,
    **RETRIES,
)
def base_model(exp: Experiment, data: ArtifactRef) -> ArtifactRef:
    store, ref = run_stage(exp, "base model", stages.build_base, data)
    info = store.manifest(ref)["info"]
    lines = [f"- **{k}**: {v}" for k, v in info.items()]
    create_markdown_artifact(
        "# Base model\n\n" + "\n".join(lines),
        key=artifact_key(exp, "base-model"),
        description="The shared base every expert starts from",
    )
    return ref
