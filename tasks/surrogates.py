"""fit_surrogates: one LightGBM regressor per metric, cross-validated."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.common import RESULTS, RETRIES, artifact_key, open_store, prepare, stage_task, store_key


@stage_task(
    name="fit_surrogates",
    task_run_name="fit_surrogates",
    cache_key_fn=store_key(stages.surrogate_ref),
    **RESULTS,
    **RETRIES,
)
def fit_surrogates(
    exp: Experiment,
    evals: list[ArtifactRef],
    probe: ArtifactRef | None = None,
    proposals: list[ArtifactRef] | None = None,
    imported: ArtifactRef | None = None,
) -> ArtifactRef:
    prepare(exp)
    store = open_store(exp)
    ref = stages.fit(exp, store, evals, probe, proposals, imported)
    cv = store.load_json(ref, "cv.json")
    create_table_artifact(
        [{"metric": m, **{k: round(v, 4) for k, v in s.items()}} for m, s in cv.items()],
        key=artifact_key(exp, "surrogate-fit"),
        description="Cross-validated fit per metric: LightGBM vs linear baseline",
    )
    return ref
