"""Token blocks on disk: safetensors shards written as they fill, memory-mapped when read.

A split of a domain (`<domain>.train`, `<domain>.heldout`) is one or more files
`tokens/<domain>.<split>-00000.safetensors`, ..., each holding one (n_blocks, block_size)
int32 tensor named "blocks" and at most SHARD_BYTES of it. The writer holds one shard; the
reader maps the files' data regions read-only (`numpy.memmap` at the header's data offset),
so the blocks of a corpus of any size cost page cache, not process memory.
"""

from __future__ import annotations

import bisect
import operator
from pathlib import Path

import numpy as np
import torch

from parammix_core.data.errors import DataError
from parammix_core.merge.linear import MergeError
from parammix_core.merge.safetensors_files import Checkpoint, ShardWriter

SHARD_BYTES = 256 << 20
TENSOR = "blocks"


def shard_name(stem: str, index: int) -> str:
    return f"{stem}-{index:05d}.safetensors"


class BlockWriter:
    """Packs a token stream into (rows, block_size) int32 shard files, each written when it
    fills; the stream's remainder (less than one block) is dropped at `close`."""

    def __init__(self, folder: Path, stem: str, block_size: int) -> None:
        self.folder, self.stem, self.block_size = folder, stem, block_size
        rows = max(1, SHARD_BYTES // (block_size * 4))
        self._buffer = np.empty(rows * block_size, dtype=np.int32)  # pages touched as filled
        self._fill = 0
        self.tokens = 0  # tokens appended
        self.blocks = 0  # blocks written
        self.shards = 0

    def append(self, ids: np.ndarray) -> None:
        """Add (n,) int32 token ids to the stream."""
        while len(ids):
            take = min(len(ids), len(self._buffer) - self._fill)
            self._buffer[self._fill : self._fill + take] = ids[:take]
            self._fill += take
            self.tokens += take
            ids = ids[take:]
            if self._fill == len(self._buffer):
                self._flush()

    def close(self) -> None:
        if self._fill >= self.block_size:
            self._flush()
        self._buffer = np.empty(0, dtype=np.int32)

    def _flush(self) -> None:
        rows = self._fill // self.block_size
        spec = {TENSOR: ("int32", (rows, self.block_size))}
        self.folder.mkdir(parents=True, exist_ok=True)
        with ShardWriter(self.folder / shard_name(self.stem, self.shards), spec) as out:
            out.write(torch.from_numpy(self._buffer[: rows * self.block_size]))
        self.blocks += rows
        self.shards += 1
        self._fill = 0


class TokenBlocks:
    """(N, T) int32 token blocks memory-mapped from shards; behaves like the tensor for what
    training and evaluation use: `shape`, `len`, a row (`blocks[i]`) and row slices
    (`blocks[a:b]`), each read into a new tensor. `tensor()` materialises all of it."""

    dtype = torch.int32
    ndim = 2

    def __init__(self, parts: list[np.ndarray], block_size: int) -> None:
        self._parts = parts  # (n_i, T) read-only memmaps
        self._starts = [0]
        for part in parts:
            self._starts.append(self._starts[-1] + part.shape[0])
        self.shape = torch.Size((self._starts[-1], block_size))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TokenBlocks(shape={tuple(self.shape)}, shards={len(self._parts)})"

    def is_floating_point(self) -> bool:
        return False

    def is_complex(self) -> bool:
        return False

    def __getitem__(self, index: int | slice) -> torch.Tensor:
        if isinstance(index, slice):
            return self._rows(index)
        i = operator.index(index)
        i += len(self) if i < 0 else 0
        if not 0 <= i < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} blocks")
        part = bisect.bisect_right(self._starts, i) - 1
        return torch.from_numpy(np.array(self._parts[part][i - self._starts[part]]))  # (T,)

    def _rows(self, index: slice) -> torch.Tensor:
        begin, end, step = index.indices(len(self))
        if step != 1:
            raise ValueError("TokenBlocks slices take consecutive rows (step 1)")
        pieces = [
            part[max(begin - start, 0) : end - start]
            for part, start in zip(self._parts, self._starts, strict=False)
            if start < end and start + part.shape[0] > begin
        ]
        out = np.concatenate(pieces) if pieces else np.empty((0, self.shape[1]), np.int32)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.int32))  # (end - begin, T)

    def tensor(self) -> torch.Tensor:
        """All blocks in memory, (N, T) int32 (small sets such as the held-out ones)."""
        return self[:]


def open_blocks(folder: Path, stem: str, rows: int) -> TokenBlocks:
    """The shards of `stem` in `folder`, mapped; `rows` (from stats.json) is checked, so a
    missing or truncated shard is refused by name."""
    files = sorted(folder.glob(f"{stem}-{'[0-9]' * 5}.safetensors"))
    if not files:
        raise DataError(f"{folder / shard_name(stem, 0)}: missing")
    parts = [_map(file) for file in files]
    widths = {p.shape[1] for p in parts}
    total = sum(p.shape[0] for p in parts)
    if len(widths) != 1 or total != rows:
        raise DataError(
            f"{folder}/{stem}-*: {total} blocks of widths {sorted(widths)} in {len(files)} "
            f"shards, expected {rows} blocks of one width (stats.json)"
        )
    return TokenBlocks(parts, widths.pop())


def _map(file: Path) -> np.ndarray:
    try:
        header, data_start = Checkpoint._read_header(file)
    except MergeError as err:
        raise DataError(str(err)) from None
    entry = header.get(TENSOR)
    shape = entry.get("shape") if isinstance(entry, dict) else None
    if (
        entry is None
        or entry.get("dtype") != "I32"
        or not isinstance(shape, list)
        or len(shape) != 2
    ):
        got = "missing" if entry is None else f"{entry.get('dtype')} {shape}"
        raise DataError(f"{file}: tensor {TENSOR!r} is {got}, expected I32 (N, T)")
    begin, end = (int(o) for o in entry["data_offsets"])
    rows, width = (int(d) for d in shape)
    if end - begin != rows * width * 4 or data_start + end > file.stat().st_size or rows < 1:
        raise DataError(f"{file}: tensor {TENSOR!r} does not fit the file ({rows}x{width})")
    return np.memmap(file, dtype="<i4", mode="r", offset=data_start + begin, shape=(rows, width))
