"""Content addresses: the canonical JSON an artifact's key hashes, and `ArtifactRef`."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from parammix_core import __version__

KEY_CHARS = 24

# The stages whose artifacts the pipeline publishes (`<stage>/<name>-<key>/`): `store gc`
# looks for leftovers of crashed writes in these folders and nowhere else.
STAGES = (
    "data",
    "base",
    "expert",
    "probe",
    "search_inputs",
    "imports",
    "proposals",
    "evals",
    "runevals",
    "surrogates",
    "choice",
    "mixed",
    "validation",
    "final",
    "report",
)

# One path segment: never empty, `.`, `..` or anything with a separator, so `ref.path` always
# stays inside the store whatever a manifest or a listing says.
Segment = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")]
Key = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class ArtifactRef(BaseModel):
    """The address of an artifact; small and JSON-able, what tasks pass between each other."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Segment
    name: Segment
    key: Key

    @classmethod
    def for_spec(
        cls, stage: str, name: str, spec: dict[str, Any], code: str = __version__
    ) -> ArtifactRef:
        """The address of what `stage` computes from `spec` with the code of version `code`
        (the pipeline's stages pass `stages.versions.code_version(stage)`)."""
        body = {"stage": stage, "name": name, "spec": spec, "code": code}
        key = hashlib.sha256(canonical_json(body).encode()).hexdigest()
        return cls(stage=stage, name=name, key=key)

    @property
    def path(self) -> str:
        return f"{self.stage}/{self.name}-{self.key[:KEY_CHARS]}"
