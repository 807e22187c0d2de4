"""Manifests: what a published artifact holds (sizes and sha256 of its files), read
defensively. A manifest comes from the store, which anybody with write access to the bucket
can edit, so every file name in it is checked before it is joined to a path."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from parammix_core.store.address import ArtifactRef
from parammix_core.store.errors import StoreError

MANIFEST = "MANIFEST.json"
Verify = Literal["sha256", "size"]
UPLOAD = re.compile(r"^files-[0-9a-f]{16}$")  # the upload folder a writer makes for its files
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def unsafe_name(rel: object) -> str | None:
    """Why `rel` cannot name a file inside an artifact folder, or None if it can.

    Relative POSIX paths only: no absolute paths, drive letters, backslashes, NUL bytes, or
    empty, `.` or `..` segments; so `folder / rel` never leaves `folder`.
    """
    if not isinstance(rel, str) or not rel:
        return "not a non-empty string"
    if len(rel) > 1024:
        return "longer than 1024 characters"
    if rel.startswith("/") or _DRIVE.match(rel):
        return "an absolute path"
    if "\\" in rel or "\x00" in rel:
        return "holds a backslash or a NUL byte"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "has an empty, '.' or '..' segment"
    return None


def parse_manifest(where: str, raw: bytes) -> dict[str, Any]:
    """A manifest's JSON, checked for shape and safe file names; StoreError naming `where`."""
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{where}: {MANIFEST} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise StoreError(f"{where}: {MANIFEST} is damaged (no 'files' mapping)")
    for field in ("key", "stage", "name"):
        if not isinstance(manifest.get(field), str):
            raise StoreError(f"{where}: {MANIFEST} is damaged (no {field!r} string)")
    upload = manifest.get("upload")
    if upload is not None and not (isinstance(upload, str) and UPLOAD.match(upload)):
        raise StoreError(f"{where}: {MANIFEST} names an invalid upload folder {upload!r}")
    for rel, entry in manifest["files"].items():
        why = unsafe_name(rel)
        if why is not None or rel == MANIFEST:
            why = why or "the manifest's own name"
            raise StoreError(f"{where}: {MANIFEST} lists an unsafe file name {rel!r} ({why})")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("size"), int)
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and _DIGEST.match(entry["sha256"])
        ):
            raise StoreError(f"{where}: {MANIFEST} entry of {rel!r} needs a size and a sha256")
    return manifest


def inside(folder: Path, rel: str) -> Path:
    """`folder / rel`, refused when it resolves outside `folder` (a symlink escape)."""
    path = folder / rel
    if not path.resolve().is_relative_to(folder.resolve()):
        raise StoreError(f"{path}: resolves outside its artifact folder (a symbolic link?)")
    return path


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
        path = inside(root, rel)
        if not path.is_file():
            raise StoreError(f"{ref.path}/{rel}: listed in the manifest but missing")
        _compare(ref, rel, path.stat().st_size, want, level, lambda p=path: sha256_file(p))
