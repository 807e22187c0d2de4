"""interference_probe: gradients and Hessian-vector products at the base, heat maps in the UI."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, run_stage, stage_task, store_key


@stage_task(
    name="interference_probe",
    task_run_name="interference_probe",
    cache_key_fn=store_key(stages.probe_ref),
    **RESULTS,
    **RETRIES,
)
def interference_probe(
    exp: Experiment, data: ArtifactRef, base: ArtifactRef, experts: list[ArtifactRef]
) -> ArtifactRef:
    store, ref = run_stage(
        exp, "interference probe", stages.interference_probe, data, base, experts
    )
    info = store.load_json(ref, "probe.json")
    rows = [
        f"| {d} | " + " | ".join(f"{v:.3f}" for v in row) + " |"
        for d, row in zip(info["domains"], info["relative_curvature"], strict=True)
    ]
    header = "| H of \\ g of | " + " | ".join(info["domains"]) + " |"
    rule = "| --- " * (len(info["domains"]) + 1) + "|"
    create_markdown_artifact(
        f"# Interference probe ({info['method']})\n\nRelative effective curvature "
        "||H_k g_j|| / ||H_k g_k||:\n\n" + "\n".join([header, rule, *rows]),
        key=artifact_key(exp, "interference-probe"),
        description="Cross-domain curvature at the base: where merging stands in for mixing",
    )
    return ref
