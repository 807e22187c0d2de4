"""Looking after a store: list what is published, re-verify it, collect what crashes left.

A crashed or losing writer leaves files no manifest points to: upload folders
(`files-<id>/`) in an artifact folder without a manifest or beside the one its manifest
names, and temporary manifests. Training state under `_work/` (and the lock file beside it)
outlives its use once the artifact is published. None of these is ever read; `find_garbage`
lists them (only those untouched for `older_than` seconds, so a write in progress is left
alone) and `collect` deletes them.

Every function here acts only on a store (its `STORE_ID` marker is there) and looks only
at the folders of the pipeline's own stages; anything it does not recognise is left alone,
whatever its age, so pointing `store.url` at the wrong folder never deletes a user's files.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from parammix_core.store import KEY_CHARS, MANIFEST, STAGES, ArtifactRef, Store, StoreError
from parammix_core.store.manifest import UPLOAD, parse_manifest

_FOLDER = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.\-]*-[0-9a-f]{{{KEY_CHARS}}}$")
_TMP_MANIFEST = re.compile(rf"^{re.escape(MANIFEST)}\.tmp-[0-9a-f]{{32}}$")
_LOCK = ".lock"  # `_work/<stage>/<folder>.lock`: stages.exclusive's lock on a training's folder


@dataclass(frozen=True)
class Leftover:
    path: str  # relative to the store root
    bytes: int
    reason: str
    deletable: bool = True  # False: reported, never deleted


def _mtime(info: dict[str, Any]) -> float:
    stamp = info.get("mtime", info.get("LastModified", info.get("created")))
    if isinstance(stamp, dt.datetime):
        return stamp.timestamp()
    return float(stamp or 0.0)


def _scan(store: Store) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Artifact folder (`stage/name-key` or `_work/stage/name-key`) -> {top-level entry:
    infos of the files under it}, for the pipeline's stages only."""
    root = store.root.rstrip("/") + "/"
    folders: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with store._explained("list"):
        found = store.fs.find(store.root, detail=True)
    for path, info in found.items():
        parts = path.removeprefix(root).split("/")
        depth = 1 if parts[0] == "_work" else 0  # `_work/<stage>/...`
        if depth and len(parts) == 3 and parts[2].endswith(_LOCK):  # the lock joins its folder
            parts = [*parts[:2], parts[2].removesuffix(_LOCK), _LOCK]
        if len(parts) < depth + 3 or any(p in ("", ".", "..") for p in parts):
            continue
        stage, folder, top = parts[depth : depth + 3]
        if stage in STAGES and _FOLDER.match(folder):
            key = "/".join(parts[: depth + 2])
            folders.setdefault(key, {}).setdefault(top, []).append(info)
    return folders


def list_artifacts(store: Store) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """One row per published artifact (its producing stage, config hash, size, creation),
    and (folder, why) for each manifest that cannot be read."""
    store.require_store()
    rows, damaged = [], []
    for folder, m in store.manifests():
        if isinstance(m, StoreError):
            damaged.append((folder, str(m)))
            continue
        rows.append(
            {
                "path": folder,
                "stage": m["stage"],
                "name": m["name"],
                "config_hash": m["key"][:12],
                "files": len(m["files"]),
                "bytes": sum(f["size"] for f in m["files"].values()),
                "created": m.get("created", ""),
            }
        )
    return rows, damaged


def verify_all(store: Store) -> list[tuple[str, str | None]]:
    """Re-hash every published artifact: (path, None if intact else the error); a manifest
    that cannot be read is a damaged artifact too, and the check goes on."""
    store.require_store()
    out = []
    for folder, m in store.manifests():
        if isinstance(m, StoreError):
            out.append((folder, str(m)))
            continue
        try:
            store.check(_ref(m), verify="sha256")
            out.append((folder, None))
        except StoreError as err:
            out.append((folder, str(err)))
    return out


def _ref(manifest: dict[str, Any]) -> ArtifactRef:
    return ArtifactRef(stage=manifest["stage"], name=manifest["name"], key=manifest["key"])


def find_garbage(store: Store, older_than: float = 3600.0) -> list[Leftover]:
    """Files no reader will ever use, untouched for at least `older_than` seconds, and
    (not deletable) what an artifact folder holds that gc does not recognise."""
    store.require_store()
    now = time.time()
    out = []
    for folder, entries in sorted(_scan(store).items()):
        if folder.startswith("_work/"):
            infos = [i for files in entries.values() for i in files]
            published = isinstance(_manifest(store, folder.removeprefix("_work/")), dict)
            if published and _old(infos, now, older_than):
                size = sum(int(i.get("size") or 0) for i in infos)
                out.append(Leftover(folder, size, "training state of a published artifact"))
            continue
        manifest = _manifest(store, folder)
        if isinstance(manifest, StoreError):
            out.append(Leftover(folder, 0, f"left alone: {manifest}", deletable=False))
            continue
        for top, infos in sorted(entries.items()):
            reason = _why_garbage(top, manifest)
            size = sum(int(i.get("size") or 0) for i in infos)
            if reason is None:
                continue
            if not reason:
                out.append(Leftover(f"{folder}/{top}", size, "unknown file: left alone", False))
            elif _old(infos, now, older_than):
                out.append(Leftover(f"{folder}/{top}", size, reason))
    return out


def _old(infos: list[dict[str, Any]], now: float, older_than: float) -> bool:
    return now - max(_mtime(i) for i in infos) >= older_than


def _why_garbage(top: str, manifest: dict[str, Any] | None) -> str | None:
    """Why a top-level entry of an artifact folder is a leftover; None: it is in use;
    "": not something a writer makes (never deleted)."""
    upload = manifest.get("upload") if manifest else None
    if top == MANIFEST and manifest is not None:
        return None
    if _TMP_MANIFEST.match(top):
        return "temporary manifest of an interrupted write"
    if UPLOAD.match(top):
        if manifest is None:
            return "upload of an unfinished or crashed write (no manifest)"
        return None if top == upload else "upload not named by the manifest"
    if (
        manifest is not None
        and upload is None
        and any(rel == top or rel.startswith(f"{top}/") for rel in manifest["files"])
    ):
        return None  # format 1: the files sit at the top of the artifact folder
    return ""


def _manifest(store: Store, folder: str) -> dict[str, Any] | StoreError | None:
    """The folder's manifest, None if it has none, the error if it cannot be read."""
    try:
        raw = store.fs.cat_file(f"{store.root}/{folder}/{MANIFEST}")
    except FileNotFoundError:
        return None
    try:
        manifest = parse_manifest(folder, raw)
    except StoreError as err:
        return err
    stage, rest = folder.split("/", 1)
    name, _, short = rest.rpartition("-")
    if (manifest["stage"], manifest["name"]) != (stage, name) or not manifest["key"].startswith(
        short
    ):
        return StoreError(f"{folder}: {MANIFEST} is for another artifact")
    return manifest


def collect(store: Store, leftovers: list[Leftover]) -> int:
    """Delete the deletable leftovers (and artifact folders they leave empty); bytes freed."""
    store.require_store()
    freed = 0
    with store._explained("delete"):
        for item in leftovers:
            if not item.deletable:
                continue
            path = f"{store.root}/{item.path}"
            if item.path.startswith("_work/"):  # a training's folder, its lock, or both
                for target in (path, f"{path}{_LOCK}"):
                    if store.fs.exists(target):
                        store.fs.rm(target, recursive=True)
            else:
                store.fs.rm(path, recursive=True)
            freed += item.bytes
            if store.is_local:
                _remove_if_empty(f"{store.root}/{item.path.rsplit('/', 1)[0]}")
    return freed


def _remove_if_empty(folder: str) -> None:
    with suppress(OSError):  # only an empty folder is removed
        os.rmdir(folder)
