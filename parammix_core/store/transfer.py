"""Moving bytes between this machine and any fsspec filesystem: S3 in bounded-memory parts,
create-only writes, and backend errors turned into a StoreError saying what to fix."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec

from parammix_core.store.errors import StoreError, StoreUnavailable, _is_connection_error

# Transfers on S3 move `CONCURRENCY` parts at a time, so a process holds at most
# CONCURRENCY x part size of a file in memory, however large the checkpoint.
CONCURRENCY = 4
DOWNLOAD_PART = 8 << 20
S3_MIN_PART = 5 << 20  # S3 refuses smaller parts of a multipart upload


def protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in protocols(fs)


@contextmanager
def explained(url: str, action: str) -> Iterator[None]:
    """Turn backend errors into a StoreError naming the store and the likely cause."""
    try:
        yield
    except StoreError:
        raise
    except PermissionError as err:
        raise StoreError(
            f"store {url}: access denied on {action} ({err}); check the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or store.credentials_block) and "
            "that they may " + action
        ) from None
    except FileNotFoundError as err:
        if "bucket" in str(err).lower():
            raise StoreError(
                f"store {url}: the bucket does not exist ({err}); create it first"
            ) from None
        raise
    except Exception as err:
        if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.ENOSPC):
            on = f" on {err.filename}" if err.filename else ""
            raise StoreError(
                f"store {url}: cannot {action}, {err.strerror.lower()}{on}; "
                + ("free space there" if err.errno == errno.ENOSPC else "give a writable store")
            ) from None
        if type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise StoreError(
                f"store {url}: no credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or name a Prefect Secret block in store.credentials_block"
            ) from None
        if _is_connection_error(err):
            raise StoreUnavailable(
                f"store {url}: cannot reach the endpoint ({type(err).__name__}: {err})"
            ) from None
        raise


def put_file(fs: fsspec.AbstractFileSystem, local: Path, dest: str, part_size: int) -> None:
    """Upload one file; on S3 in parts of `part_size`, `CONCURRENCY` at a time."""
    if is_local(fs):
        fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(local), dest)
    elif "s3" in protocols(fs):
        chunk = max(part_size, S3_MIN_PART)
        fs.put_file(str(local), dest, chunksize=chunk, max_concurrency=CONCURRENCY)
    else:
        fs.put_file(str(local), dest)


def get_file(fs: fsspec.AbstractFileSystem, path: str, local: Path) -> None:
    """Download one file; on S3 in ranged parts, a few at a time: bounded memory."""
    if "s3" in protocols(fs):
        fs.get_file(path, str(local), chunksize=DOWNLOAD_PART, max_concurrency=CONCURRENCY)
    else:
        fs.get_file(path, str(local))


def create_file(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `path` only if it does not exist; FileExistsError if it does."""
    if is_local(fs):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        Path(tmp).write_bytes(data)
        try:
            os.link(tmp, path)  # atomic, and fails if the target exists
        finally:
            os.unlink(tmp)
        return
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        raise
    except OSError:  # some servers answer 412 without naming the condition
        if fs.exists(path):
            raise FileExistsError(path) from None
        raise
