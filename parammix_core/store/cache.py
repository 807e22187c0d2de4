"""Verified copies of a remote store's artifacts in the local cache."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parammix_core.store.address import ArtifactRef, canonical_json
from parammix_core.store.errors import StoreError
from parammix_core.store.manifest import MANIFEST, _check_local, inside

if TYPE_CHECKING:
    from parammix_core.store.fsspec_store import Store


def cached_copy(store: Store, ref: ArtifactRef, manifest: dict[str, Any]) -> Path:
    """The artifact's files in the cache, verified against `manifest`.

    Downloaded file by file (streamed: memory stays bounded by the transfer block, not the
    file) into a fresh folder renamed into place once verified, so a crash leaves no half copy
    that looks whole; a cached copy is re-verified at each use and fetched again if damaged.
    """
    target = store.cache_dir / "artifacts" / ref.path
    if (target / MANIFEST).exists():
        try:
            _check_local(ref, target, manifest, store.verify)
            return target
        except StoreError:
            shutil.rmtree(target, ignore_errors=True)  # damaged cached copy: fetch again
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    with store._explained("read"):
        for rel in manifest["files"]:
            local = inside(tmp, rel)
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                store._get(store.file_path(ref, rel, manifest), local)
            except FileNotFoundError:
                shutil.rmtree(tmp, ignore_errors=True)
                raise StoreError(f"{ref.path}/{rel}: listed in the manifest but missing") from None
    try:
        _check_local(ref, tmp, manifest, store.verify)
    except StoreError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / MANIFEST).write_text(canonical_json(manifest))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:  # another worker downloaded it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
