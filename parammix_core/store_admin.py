"""Looking after a store: list what is published, re-verify it, collect what crashes left.

A crashed or losing writer leaves files no manifest points to: an artifact folder without a
manifest, or an upload folder (`files-<id>/`) beside the one its manifest names. Training
state under `_work/` outlives its use once the artifact is published. None of these is ever
read; `find_garbage` lists them (only those untouched for `older_than` seconds, so a write in
progress is left alone) and `collect` deletes them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

from parammix_core.store import KEY_CHARS, MANIFEST, ArtifactRef, Store, StoreError


@dataclass(frozen=True)
class Leftover:
    path: str  # relative to the store root
    bytes: int
    reason: str


def _mtime(info: dict[str, Any]) -> float:
    stamp = info.get("mtime", info.get("LastModified", info.get("created")))
    if isinstance(stamp, dt.datetime):
        return stamp.timestamp()
    return float(stamp or 0.0)


def _scan(store: Store) -> dict[str, dict[str, dict[str, Any]]]:
    """Artifact folder (stage/name-key) -> {path inside it: file info}, `_work` included."""
    root = store.root.rstrip("/") + "/"
    folders: dict[str, dict[str, dict[str, Any]]] = {}
    with store._explained("list"):
        found = store.fs.find(store.root, detail=True)
    for path, info in found.items():
        rel = path[len(root) :] if path.startswith(root) else path
        parts = rel.split("/")
        if parts[0] == "_work" and len(parts) > 3:
            folders.setdefault("/".join(parts[:3]), {})["/".join(parts[3:])] = info
        elif len(parts) > 2:
            folders.setdefault("/".join(parts[:2]), {})["/".join(parts[2:])] = info
    return folders


def list_artifacts(store: Store) -> list[dict[str, Any]]:
    """One row per published artifact: its producing stage, config hash, size, creation."""
    rows = []
    for m in store.artifacts():
        rows.append(
            {
                "path": f"{m['stage']}/{m['name']}-{m['key'][:KEY_CHARS]}",
                "stage": m["stage"],
                "name": m["name"],
                "config_hash": m["key"][:12],
                "files": len(m["files"]),
                "bytes": sum(f["size"] for f in m["files"].values()),
                "created": m.get("created", ""),
            }
        )
    return rows


def verify_all(store: Store) -> list[tuple[str, str | None]]:
    """Re-hash every published artifact: (path, None if intact else the error)."""
    out = []
    for m in store.artifacts():
        ref = ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"])
        try:
            store.check(ref, verify="sha256")
            out.append((ref.path, None))
        except StoreError as err:
            out.append((ref.path, str(err)))
    return out


def find_garbage(store: Store, older_than: float = 3600.0) -> list[Leftover]:
    """Files no reader will ever use, untouched for at least `older_than` seconds."""
    now = time.time()
    out = []
    for folder, files in sorted(_scan(store).items()):
        if now - max(_mtime(i) for i in files.values()) < older_than:
            continue  # possibly a write in progress
        size = sum(int(i.get("size") or 0) for i in files.values())
        if folder.startswith("_work/"):
            if _published(store, folder.removeprefix("_work/")):
                out.append(Leftover(folder, size, "training state of a published artifact"))
            continue
        manifest = _manifest(store, folder)
        if manifest is None:
            out.append(Leftover(folder, size, "no manifest: an unfinished or crashed write"))
            continue
        stray: dict[str, int] = {}
        for rel, info in files.items():
            top = rel.split("/", 1)[0]
            if _is_stray(top, manifest.get("upload")):
                stray[top] = stray.get(top, 0) + int(info.get("size") or 0)
        for top, nbytes in sorted(stray.items()):
            out.append(Leftover(f"{folder}/{top}", nbytes, "not referenced by the manifest"))
    return out


def _is_stray(top: str, upload: str | None) -> bool:
    """Not the manifest and not the upload folder it names (format 1: files at the top)."""
    if top == MANIFEST:
        return False
    if upload is None:
        return top.startswith(("files-", f"{MANIFEST}.tmp-"))
    return top != upload


def _manifest(store: Store, folder: str) -> dict[str, Any] | None:
    stage, rest = folder.split("/", 1)
    name, _, short = rest.rpartition("-")
    try:
        raw = store.fs.cat_file(f"{store.root}/{folder}/{MANIFEST}")
    except FileNotFoundError:
        return None
    manifest = json.loads(raw)
    if manifest.get("stage") != stage or manifest.get("name") != name:
        return None
    return manifest if manifest.get("key", "").startswith(short) else None


def _published(store: Store, folder: str) -> bool:
    return store.fs.exists(f"{store.root}/{folder}/{MANIFEST}")


def collect(store: Store, leftovers: list[Leftover]) -> int:
    """Delete the leftovers; the bytes freed."""
    freed = 0
    with store._explained("delete"):
        for item in leftovers:
            store.fs.rm(f"{store.root}/{item.path}", recursive=True)
            freed += item.bytes
    return freed
