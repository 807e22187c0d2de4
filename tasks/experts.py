"""train_expert: one short-horizon expert per domain, from the shared base."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, run_stage, stage_task, store_key


@stage_task(
    name="train_expert",
    task_run_name="train_expert[{domain}]",
    cache_key_fn=store_key(stages.expert_ref),
    **RESULTS,
    **RETRIES,
)
def train_expert(exp: Experiment, domain: str, data: ArtifactRef, base: ArtifactRef) -> ArtifactRef:
    store, ref = run_stage(exp, f"expert {domain}", stages.train_expert, domain, data, base)
    info = store.manifest(ref)["info"]
    create_markdown_artifact(
        f"Expert **{domain}**: final loss {info['final_loss']:.4f}, {info['seconds']:.0f} s",
        key=artifact_key(exp, f"expert-{domain.lower().replace('_', '-')}"),
        description=f"Expert of domain {domain}: final training loss and time",
    )
    return ref
