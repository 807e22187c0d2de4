"""A published interference probe as its readers need it (merges corrected by the probe,
surrogates and the validation), apart from the stage that computes and draws it: their code
versions then cover what they read, not the probe's computation or its figures.
"""

from __future__ import annotations

from typing import Any

from parammix_core.interference import ProbeSummary
from parammix_core.probe_shards import ProbeShards
from parammix_core.store import ArtifactRef, Store


def load_probe(store: Store, ref: ArtifactRef) -> tuple[ProbeShards, ProbeSummary, dict[str, Any]]:
    """The probe's vectors (read on demand), their norms and Gram matrix, and probe.json."""
    info = store.load_json(ref, "probe.json")
    summary = ProbeSummary.from_tensors(
        len(info["domains"]), store.load_tensors(ref, "probe.safetensors")
    )
    return ProbeShards(store.local_dir(ref)), summary, info
