"""Token blocks on disk: safetensors shards written as they fill, read a row at a time.

A split of a domain (`<domain>.train`, `<domain>.heldout`) is one or more files
`tokens/<domain>.<split>-00000.safetensors`, ..., each holding one (n_blocks, block_size)
int32 tensor named "blocks" and at most SHARD_BYTES of it. The writer holds one shard; the
reader parses the headers (`Checkpoint._read_header`) and reads rows at the data offset
when asked, so the blocks of a corpus of any size cost page cache, not process memory.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable
from dataclasses import dataclass
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
    fills; the stream's remainder (less than one block) is dropped at `close`.

    `start` = (tokens, blocks, shards) already on disk continues a stream whose first shards
    were written by an earlier run; `on_flush`, when set, is called after each full shard.
    """

    def __init__(
        self, folder: Path, stem: str, block_size: int, start: tuple[int, int, int] = (0, 0, 0)
    ) -> None:
        self.folder, self.stem, self.block_size = folder, stem, block_size
        rows = max(1, SHARD_BYTES // (block_size * 4))
        self._buffer = np.empty(rows * block_size, dtype=np.int32)  # pages touched as filled
        self._fill = 0
        self.tokens, self.blocks, self.shards = start  # appended, written, files written
        self.on_flush: Callable[[], None] | None = None

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
        self.on_flush = None  # the last, partial shard ends the stream: nothing to resume
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
        if self.on_flush is not None:
            self.on_flush()


@dataclass(frozen=True)
class _Shard:
    file: Path
    data_start: int  # byte offset of row 0
    rows: int


class TokenBlocks:
    """(N, T) int32 token blocks left on disk in their shards; behaves like the tensor for
    what training and evaluation use: `shape`, `len`, a row (`blocks[i]`) and row slices
    (`blocks[a:b]`), each read into a new tensor. `tensor()` materialises all of it.

    Rows are read with positioned reads, not through a memory map: on a kernel that caches
    files in large folios (Linux 6.x), each random row touched through a map adds the whole
    folio (about 1 MB here) to the resident set, so a short training run mapped most of a
    2 GB corpus (benchmarks/RESULTS.md, "Corpora at any size"). A read costs one open and
    one `readinto` of the rows asked for; the page cache still serves repeated reads."""

    dtype = torch.int32
    ndim = 2

    def __init__(self, shards: list[_Shard], block_size: int) -> None:
        self._shards = shards
        self._starts = [0]
        for shard in shards:
            self._starts.append(self._starts[-1] + shard.rows)
        self.shape = torch.Size((self._starts[-1], block_size))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TokenBlocks(shape={tuple(self.shape)}, shards={len(self._shards)})"

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
        k = bisect.bisect_right(self._starts, i) - 1
        return self._read(self._shards[k], i - self._starts[k], 1)[0]  # (T,)

    def _rows(self, index: slice) -> torch.Tensor:
        begin, end, step = index.indices(len(self))
        if step != 1:
            raise ValueError("TokenBlocks slices take consecutive rows (step 1)")
        pieces = [
            self._read(
                shard, max(begin - start, 0), min(end - start, shard.rows) - max(begin - start, 0)
            )
            for shard, start in zip(self._shards, self._starts, strict=False)
            if start < end and start + shard.rows > begin
        ]
        return torch.cat(pieces) if pieces else torch.empty((0, self.shape[1]), dtype=torch.int32)

    def _read(self, shard: _Shard, first: int, count: int) -> torch.Tensor:
        """Rows [first, first + count) of one shard, (count, T)."""
        out = torch.empty((count, self.shape[1]), dtype=torch.int32)
        with open(shard.file, "rb") as f:
            f.seek(shard.data_start + first * self.shape[1] * 4)
            if f.readinto(out.view(torch.uint8).numpy()) != out.nbytes:
                raise DataError(f"{shard.file}: truncated after it was opened")
        return out

    def tensor(self) -> torch.Tensor:
        """All blocks in memory, (N, T) int32 (small sets such as the held-out ones)."""
        return self[:]


def open_blocks(folder: Path, stem: str, rows: int) -> TokenBlocks:
    """The shards of `stem` in `folder` (headers read, data left on disk); `rows` (from
    stats.json) is checked, so a missing or truncated shard is refused by name."""
    files = sorted(folder.glob(f"{stem}-{'[0-9]' * 5}.safetensors"))
    if not files:
        raise DataError(f"{folder / shard_name(stem, 0)}: missing")
    shards = [_shard(file) for file in files]
    widths = {width for _, width in shards}
    total = sum(shard.rows for shard, _ in shards)
    if len(widths) != 1 or total != rows:
        raise DataError(
            f"{folder}/{stem}-*: {total} blocks of widths {sorted(widths)} in {len(files)} "
            f"shards, expected {rows} blocks of one width (stats.json)"
        )
    return TokenBlocks([shard for shard, _ in shards], widths.pop())


def check_shard(file: Path) -> int:
    """The rows of a complete shard file; DataError if it is missing or cut short."""
    if not file.is_file():
        raise DataError(f"{file}: missing")
    return _shard(file)[0].rows


def _shard(file: Path) -> tuple[_Shard, int]:
    """A shard file's rows and where they start, from its header; and the block width."""
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
    return _Shard(file, data_start + begin, rows), width
