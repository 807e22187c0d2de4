"""report: markdown and plots in the store, and in the Prefect UI."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.artifacts import publish_figures
from tasks.common import RESULTS, RETRIES, open_store, stage_task, store_key


@stage_task(
    name="report",
    task_run_name="report",
    cache_key_fn=store_key(stages.report_ref),
    **RESULTS,
    **RETRIES,
)
def report(
    exp: Experiment,
    surrogates: ArtifactRef,
    choice: ArtifactRef,
    probe: ArtifactRef | None = None,
    validation: ArtifactRef | None = None,
    final: ArtifactRef | None = None,
) -> ArtifactRef:
    store = open_store(exp)
    ref = stages.report(exp, store, surrogates, choice, probe, validation, final)
    path = stages.report_path(store, ref)
    body = (stages.report_text(store, ref)).replace("](", f"]({store.uri(ref)}/")
    create_markdown_artifact(f"Report: `{path}`\n\n{body}", key="report")
    publish_figures(store, ref, "plot")
    return ref
