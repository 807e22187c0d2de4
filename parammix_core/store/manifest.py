"""Checking files against an artifact's manifest: their sizes and sha256 digests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from parammix_core.store.address import ArtifactRef
from parammix_core.store.errors import StoreError

MANIFEST = "MANIFEST.json"
Verify = Literal["sha256", "size"]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _compare(
    ref: ArtifactRef,
    rel: str,
    size: int,
    want: dict[str, Any],
    level: Verify,
    digest: Callable[[], str],
) -> None:
    if size != want["size"]:
        raise StoreError(
            f"{ref.path}/{rel}: size {size} does not match the manifest ({want['size']})"
        )
    if level == "sha256" and digest() != want["sha256"]:
        raise StoreError(f"{ref.path}/{rel}: sha256 does not match the manifest")


def _check_local(ref: ArtifactRef, root: Path, manifest: dict[str, Any], level: Verify) -> None:
    for rel, want in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise StoreError(f"{ref.path}/{rel}: listed in the manifest but missing")
        _compare(ref, rel, path.stat().st_size, want, level, lambda p=path: sha256_file(p))
