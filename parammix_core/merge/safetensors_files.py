"""Reading and writing safetensors files a slice at a time, for merges bigger than memory.

The format is an 8-byte little-endian header length, a JSON header
`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the raw
little-endian bytes. `Checkpoint.read` takes any flat element range of a tensor with one
positioned read (`safe_open` slices only along dimensions), so a merge can walk every tensor in
slices of a fixed size and its peak memory does not grow with the largest tensor. Writing plans
every shard's header from the tensor specs first, so each merged slice goes straight to disk.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import torch

from parammix_core.merge.linear import MergeError, Spec

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_CODES = {str(dt).removeprefix("torch."): code for code, dt in _DTYPES.items()}


def dtype_name(code: str) -> str:
    """The spec dtype name ('float32', ...) of a safetensors dtype code ('F32', ...)."""
    if code not in _DTYPES:
        raise KeyError(f"unsupported safetensors dtype {code!r}")
    return str(_DTYPES[code]).removeprefix("torch.")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a spec's dtype name ('float32', ...)."""
    return getattr(torch, name)


class Checkpoint:
    """The tensors of a safetensors file or HF checkpoint dir (single or sharded), by slice."""

    def __init__(self, path: Path, files: ExitStack) -> None:
        self.path = path
        self._files = files
        self._handles: dict[Path, BinaryIO] = {}
        self._headers: dict[Path, tuple[dict, int]] = {}
        self._entries: dict[str, tuple[Path, int, Spec]] = {}  # name -> file, data start, spec
        for name, file in self._locate(path).items():
            header, data_start = self._header(file)
            if name not in header:
                raise MergeError(f"{file}: tensor {name!r} not found")
            entry = header[name]
            try:
                dtype = dtype_name(entry["dtype"])
                spec = (dtype, tuple(int(d) for d in entry["shape"]))
                begin, end = (int(o) for o in entry["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise MergeError(f"{file}: bad header entry for {name!r} ({err!r})") from None
            if end - begin != numel(spec[1]) * torch_dtype(dtype).itemsize:
                raise MergeError(f"{file}: tensor {name!r} has {end - begin} bytes for {spec}")
            self._entries[name] = (file, data_start + begin, spec)

    @staticmethod
    def _locate(path: Path) -> dict[str, Path]:
        if path.is_dir():
            index = path / INDEX_NAME
            if index.is_file():
                try:
                    weight_map = json.loads(index.read_text())["weight_map"]
                except (ValueError, KeyError) as err:
                    raise MergeError(f"{index}: not a valid safetensors index ({err})") from None
                return {name: path / file for name, file in weight_map.items()}
            if not (path / SINGLE_NAME).is_file():
                raise MergeError(f"{path}: neither {SINGLE_NAME} nor {INDEX_NAME} found")
            path = path / SINGLE_NAME
        elif not path.is_file():
            raise MergeError(f"{path}: no such file or directory")
        header, _ = Checkpoint._read_header(path)
        return dict.fromkeys(header, path)

    def _handle(self, file: Path) -> BinaryIO:
        if file not in self._handles:
            try:
                self._handles[file] = self._files.enter_context(open(file, "rb"))  # noqa: SIM115
            except OSError as err:
                raise MergeError(f"{file}: cannot open ({err})") from None
        return self._handles[file]

    def _header(self, file: Path) -> tuple[dict, int]:
        if file not in self._headers:
            self._headers[file] = self._read_header(file)
        return self._headers[file]

    @staticmethod
    def _read_header(file: Path) -> tuple[dict, int]:
        """The JSON header (metadata dropped) and where the data starts."""
        try:
            with open(file, "rb") as f:
                size = file.stat().st_size
                (n,) = struct.unpack("<Q", f.read(8).ljust(8, b"\xff"))
                if n > size - 8:
                    raise ValueError(f"header of {n} bytes in a {size}-byte file")
                header = json.loads(f.read(n))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
        except (OSError, ValueError) as err:
            raise MergeError(f"{file}: not a readable safetensors file ({err})") from None
        header.pop("__metadata__", None)
        return header, 8 + n

    def specs(self) -> dict[str, Spec]:
        return {name: spec for name, (_, _, spec) in self._entries.items()}

    def read(self, name: str, start: int, count: int) -> torch.Tensor:
        """Elements [start, start + count) of the flattened tensor `name`."""
        file, data_start, (dtype, _) = self._entries[name]
        out = torch.empty(count, dtype=torch_dtype(dtype))
        size = out.itemsize
        f = self._handle(file)
        f.seek(data_start + start * size)
        if f.readinto(out.view(torch.uint8).numpy()) != count * size:
            raise MergeError(f"{file}: tensor {name!r} is truncated")
        return out


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def nbytes(spec: Spec) -> int:
    return numel(spec[1]) * torch_dtype(spec[0]).itemsize


def plan_shards(specs: Mapping[str, Spec], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names per shard, in order, at most max_shard_bytes each (a bigger tensor alone)."""
    shards: list[list[str]] = [[]]
    used = 0
    for name, spec in specs.items():
        size = nbytes(spec)
        if shards[-1] and used + size > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def shard_file_names(count: int) -> list[str]:
    """HF's names: model.safetensors alone, else model-0000i-of-0000n.safetensors."""
    if count == 1:
        return [SINGLE_NAME]
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


class ShardWriter:
    """One safetensors file whose header is written first; tensors' bytes then follow in order."""

    def __init__(self, path: Path, specs: Mapping[str, Spec]) -> None:
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, (dtype, shape) in specs.items():
            size = nbytes((dtype, shape))
            header[name] = {
                "dtype": _CODES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
        self.path = path
        self._expected = offset
        self._written = 0
        self._file = open(path, "wb")  # noqa: SIM115
        self._file.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, tensor: torch.Tensor) -> None:
        """Append the next slice of the next tensor (any shape; its bytes in C order)."""
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        self._file.write(data)
        self._written += data.nbytes

    def close(self) -> None:
        self._file.close()
        if self._written != self._expected:
            raise MergeError(f"{self.path}: wrote {self._written} of {self._expected} bytes")

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._file.close()
