"""Stage fit_surrogates: per-metric surrogates on the evaluated rows, with noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from parammix_core.config import Experiment
from parammix_core.interference import (
    predicted_delta_norms,
)
from parammix_core.noise import group_noise
from parammix_core.stages.evaluate import load_doc_scores, load_rows
from parammix_core.stages.imports import load_imported
from parammix_core.stages.probe_files import load_probe
from parammix_core.stages.proposals import PROPOSAL_COLUMNS, load_proposals
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json
from parammix_core.surrogate import SurrogateSet, fit_surrogates


def surrogate_ref(
    exp: Experiment,
    evals: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
    proposals: Sequence[ArtifactRef] | None = None,
    imported: ArtifactRef | None = None,
) -> ArtifactRef:
    spec = {
        "evals": [e.key for e in evals],
        "folds": exp.search.cv_folds,
        "seed": exp.seed,
        "probe": probe.key if probe is not None else None,
        "proposals": [p.key for p in proposals or ()],
        "imported": imported.key if imported is not None else None,
    }
    return ArtifactRef.for_spec("surrogates", "lightgbm", spec, code=code_version("surrogates"))


def surrogate_targets(rows: pd.DataFrame) -> list[str]:
    """Every measured metric: tasks, groups and per-domain losses (not their stderr)."""
    return [
        c
        for c in rows.columns
        if c.split(".")[0] in ("task", "group", "loss") and not c.endswith(".stderr")
    ]


def fit(
    exp: Experiment,
    store: Store,
    evals: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
    proposals: Sequence[ArtifactRef] | None = None,
    imported: ArtifactRef | None = None,
) -> ArtifactRef:
    """Surrogates per metric on every row: the evaluated merges (with the proposal that asked
    for each, when given) and the imported runs. The rows gain the probe's predicted
    ||Delta(alpha)|| if probed. A metric some imported runs lack is not fitted."""
    ref = surrogate_ref(exp, evals, probe, proposals, imported)
    if store.exists(ref):
        return ref
    alpha_cols = [f"alpha.{d}" for d in exp.domains]
    rows = load_rows(store, evals)
    merged = rows[alpha_cols].to_numpy()  # (N_merged, K): the rows with per-document scores
    if proposals:
        rows = join_proposals(load_proposals(store, proposals), rows, alpha_cols)
    if imported is not None:
        rows = pd.concat([rows, load_imported(store, imported)], ignore_index=True)
    x = rows[alpha_cols].to_numpy()
    names = [t for t in surrogate_targets(rows) if rows[t].notna().all()]
    targets = {t: rows[t].to_numpy() for t in names}
    # a multi-fidelity search's rows are counted only at its end (validate-config checks the
    # other strategies'): fewer folds rather than no report, down to two
    folds = max(2, min(exp.search.cv_folds, len(x) // 2))
    surrogates = fit_surrogates(x, targets, folds, exp.seed)
    tasks = exp.evaluation.tasks
    noise = group_noise(merged, load_doc_scores(store, evals, tasks), tasks)
    out = store.staging(ref)
    (out / "surrogates.json").write_text(canonical_json(surrogates.to_json()))
    (out / "cv.json").write_text(canonical_json(surrogates.cv))
    (out / "noise.json").write_text(canonical_json(noise))
    if probe is not None:
        _, summary, info = load_probe(store, probe)
        scale, replay = info["step_scale"], exp.training.replay
        rows["predicted_delta_norm"] = predicted_delta_norms(x, summary.gram, scale, replay)
    rows.to_parquet(out / "rows.parquet", index=False)
    return store.publish(ref, out, info={"rows": len(rows), "cv": surrogates.cv})


def join_proposals(proposed: pd.DataFrame, rows: pd.DataFrame, alpha_cols: list[str]):
    """Each evaluated row beside the proposal it answers (both in the run's order)."""
    if len(proposed) != len(rows) or not np.allclose(
        proposed[alpha_cols].to_numpy(), rows[alpha_cols].to_numpy(), rtol=0, atol=1e-12
    ):
        raise ValueError(
            f"{len(proposed)} proposals do not match the {len(rows)} evaluated rows in order"
        )
    return pd.concat([proposed[PROPOSAL_COLUMNS], rows], axis=1)


def load_surrogates(store: Store, ref: ArtifactRef) -> SurrogateSet:
    return SurrogateSet.from_json(store.load_json(ref, "surrogates.json"))
