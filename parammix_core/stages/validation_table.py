"""The validation's table: how the merges rank mixtures against the real runs, computed from
the scores the validate_proxy stage stored, each time they are read.

The scores are the expensive part (every merge and real run evaluated); the comparison is a
fraction of a second. Computing it on read keeps it out of the stage's code version, so a
change to the statistics re-keys the report only, never a scored run.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

from parammix_core import proxy_validation
from parammix_core.noise import run_noise
from parammix_core.search.common import scale_from_spec
from parammix_core.stages.finite import finite_json
from parammix_core.stages.validate import RUN_DOCS
from parammix_core.store import ArtifactRef, Store


class Task(NamedTuple):
    """What the analysis reads of an evaluation task."""

    name: str
    group: str


def load_validation(store: Store, ref: ArtifactRef) -> dict[str, Any]:
    """The stage's validation.json with its `analysis` (`proxy_validation.analyse`, NaN as
    None) computed from the stored rows."""
    info = store.load_json(ref, "validation.json")
    compare = info["compare"]
    analysis = proxy_validation.analyse(
        store.load_parquet(ref, "rows.parquet"),
        compare["domains"],
        [Task(name, group) for name, group in compare["tasks"]],
        compare["weights"],
        chosen=compare["chosen"],
        scale=scale_from_spec(compare["scale"]),
    )
    out = {**info, "analysis": finite_json(analysis)}
    if RUN_DOCS in (store.manifest(ref) or {}).get("files", {}):
        docs = store.load_parquet(ref, RUN_DOCS)
        out["task_noise"] = finite_json(task_run_noise(docs, [n for n, _ in compare["tasks"]]))
    return out


def task_run_noise(docs: pd.DataFrame, tasks: list[str]) -> dict[str, dict[str, float]]:
    """Per task, its run-to-run noise and the part its documents explain (`noise.run_noise`),
    over the mixtures trained twice; {} without three of them."""
    by_kind = {kind: part.set_index("mixture") for kind, part in docs.groupby("kind")}
    if "rerun" not in by_kind or "mix" not in by_kind:
        return {}
    twice = sorted(set(by_kind["rerun"].index) & set(by_kind["mix"].index))
    out = {}
    for task in tasks:
        cols = [c for c in docs.columns if c.rsplit(".", 1)[0] == task]
        if cols:
            cols.sort(key=lambda c: int(c.rsplit(".", 1)[1]))
            first, second = (by_kind[k].loc[twice, cols].to_numpy(float) for k in ("mix", "rerun"))
            out[task] = run_noise(first, second)
    return out
