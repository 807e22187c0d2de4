"""report: markdown and plots in the store, and in the Prefect UI."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.artifacts import inline_figures
from tasks.common import RESULTS, RETRIES, artifact_key, open_store, stage_task, store_key


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
    body = inline_figures(store, ref, stages.report_text(store, ref))
    create_markdown_artifact(
        f"Report: `{path}`\n\n{body}",
        key=artifact_key(exp, "report"),
        description="The report with its figures: chosen mixture, surrogate fit, landscapes",
    )
    return ref


# Marks the summary's log records: the CLI keeps them off its terminal log (it prints them).
SUMMARY = "parammix_summary"


def summarise(exp: Experiment, refs: dict[str, ArtifactRef]) -> list[str]:
    """Inside the flow, after every stage (run or cached): the run's summary as a flow-run
    artifact and log lines, so no run, cached or served, ends without its answer."""
    lines = stages.summary(open_store(exp), refs)
    logger = get_run_logger()
    for line in lines:
        logger.info(line, extra={SUMMARY: True})  # `parammix run` prints them on stdout
    create_markdown_artifact(
        "# Param-Mix summary\n\n" + "\n".join(f"- {line.strip()}" for line in lines),
        key=artifact_key(exp, "summary"),
        description="The chosen mixture, how sure the run is of it, and where the report is",
    )
    return lines


def summarise_evaluations(
    exp: Experiment, evals: list[ArtifactRef], known: list[str], given: bool
) -> list[str]:
    """Inside evaluate-mixtures: how many mixtures this run's batches hold and how many of
    the batches it scored itself (not among `known`, those the store held before), as a
    flow-run artifact and log lines: a nightly run with nothing new says so."""
    store = open_store(exp)
    created = sorted(store.manifest(ref)["created"] for ref in evals)
    new = sum(ref.key not in known for ref in evals)
    rows = len(stages.load_rows(store, evals)) if evals else 0
    which = "the given mixtures" if given else "the planned mixtures"
    lines = [
        f"{rows} mixture(s) of {which} in {len(evals)} batch(es) for experiment {exp.name!r}",
        f"{new} batch(es) scored by this run, the newest published {created[-1]}"
        if new
        else f"nothing new: every batch was already in the store (newest {created[-1]})",
    ]
    logger = get_run_logger()
    for line in lines:
        logger.info(line)
    create_markdown_artifact(
        "# Evaluated mixtures\n\n" + "\n".join(f"- {line}" for line in lines),
        key=artifact_key(exp, "evaluated-mixtures"),
        description="How many mixtures this run's batches hold, and how many it scored",
    )
    return lines
