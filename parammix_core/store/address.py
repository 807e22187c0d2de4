"""Content addresses: the canonical JSON an artifact's key hashes, and `ArtifactRef`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from parammix_core import __version__

KEY_CHARS = 24


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class ArtifactRef(BaseModel):
    """The address of an artifact; small and JSON-able, what tasks pass between each other."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    name: str
    key: str

    @classmethod
    def for_spec(cls, stage: str, name: str, spec: dict[str, Any]) -> ArtifactRef:
        body = {"stage": stage, "name": name, "spec": spec, "code": __version__}
        key = hashlib.sha256(canonical_json(body).encode()).hexdigest()
        return cls(stage=stage, name=name, key=key)

    @property
    def path(self) -> str:
        return f"{self.stage}/{self.name}-{self.key[:KEY_CHARS]}"
