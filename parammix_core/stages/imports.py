"""Stage import_runs: mixture -> metric tables made elsewhere, as rows beside the merges'.

`search.import_runs` names two CSV files, checked exactly as `parammix import` checks them
(`parammix_core.runs`; errors name file, line and column). Their rows join the history every
adaptive strategy proposes from and the rows the surrogates are fitted on. To be comparable,
the ratios must name exactly the experiment's domains and the metrics must use the
experiment's metric names: every `group.<group>` (the utility needs them), optionally
`task.<name>` and `loss.<domain>` columns; anything else is an error rather than a silently
ignored column. The artifact is addressed by the files' contents, so an edited table is
imported again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from parammix_core.config import Experiment
from parammix_core.runs import ALPHA, RUN_ID, RunsError, load_runs
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store


def imports_ref(exp: Experiment) -> ArtifactRef:
    runs = exp.search.import_runs
    if runs is None:
        raise RunsError("search.import_runs is not set: there are no runs to import")
    spec = {
        "ratios": _digest(runs.ratios, "ratios"),
        "metrics": _digest(runs.metrics, "metrics"),
        "domains": exp.domains,
        "groups": exp.evaluation.groups,
    }
    return ArtifactRef.for_spec("imports", "runs", spec, code=code_version("imports"))


def _digest(path: str, kind: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise RunsError(f"search.import_runs.{kind}: no such file {path}")
    return hashlib.sha256(p.read_bytes()).hexdigest()


def import_runs(exp: Experiment, store: Store) -> ArtifactRef:
    ref = imports_ref(exp)
    if store.exists(ref):
        return ref
    runs = exp.search.import_runs
    assert runs is not None
    rows = imported_rows(exp, runs.ratios, runs.metrics)
    out = store.staging(ref)
    rows.to_parquet(out / "rows.parquet", index=False)
    return store.publish(ref, out, info={"runs": len(rows)})


def imported_rows(exp: Experiment, ratios: str | Path, metrics: str | Path) -> pd.DataFrame:
    """The joined, checked table in the layout of the evaluated rows, domains in config order."""
    domains, table = load_runs(ratios, metrics)
    if sorted(domains) != sorted(exp.domains):
        raise RunsError(
            f"{ratios}: weight columns {domains} differ from the experiment's domains {exp.domains}"
        )
    names = [c for c in table.columns if c != RUN_ID and not c.startswith(ALPHA)]
    foreign = [c for c in names if not _is_metric(exp, c)]
    if foreign:
        raise RunsError(
            f"{metrics}: column(s) {foreign} are not metrics of this experiment; metrics are "
            f"group.<group> (groups {exp.evaluation.groups}), task.<task>, loss.<domain>"
        )
    missing = [f"group.{g}" for g in exp.evaluation.groups if f"group.{g}" not in names]
    if missing:
        raise RunsError(f"{metrics}: missing column(s) {missing}; the utility needs every group")
    alphas = [f"{ALPHA}{d}" for d in exp.domains]
    out = table[[RUN_ID, *alphas, *names]].copy()
    out.insert(0, "strategy", "imported")
    out.insert(1, "source", "imported")
    out.insert(2, "round", -1)
    out.insert(3, "proposal", range(len(out)))
    return out


def _is_metric(exp: Experiment, name: str) -> bool:
    prefix, _, rest = name.removesuffix(".stderr").partition(".")
    if prefix == "group":
        return rest in exp.evaluation.groups
    if prefix == "loss":
        return rest in exp.domains
    if prefix == "task":
        return rest in {t.name for t in exp.evaluation.tasks}
    return False


def load_imported(store: Store, ref: ArtifactRef) -> pd.DataFrame:
    return store.load_parquet(ref, "rows.parquet")
