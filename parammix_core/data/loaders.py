"""User corpora, streamed a document at a time: .txt, .jsonl, .parquet and Arrow files
(a Hugging Face `save_to_disk` folder) from local paths, globs or fsspec URLs.

A .txt file is one document; a .jsonl line, a parquet row and an Arrow row are one document
each, their text under `text_field`. `.gz`/`.bz2`/`.xz` suffixes are decompressed on the fly,
`.zst` too when the `zstandard` package is installed. JSONL is read line by line, parquet a
row group at a time and Arrow a record batch at a time, so memory does not grow with a file's
size (a .txt file is one document and is read whole). A folder written by `datasets`'
`save_to_disk` (it holds `state.json`) stands for its `data-*.arrow` files, read with
pyarrow's IPC stream reader; `datasets` itself is not needed. Files of one pattern are read
in sorted order, so the corpus (and everything hashed from it) does not depend on listing
order. Every error names the file, and the line, row, column or byte offset.
"""

from __future__ import annotations

import importlib.util
import json
import lzma
import zlib
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import OpenFile

from parammix_core.data.errors import DataError

SUPPORTED = (".txt", ".jsonl", ".parquet", ".arrow")
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
# What a damaged compressed stream raises (gzip.BadGzipFile and bz2's are OSErrors): a bad
# file, never worth a retry.
_DAMAGED = (zlib.error, EOFError, lzma.LZMAError)
# What marks a `datasets.Dataset.save_to_disk` folder, and its data files inside it.
DATASET_STATE = "state.json"
DATASET_FILES = "data-*.arrow"


def load_texts(
    paths: list[str], text_field: str = "text", storage_options: dict | None = None
) -> list[str]:
    """All documents of `paths` in one list (small corpora; `iter_texts` streams)."""
    return list(iter_texts(paths, text_field, storage_options))


def iter_texts(
    paths: list[str], text_field: str = "text", storage_options: dict | None = None
) -> Iterator[str]:
    """The documents of `paths`, one at a time, in the order given (each glob in sorted
    order)."""
    if not paths:
        raise DataError("no paths given")
    for f in corpus_files(paths, storage_options or {}):
        yield from iter_file(f, text_field)


def corpus_files(paths: list[str], storage_options: dict) -> list[OpenFile]:
    """The files of `paths`, each pattern expanded in sorted order (not opened yet)."""
    return [f for pattern in paths for f in _expand(pattern, storage_options)]


def dataset_pattern(pattern: str, storage_options: dict) -> str:
    """A `save_to_disk` folder's data-file glob; any other pattern unchanged."""
    try:
        fs, path = fsspec.core.url_to_fs(pattern, **storage_options)
        if fsspec.core.has_magic(path) or not fs.isfile(f"{path.rstrip('/')}/{DATASET_STATE}"):
            return pattern
    except (OSError, ValueError):
        return pattern  # the open below names the problem
    return f"{pattern.rstrip('/')}/{DATASET_FILES}"


def _expand(pattern: str, storage_options: dict) -> list[OpenFile]:
    pattern = dataset_pattern(pattern, storage_options)
    try:
        files = fsspec.open_files(pattern, mode="rb", compression="infer", **storage_options)
    except (OSError, ValueError) as err:
        raise DataError(f"{pattern}: cannot open: {err}") from err
    if not files:
        raise DataError(f"{pattern}: no file matches")
    return sorted(files, key=lambda f: f.path)


def _kind(name: str) -> str:
    base = name.lower()
    for suffix in _COMPRESSED:
        base = base.removesuffix(suffix)
    for ext in SUPPORTED:
        if base.endswith(ext):
            return ext
    raise DataError(f"{name}: unsupported file type; expected one of {', '.join(SUPPORTED)}")


def _check_codec(name: str) -> None:
    """fsspec decompresses .zst only through `zstandard`; without it the bytes would be
    read as they are, so refuse clearly instead."""
    if name.lower().endswith(".zst") and importlib.util.find_spec("zstandard") is None:
        raise DataError(f"{name}: a .zst file needs the zstandard package (pip install zstandard)")


def display_name(f: OpenFile) -> str:
    protocols = f.fs.protocol if isinstance(f.fs.protocol, tuple) else (f.fs.protocol,)
    return f.path if "file" in protocols else f.full_name


def iter_file(f: OpenFile, text_field: str) -> Iterator[str]:
    """The documents of one file, streamed; read errors name the file."""
    name = display_name(f)
    kind = _kind(name)
    _check_codec(name)
    readers = {".txt": _txt, ".jsonl": _jsonl, ".parquet": _parquet, ".arrow": _arrow}
    try:
        with f as handle:
            yield from readers[kind](handle, name, text_field)
    except FileNotFoundError as err:
        raise DataError(f"{name}: no such file") from err
    except IsADirectoryError as err:
        raise DataError(f"{name}: is a directory; use a glob such as {name}/*.jsonl") from err
    except _DAMAGED as err:
        raise DataError(f"{name}: damaged compressed data ({err or type(err).__name__})") from err
    except OSError as err:
        raise DataError(f"{name}: cannot read: {err}") from err


def _decode(data: bytes, name: str, offset: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{name}: not UTF-8 text (byte offset {offset + err.start})") from err


def _txt(handle, name: str, _text_field: str) -> Iterator[str]:
    yield _decode(handle.read(), name)


def _jsonl(handle, name: str, text_field: str) -> Iterator[str]:
    offset = 0
    for lineno, raw in enumerate(handle, start=1):
        line = _decode(raw, name, offset)
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark, as Windows tools write
        offset += len(raw)
        if line.strip():
            yield _json_text(line, f"{name}:{lineno}", text_field)


def _json_text(line: str, where: str, text_field: str) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON: {err.msg}") from err
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if text_field not in row:
        raise DataError(
            f"{where}: no key {text_field!r} (keys: {sorted(row)[:10]}); "
            "set the domain's text_field"
        )
    value = row[text_field]
    if not isinstance(value, str):
        raise DataError(f"{where}: key {text_field!r} is {type(value).__name__}, expected a string")
    return value


def _parquet(handle, name: str, text_field: str) -> Iterator[str]:
    try:
        pf = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{name}: not a readable parquet file: {err}") from err
    _check_column(pf.schema_arrow, name, text_field)
    yield from _column_texts(pf.iter_batches(columns=[text_field]), name, text_field)


def _arrow(handle, name: str, text_field: str) -> Iterator[str]:
    try:
        reader = pa.ipc.open_stream(handle)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{name}: not a readable Arrow IPC stream: {err}") from err
    _check_column(reader.schema, name, text_field)
    yield from _column_texts(reader, name, text_field)


def _check_column(schema: pa.Schema, name: str, text_field: str) -> None:
    if text_field not in schema.names:
        raise DataError(
            f"{name}: no column {text_field!r} (columns: {schema.names[:10]}); "
            "set the domain's text_field"
        )
    column_type = schema.field(text_field).type
    if pa.types.is_dictionary(column_type):  # pandas' category: strings with an index
        column_type = column_type.value_type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise DataError(f"{name}: column {text_field!r} has type {column_type}, expected string")


def _column_texts(batches, name: str, text_field: str) -> Iterator[str]:
    """The strings of `text_field`, batch by batch; a null names its row in the file."""
    row = 0
    try:
        for batch in batches:
            values = batch.column(text_field).to_pylist()
            for i, value in enumerate(values):
                if value is None:
                    raise DataError(f"{name}: column {text_field!r} is null in row {row + i}")
            row += len(values)
            yield from values
    except pa.ArrowException as err:
        raise DataError(f"{name}: unreadable after row {row}: {err}") from err
