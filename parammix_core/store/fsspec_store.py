"""`Store`: reading, publishing and listing artifacts in a folder of any fsspec filesystem."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parammix_core import __version__
from parammix_core.paths import cache_root
from parammix_core.store.address import KEY_CHARS, ArtifactRef, canonical_json
from parammix_core.store.cache import cached_copy
from parammix_core.store.errors import StoreError, missing
from parammix_core.store.manifest import (
    MANIFEST,
    Verify,
    _compare,
    inside,
    parse_manifest,
    sha256_file,
    unsafe_name,
)
from parammix_core.store.marker import (
    MARKER,
    STORE_ID,
    apart_from_cache,
    entries,
    foreign_entries,
    open_location,
)
from parammix_core.store.transfer import create_file, explained, get_file, is_local, put_file

if TYPE_CHECKING:  # torch and pandas take seconds to import: only the loaders below need them
    import pandas as pd
    import torch

LOADABLE = (".safetensors", ".json", ".parquet")


class Store:
    """An fsspec folder of artifacts. `url` is a local path or any fsspec URL (s3://b/p)."""

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        verify: Verify = "sha256",
        cache_dir: Path | None = None,
        part_size: int = 16 << 20,
        lookup: Verify = "size",
    ) -> None:
        self.url = url
        self.options = dict(storage_options or {})  # also how corpora on this endpoint are read
        self.fs, self.root = open_location(url, self.options)
        self.verify = verify
        self.lookup = lookup  # what `exists` checks: sizes, or sha256 to trust nothing cached
        self.part_size = part_size  # multipart upload part size for large files (S3)
        self.is_local = is_local(self.fs)
        if self.is_local:
            self.root = os.path.abspath(self.root)
        self._ready = False  # the marker was seen or made: writes may go ahead
        self.cache_dir = cache_dir or cache_root()
        if self.is_local:
            apart_from_cache(url, Path(self.root), Path(self.cache_dir))

    @property
    def id(self) -> str:
        """A random identity made when the store is first used: a wiped store is a new store.

        The first call in every task; the place where an unreachable endpoint, wrong
        credentials, a missing bucket or a folder that is not a store surface, as a
        StoreError saying which.
        """
        marker = self._read_marker()
        if marker is None:
            self._ensure_store()
            marker = self._read_marker()
        assert marker is not None
        return marker

    def _read_marker(self) -> str | None:
        with self._explained("read"):
            try:
                raw = self.fs.cat_file(self._p(MARKER))
            except (FileNotFoundError, IsADirectoryError):
                return None
            except NotADirectoryError:
                raise StoreError(
                    f"store {self.url}: a file, not a folder; point store.url at a new or empty "
                    "folder"
                ) from None
        marker = raw.decode(errors="replace").strip()
        if not STORE_ID.match(marker):
            raise StoreError(f"store {self.url}: {MARKER} is damaged (not a store identity)")
        return marker

    def require_store(self) -> None:
        """Refuse anything but an existing store: what admin commands act on."""
        if self._read_marker() is not None:
            return
        with self._explained("list"):
            exists = self.fs.exists(self.root) and bool(entries(self.fs, self.root))
        what = (
            f"not a Param-Mix store (no {MARKER} marker); refusing to touch it"
            if exists
            else "no store here (nothing at this location)"
        )
        raise StoreError(f"store {self.url}: {what}")

    def _ensure_store(self) -> None:
        """Before the first write: a new or empty folder becomes a store (its marker is
        created), and so does a store from before the marker (only artifact folders of the
        pipeline's stages); a folder holding anything else is refused, so a mistyped
        `store.url` never fills a user's folder with artifacts."""
        if self._ready:
            return
        if self._read_marker() is None:
            with self._explained("list"):
                foreign = foreign_entries(self.fs, self.root)
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise StoreError(
                    f"store {self.url}: the folder is not empty and is not a Param-Mix store "
                    f"(no {MARKER}; it holds {shown}); point store.url at a new or empty folder"
                )
            with self._explained("write"), suppress(FileExistsError):
                self._create(self._p(MARKER), uuid.uuid4().hex.encode())
        self._ready = True

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _p(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def _explained(self, action: str) -> AbstractContextManager[None]:
        return explained(self.url, action)

    # --- reading -----------------------------------------------------------------------------

    def manifest(self, ref: ArtifactRef) -> dict[str, Any] | None:
        """The artifact's manifest, or None when it was never (completely) published."""
        path = self._p(ref.path, MANIFEST)
        with self._explained("read"):
            try:
                raw = self.fs.cat_file(path)
            except FileNotFoundError:
                return None
        manifest = parse_manifest(ref.path, raw)
        if (manifest["key"], manifest["stage"], manifest["name"]) != (ref.key, ref.stage, ref.name):
            raise StoreError(
                f"{ref.path}: manifest is for key {manifest['key']!r} "
                f"of {manifest['stage']}/{manifest['name']}"
            )
        return manifest

    def exists(self, ref: ArtifactRef) -> bool:
        """Published and complete: every listed file is there with its size (and its sha256
        with `lookup="sha256"`); a damaged artifact is a StoreError naming the file.

        Contents are otherwise re-hashed where they are used (`local_dir`), not on every lookup.
        """
        if self.manifest(ref) is None:
            return False
        self.check(ref, verify=self.lookup)
        return True

    def file_path(self, ref: ArtifactRef, rel: str, manifest: dict[str, Any] | None = None) -> str:
        """Where a published file lives in the store (inside its upload folder)."""
        manifest = manifest or self.manifest(ref)
        upload = (manifest or {}).get("upload")
        return self._p(ref.path, upload, rel) if upload else self._p(ref.path, rel)

    def check(self, ref: ArtifactRef, verify: Verify | None = None) -> dict[str, Any]:
        """Compare every file with the manifest; raise StoreError naming the first mismatch."""
        manifest = self.manifest(ref)
        if manifest is None:
            raise missing(f"{ref.path}: not in the store {self.url} (no {MANIFEST})")
        level = verify or self.verify
        folder = Path(self.file_path(ref, "", manifest)) if self.is_local else None
        for rel, want in manifest["files"].items():
            path = self.file_path(ref, rel, manifest)
            if folder is not None:
                inside(folder, rel)  # a symbolic link out of the store is not its file
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                raise StoreError(f"{ref.path}/{rel}: listed in the manifest but missing") from None
            _compare(ref, rel, size, want, level, lambda p=path: self._sha256(p))
        return manifest

    def _sha256(self, path: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest()

    def local_dir(self, ref: ArtifactRef) -> Path:
        """A local folder holding the artifact's verified files: the store itself when local,
        else a copy in the cache (`cached_copy`)."""
        if self.is_local:
            manifest = self.check(ref)
            return Path(self.file_path(ref, "", manifest)).resolve()
        manifest = self.manifest(ref)
        if manifest is None:
            raise missing(f"{ref.path}: not in the store {self.url} (no {MANIFEST})")
        return cached_copy(self, ref, manifest)

    def _loadable(self, ref: ArtifactRef, rel: str) -> Path:
        why = unsafe_name(rel)
        if why is not None:
            raise StoreError(f"{ref.path}/{rel}: not a file name inside the artifact ({why})")
        if not rel.endswith(LOADABLE):
            raise StoreError(
                f"{ref.path}/{rel}: refusing to load; only {', '.join(LOADABLE)} files are "
                "loaded from the store"
            )
        path = inside(self.local_dir(ref), rel)
        if not path.is_file():
            raise StoreError(f"{ref.path}/{rel}: no such file in the artifact")
        return path

    def load_json(self, ref: ArtifactRef, rel: str) -> Any:
        return json.loads(self._loadable(ref, rel).read_text())

    def load_tensors(
        self, ref: ArtifactRef, rel: str, device: str = "cpu"
    ) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        path = self._loadable(ref, rel)
        try:
            return load_file(path, device=device)
        except Exception as err:  # safetensors raises its own error types
            raise StoreError(f"{ref.path}/{rel}: not a valid safetensors file ({err})") from None

    def tensor_specs(self, ref: ArtifactRef) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Name -> (dtype, shape) of every tensor in the artifact's safetensors files, from their
        headers alone: a merge can refuse weights that do not fit before loading any."""
        from safetensors import SafetensorError, safe_open

        from parammix_core.merge.safetensors_files import dtype_name

        self.local_dir(ref)
        specs = {}
        for rel in sorted(self.manifest(ref)["files"]):
            if not rel.endswith(".safetensors"):
                continue
            path = self._loadable(ref, rel)
            try:
                with safe_open(path, framework="pt") as f:
                    for name in f.keys():  # noqa: SIM118 (a safe_open handle is not a Mapping)
                        tensor = f.get_slice(name)
                        specs[name] = (dtype_name(tensor.get_dtype()), tuple(tensor.get_shape()))
            except (SafetensorError, OSError, KeyError) as err:
                problem = f"not a valid safetensors file ({err})"
                raise StoreError(f"{ref.path}/{rel}: {problem}") from None
        return specs

    def load_parquet(self, ref: ArtifactRef, rel: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self._loadable(ref, rel))

    def read_text(self, ref: ArtifactRef, rel: str) -> str:
        """A text file of the artifact (a report), checked against the manifest first."""
        manifest = self.check(ref)
        if rel not in manifest["files"]:
            raise StoreError(f"{ref.path}/{rel}: no such file in the artifact")
        with self._explained("read"):
            return self.fs.cat_file(self.file_path(ref, rel, manifest)).decode()

    # --- writing -----------------------------------------------------------------------------

    def publish(
        self, ref: ArtifactRef, src: Path, info: dict[str, Any] | None = None
    ) -> ArtifactRef:
        """Upload the files under `src` to a fresh upload folder, then create the manifest.

        A no-op if the artifact is already published; if another writer publishes it while
        this one uploads, the other's manifest wins and this upload is removed. A folder from
        `staging` is removed afterwards, published or not: a retry builds its own.
        """
        try:
            return self._publish(ref, Path(src), info)
        finally:
            if Path(src).is_relative_to(self.cache_dir / "staging"):
                shutil.rmtree(src, ignore_errors=True)

    def _publish(self, ref: ArtifactRef, src: Path, info: dict[str, Any] | None) -> ArtifactRef:
        if self.manifest(ref) is not None:
            return ref
        self._ensure_store()
        files = sorted(p for p in Path(src).rglob("*") if p.is_file())
        if not files:
            raise StoreError(f"{ref.path}: nothing to publish in {src}")
        upload = f"files-{uuid.uuid4().hex[:16]}"
        entries = {}
        with self._explained("write"):
            for f in files:
                rel = f.relative_to(src).as_posix()
                if rel == MANIFEST:
                    raise StoreError(f"{ref.path}: {MANIFEST} is a reserved file name")
                entries[rel] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
                self._put(f, self._p(ref.path, upload, rel))
            manifest = {
                "format": 2,
                "key": ref.key,
                "stage": ref.stage,
                "name": ref.name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "code": __version__,
                "info": info or {},
                "upload": upload,
                "files": entries,
            }
            try:
                self._create(self._p(ref.path, MANIFEST), canonical_json(manifest).encode())
            except FileExistsError:  # lost the race: the published artifact stands
                self.fs.rm(self._p(ref.path, upload), recursive=True)
        return ref

    def _put(self, local: Path, dest: str) -> None:
        put_file(self.fs, local, dest, self.part_size)

    def _get(self, path: str, local: Path) -> None:
        get_file(self.fs, path, local)

    def _create(self, path: str, data: bytes) -> None:
        """Write `path` only if it does not exist; FileExistsError if it does."""
        create_file(self.fs, path, data)

    def staging(self, ref: ArtifactRef) -> Path:
        """A fresh local folder to build an artifact in before `publish`."""
        path = self.cache_dir / "staging" / f"{ref.name}-{ref.key[:KEY_CHARS]}-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        return path

    def work_dir(self, ref: ArtifactRef) -> Path:
        """A persistent local folder for a stage's resumable state (training checkpoints).

        Inside the store when it is local, so a retried or re-run task resumes from it.
        """
        if self.is_local:
            self._ensure_store()
        base = Path(self.root) / "_work" if self.is_local else self.cache_dir / "work"
        path = base / ref.path
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- listing -----------------------------------------------------------------------------

    def artifacts(self) -> Iterator[dict[str, Any]]:
        """Manifests of every published artifact (damaged ones are skipped: `manifests`)."""
        for _, manifest in self.manifests():
            if not isinstance(manifest, StoreError):
                yield manifest

    def manifests(self) -> Iterator[tuple[str, dict[str, Any] | StoreError]]:
        """(artifact folder, its manifest or why it cannot be read) for every manifest."""
        root = self.root.rstrip("/") + "/"
        with self._explained("list"):
            paths = sorted(self.fs.glob(self._p("*", "*", MANIFEST)))
        for path in paths:
            folder = path.removeprefix(root).rsplit("/", 1)[0]
            with self._explained("read"):
                raw = self.fs.cat_file(path)
            try:
                manifest = parse_manifest(folder, raw)
                ref = ArtifactRef(
                    stage=manifest["stage"], name=manifest["name"], key=manifest["key"]
                )
            except StoreError as err:
                yield folder, err
                continue
            except ValueError:  # pydantic: a stage, name or key no artifact can have
                yield folder, StoreError(f"{folder}: {MANIFEST} names an invalid address")
                continue
            if ref.path != folder:
                yield folder, StoreError(f"{folder}: {MANIFEST} is for {ref.path}")
                continue
            yield folder, manifest

    def uri(self, ref: ArtifactRef, rel: str = "") -> str:
        """Where a person opens an artifact's file, or its files' folder (not the manifest's)."""
        path = self.file_path(ref, rel).rstrip("/")
        return path if self.is_local else self.fs.unstrip_protocol(path)
