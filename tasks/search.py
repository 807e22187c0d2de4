"""optimise_mixture: maximise the utility over surrogate predictions on the simplex."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.report import summary_lines
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, open_store, prepare, stage_task, store_key


@stage_task(
    name="optimise_mixture",
    task_run_name="optimise_mixture",
    cache_key_fn=store_key(stages.choice_ref),
    **RESULTS,
    **RETRIES,
)
def optimise_mixture(
    exp: Experiment,
    surrogates: ArtifactRef,
    data: ArtifactRef,
    evals: list[ArtifactRef],
    validation: ArtifactRef | None = None,
) -> ArtifactRef:
    prepare(exp)
    store = open_store(exp)
    ref = stages.optimise(exp, store, surrogates, data, evals, validation)
    lines = summary_lines(stages.load_choice(store, ref))
    create_markdown_artifact(
        "# Chosen mixture\n\n" + "\n".join(lines),
        key=artifact_key(exp, "chosen-mixture"),
        description="The mixture maximising the predicted utility, against the baselines",
    )
    return ref
