"""What makes a folder a store: its `STORE_ID` marker, and which folders without one hold
nothing but the pipeline's own artifacts (a store from before the marker)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fsspec

from parammix_core.store.address import KEY_CHARS, STAGES
from parammix_core.store.errors import StoreError

# A store's identity and marker: a folder without it is not a store, and nothing but a
# store is ever written into (besides a new or empty folder, which becomes one).
MARKER = "STORE_ID"
STORE_ID = re.compile(r"^[0-9a-f]{32}$")
_ARTIFACT_FOLDER = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.\-]*-[0-9a-f]{{{KEY_CHARS}}}$")


def open_location(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The filesystem and folder of a store URL. A URL that cannot be opened, or a file
    system's root ("/", "file:///", "s3://": "" would read as the working folder), is refused
    naming it."""
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError, OSError) as err:  # OSError: ftp:// to a host not there
        raise StoreError(f"store {url!r}: cannot open ({err})") from None
    if not root.rstrip("/"):
        raise StoreError(
            f"store {url!r}: the root of a file system; store.url needs a folder in it"
        )
    return fs, root.rstrip("/")


def entries(fs: Any, folder: str) -> list[str]:
    """Names in `folder` of filesystem `fs`; [] when there is no such folder."""
    try:
        paths = [p.rstrip("/") for p in fs.ls(folder, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    # some S3 servers list an emptied prefix as an entry of itself
    return [p.rsplit("/", 1)[-1] for p in paths if p != folder]


def foreign_entries(fs: Any, root: str) -> list[str]:
    """What a folder without the marker holds that the pipeline never writes: anything but
    `<stage>/<name>-<key>/` folders, `_work/<stage>/` and a marker another writer is
    creating. A user's `data/` or `report/` folder is foreign by its contents."""
    foreign = []
    for entry in sorted(entries(fs, root)):
        if entry.startswith(MARKER):
            continue
        if entry not in (*STAGES, "_work") or not fs.isdir(f"{root}/{entry}"):
            foreign.append(entry)
            continue
        inner = entries(fs, f"{root}/{entry}")
        foreign += [f"{entry}/{name}" for name in inner if not _written_here(entry, name)]
    return foreign


def _written_here(folder: str, name: str) -> bool:
    """Whether the pipeline writes an entry `name` in the store's top-level `folder`."""
    return name in STAGES if folder == "_work" else bool(_ARTIFACT_FOLDER.match(name))


def apart_from_cache(url: str, root: Path, cache: Path) -> None:
    """A local store must not overlap the cache: its staging folders are built and removed by
    path, so a store inside it (or holding it) would see artifacts deleted as published."""
    store, cache = root.resolve(), cache.resolve()
    if store.is_relative_to(cache):
        raise StoreError(
            f"store {url}: inside the cache folder {cache} (PARAMMIX_CACHE), which Param-Mix "
            "empties as it works; give store.url a folder outside it"
        )
    if cache.is_relative_to(store):
        raise StoreError(
            f"store {url}: holds the cache folder {cache} (PARAMMIX_CACHE); give the store and "
            "PARAMMIX_CACHE separate folders"
        )
