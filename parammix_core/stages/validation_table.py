"""The validation's table: how the merges rank mixtures against the real runs, computed from
the scores the validate_proxy stage stored, each time they are read.

The scores are the expensive part (every merge and real run evaluated); the comparison is a
fraction of a second. Computing it on read keeps it out of the stage's code version, so a
change to the statistics re-keys the report only, never a scored run.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from parammix_core import proxy_validation
from parammix_core.search.common import scale_from_spec
from parammix_core.stages.finite import finite_json
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
    return {**info, "analysis": finite_json(analysis)}
