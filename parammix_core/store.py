"""The artifact store: content-addressed folders on any fsspec filesystem.

Every artifact (prepared corpora, a checkpoint, a batch of evaluation rows) is addressed by a
hash of everything that determines it:

    key  = sha256(canonical_json({stage, name, spec}))
    path = <root>/<stage>/<name>-<key[:24]>/

where `spec` holds the config slice that matters, the keys of the upstream artifacts and the
code version. Two runs that would compute the same thing get the same key, so a finished
artifact is found again by any later run, whatever Prefect's database remembers.

When is an artifact there? Only when its `MANIFEST.json` is. A writer uploads the data files
first and the manifest (sizes and sha256 of every file) last, itself through a temporary key,
so a crash at any point leaves either a complete artifact or files that no reader trusts. A
published artifact is never overwritten. Readers check the manifest against the files
(`verify="sha256"` re-hashes, `"size"` only compares sizes) and refuse any mismatch.

Only safetensors, JSON and parquet are ever loaded from the store: never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import fsspec
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file

from parammix_core import __version__

MANIFEST = "MANIFEST.json"
KEY_CHARS = 24
LOADABLE = (".safetensors", ".json", ".parquet")
Verify = Literal["sha256", "size"]


class StoreError(RuntimeError):
    """A missing, torn, tampered or unloadable artifact; the message names key and file."""


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


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Store:
    """An fsspec folder of artifacts. `url` is a local path or any fsspec URL (s3://b/p)."""

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        verify: Verify = "sha256",
        cache_dir: Path | None = None,
    ) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.verify = verify
        self.is_local = "file" in _protocols(self.fs)
        if self.is_local:
            self.root = os.path.abspath(self.root)
            self.fs.makedirs(self.root, exist_ok=True)
        default_cache = Path(os.environ.get("PARAMMIX_CACHE", Path.home() / ".cache/parammix"))
        self.cache_dir = cache_dir or default_cache

    @property
    def id(self) -> str:
        """A random identity made when the store is first used: a wiped store is a new store."""
        path = self._p("STORE_ID")
        try:
            return self.fs.cat_file(path).decode().strip()
        except FileNotFoundError:
            self._write_last(path, uuid.uuid4().hex.encode())
            return self.fs.cat_file(path).decode().strip()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _p(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # --- reading -----------------------------------------------------------------------------

    def manifest(self, ref: ArtifactRef) -> dict[str, Any] | None:
        """The artifact's manifest, or None when it was never (completely) published."""
        path = self._p(ref.path, MANIFEST)
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(raw)
        except json.JSONDecodeError as err:
            raise StoreError(f"{ref.path}: {MANIFEST} is not valid JSON ({err})") from None
        if manifest.get("key") != ref.key:
            raise StoreError(f"{ref.path}: manifest is for key {manifest.get('key')!r}")
        return manifest

    def exists(self, ref: ArtifactRef) -> bool:
        """Published and intact (checked to the store's `verify` level)."""
        if self.manifest(ref) is None:
            return False
        self.check(ref)
        return True

    def check(self, ref: ArtifactRef, verify: Verify | None = None) -> dict[str, Any]:
        """Compare every file with the manifest; raise StoreError naming the first mismatch."""
        manifest = self.manifest(ref)
        if manifest is None:
            raise StoreError(f"{ref.path}: not in the store {self.url} (no {MANIFEST})")
        level = verify or self.verify
        for rel, want in manifest["files"].items():
            path = self._p(ref.path, rel)
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                raise StoreError(f"{ref.path}/{rel}: listed in the manifest but missing") from None
            if size != want["size"]:
                raise StoreError(
                    f"{ref.path}/{rel}: size {size} does not match the manifest ({want['size']})"
                )
            if level == "sha256" and self._sha256(path) != want["sha256"]:
                raise StoreError(f"{ref.path}/{rel}: sha256 does not match the manifest")
        return manifest

    def _sha256(self, path: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest()

    def local_dir(self, ref: ArtifactRef) -> Path:
        """A local folder holding the artifact's verified files (the store itself when local)."""
        manifest = self.check(ref)
        if self.is_local:
            return Path(self._p(ref.path))
        target = self.cache_dir / "artifacts" / ref.path
        done = target / MANIFEST
        if not done.exists():
            tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
            for rel in manifest["files"]:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(self._p(ref.path, rel), str(tmp / rel))
            (tmp / MANIFEST).write_text(canonical_json(manifest))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.rename(target)
            except OSError:  # another worker downloaded it first
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _loadable(self, ref: ArtifactRef, rel: str) -> Path:
        if not rel.endswith(LOADABLE):
            raise StoreError(
                f"{ref.path}/{rel}: refusing to load; only {', '.join(LOADABLE)} files are "
                "loaded from the store"
            )
        path = self.local_dir(ref) / rel
        if not path.is_file():
            raise StoreError(f"{ref.path}/{rel}: no such file in the artifact")
        return path

    def load_json(self, ref: ArtifactRef, rel: str) -> Any:
        return json.loads(self._loadable(ref, rel).read_text())

    def load_tensors(
        self, ref: ArtifactRef, rel: str, device: str = "cpu"
    ) -> dict[str, torch.Tensor]:
        path = self._loadable(ref, rel)
        try:
            return load_file(path, device=device)
        except Exception as err:  # safetensors raises its own error types
            raise StoreError(f"{ref.path}/{rel}: not a valid safetensors file ({err})") from None

    def load_parquet(self, ref: ArtifactRef, rel: str) -> pd.DataFrame:
        return pd.read_parquet(self._loadable(ref, rel))

    # --- writing -----------------------------------------------------------------------------

    def publish(
        self, ref: ArtifactRef, src: Path, info: dict[str, Any] | None = None
    ) -> ArtifactRef:
        """Upload the files under `src`, then the manifest; no-op if already published."""
        if self.manifest(ref) is not None:
            return ref
        files = sorted(p for p in Path(src).rglob("*") if p.is_file())
        if not files:
            raise StoreError(f"{ref.path}: nothing to publish in {src}")
        entries = {}
        for f in files:
            rel = f.relative_to(src).as_posix()
            if rel == MANIFEST:
                raise StoreError(f"{ref.path}: {MANIFEST} is a reserved file name")
            entries[rel] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
            dest = self._p(ref.path, rel)
            self.fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(f), dest)
        manifest = {
            "format": 1,
            "key": ref.key,
            "stage": ref.stage,
            "name": ref.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "code": __version__,
            "info": info or {},
            "files": entries,
        }
        self._write_last(self._p(ref.path, MANIFEST), canonical_json(manifest).encode())
        return ref

    def _write_last(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    def staging(self, ref: ArtifactRef) -> Path:
        """A fresh local folder to build an artifact in before `publish`."""
        path = self.cache_dir / "staging" / f"{ref.name}-{ref.key[:KEY_CHARS]}-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        return path

    def work_dir(self, ref: ArtifactRef) -> Path:
        """A persistent local folder for a stage's resumable state (training checkpoints).

        Inside the store when it is local, so a retried or re-run task resumes from it.
        """
        base = Path(self.root) / "_work" if self.is_local else self.cache_dir / "work"
        path = base / ref.path
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- listing -----------------------------------------------------------------------------

    def artifacts(self) -> Iterator[dict[str, Any]]:
        """Manifests of every published artifact."""
        for path in sorted(self.fs.glob(self._p("*", "*", MANIFEST))):
            yield json.loads(self.fs.cat_file(path))

    def uri(self, ref: ArtifactRef, rel: str = "") -> str:
        path = self._p(ref.path, rel) if rel else self._p(ref.path)
        return path if self.is_local else self.fs.unstrip_protocol(path)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
