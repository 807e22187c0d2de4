"""report: markdown and plots in the store, and in the Prefect UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, store_key


@task(name="report", cache_key_fn=store_key(stages.report_ref), **RESULTS, **RETRIES)
def report(
    exp: Experiment, surrogates: ArtifactRef, choice: ArtifactRef, probe: ArtifactRef | None = None
) -> ArtifactRef:
    store = stages.open_store(exp)
    ref = stages.report(exp, store, surrogates, choice, probe)
    path = stages.report_path(store, ref)
    body = (stages.report_text(store, ref)).replace("](", f"]({store.uri(ref)}/")
    create_markdown_artifact(f"Report: `{path}`\n\n{body}", key="report")
    return ref
