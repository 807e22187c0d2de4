"""Fingerprints of the files an artifact is computed from (corpora, a user's task folder, a
tokenizer), so that editing one of them gives new keys and the stale artifacts are not reused.

`metadata` (the default) lists each file's path, size and modification stamp (fsspec's mtime
or S3's ETag / LastModified): one listing, no reading. `content` re-hashes the bytes (sha256),
for filesystems whose stamps cannot be trusted; a file's digest is remembered for the process
while everything the filesystem reports of it stays the same (a local file's inode change time
included), so a run hashes each file once.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from typing import Any, Literal

import fsspec

from parammix_core.data.errors import DataError
from parammix_core.data.loaders import dataset_pattern

Mode = Literal["metadata", "content"]
Entry = list[Any]  # [path, size, stamp or sha256]


def fingerprint(patterns: list[str], options: dict[str, Any], mode: Mode = "metadata") -> list:
    """One [path, size, stamp or sha256] per file matched by `patterns`, in sorted order (a
    `save_to_disk` folder: its data files)."""
    out: list[Entry] = []
    for pattern in patterns:
        fs, infos = _expand(dataset_pattern(pattern, options), options)
        for path, info in infos:
            stamp = _stamp(info)
            if mode == "content":
                stamp = _digest_of(fs.unstrip_protocol(path), _state(info), _options_key(fs))
            out.append([fs.unstrip_protocol(path), int(info.get("size") or 0), stamp])
    return out


def folder_fingerprint(folder: str, options: dict[str, Any], mode: Mode = "content") -> list:
    """Every file under `folder` (a user's lm-eval task folder: small YAMLs, hashed)."""
    fs, root = fsspec.core.url_to_fs(folder, **options)
    if not fs.isdir(root):
        return [[folder, None, "missing"]]
    return fingerprint([f"{folder.rstrip('/')}/**"], options, mode)


def _expand(pattern: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, list]:
    """The files of a path or glob with their listings' details (one listing per glob)."""
    try:
        fs, path = fsspec.core.url_to_fs(pattern, **options)
        fs.invalidate_cache()  # a cached listing would hide the very change we look for
        if not fsspec.core.has_magic(path):
            if fs.isdir(path):
                raise DataError(f"{pattern}: is a directory; use a glob such as {pattern}/*.jsonl")
            if not fs.isfile(path):
                raise DataError(f"{pattern}: no such file")
            return fs, [(path, fs.info(path))]
        found = fs.glob(path, detail=True)
    except (OSError, ValueError) as err:
        raise DataError(f"{pattern}: cannot list: {err}") from err
    files = sorted((p, i) for p, i in found.items() if i.get("type") == "file")
    if not files:
        raise DataError(f"{pattern}: no file matches")
    return fs, files


def _stamp(info: dict[str, Any]) -> str:
    if "ino" in info and info.get("created") is not None:  # a local file
        # with its inode change time, which no tool sets back: `cp -p`, `rsync -t` and
        # `touch -r` restore the mtime of an edited file, never its ctime
        return f"{info.get('mtime')}/{info['created']}"
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return ""


def _state(info: dict[str, Any]) -> str:
    """Everything the filesystem says of a file (a local file's inode change time too, which
    no tool can set back): the digest is re-computed whenever any of it moves."""
    return json.dumps(info, sort_keys=True, default=str)


def _options_key(fs: fsspec.AbstractFileSystem) -> str:
    return json.dumps(getattr(fs, "storage_options", {}), sort_keys=True, default=str)


@functools.lru_cache(maxsize=65536)
def _digest_of(url: str, state: str, options: str) -> str:
    """sha256 of a file's bytes, streamed; cached while the file's state is unchanged."""
    h = hashlib.sha256()
    with fsspec.open(url, "rb", **json.loads(options)) as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()
