"""An external, seeded shuffle: documents spread over bucket files on disk, read back one
bucket at a time, so memory holds one bucket whatever the corpus size.

Every document gets a random 64-bit key from a generator seeded per domain, in input order;
the shuffled order is the documents sorted by key (ties keep input order). A bucket holds one
key range, so reading the buckets in order and sorting each by key gives that same order for
any number of buckets: the bucket count only sets memory, never the output. It is sized from
the corpus files' sizes so that a bucket holds about BUCKET_BYTES.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

BUCKET_BYTES = 64 << 20
# Open bucket files at once (one handle and a 64 KB buffer each). Beyond
# MAX_BUCKETS * BUCKET_BYTES (32 GB) of text a domain's buckets grow past BUCKET_BYTES.
MAX_BUCKETS = 512
_RECORD = struct.Struct("<QI")  # key, length of the UTF-8 text that follows


def bucket_count(estimated_bytes: int) -> int:
    """Buckets for a corpus of about `estimated_bytes` of text."""
    return min(MAX_BUCKETS, max(1, math.ceil(estimated_bytes / BUCKET_BYTES)))


def write_buckets(docs: Iterable[str], seed: int, folder: Path, buckets: int) -> list[Path]:
    """Spread `docs` over `buckets` files in `folder` by random key; returns the files in key
    order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"bucket-{i:05d}.bin" for i in range(buckets)]
    rng = random.Random(seed)
    handles = [open(p, "wb", buffering=1 << 16) for p in paths]  # noqa: SIM115
    try:
        for doc in docs:
            key = rng.getrandbits(64)
            data = doc.encode(errors="surrogatepass")
            handles[(key * buckets) >> 64].write(_RECORD.pack(key, len(data)) + data)
    finally:
        for h in handles:
            h.close()
    return paths


def read_shuffled(paths: list[Path]) -> Iterator[str]:
    """The documents of `write_buckets`' files in shuffled (key) order, a bucket at a time."""
    for path in paths:
        yield from _read_bucket(path)


def _read_bucket(path: Path) -> list[str]:
    raw = memoryview(path.read_bytes())
    records = []  # (key, start, end) of each text
    at = 0
    while at < len(raw):
        key, size = _RECORD.unpack_from(raw, at)
        at += _RECORD.size
        records.append((key, at, at + size))
        at += size
    records.sort(key=lambda r: r[0])  # stable: equal keys keep input order
    return [str(raw[a:b], "utf-8", "surrogatepass") for _, a, b in records]
