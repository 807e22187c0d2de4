"""User corpora: .txt, .jsonl and .parquet files from local paths, globs or fsspec URLs.

A .txt file is one document; a .jsonl line and a parquet row are one document each, their
text under `text_field`. `.gz`/`.bz2`/`.xz` suffixes are decompressed on the fly. Files of
one pattern are read in sorted order, so the corpus (and everything hashed from it) does
not depend on listing order. Every error names the file, and the line, row or column.
"""

from __future__ import annotations

import json
import lzma
import zlib

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import OpenFile

from parammix_core.data.errors import DataError

SUPPORTED = (".txt", ".jsonl", ".parquet")
_COMPRESSED = (".gz", ".bz2", ".xz")
# What a damaged compressed stream raises (gzip.BadGzipFile and bz2's are OSErrors): a bad
# file, never worth a retry.
_DAMAGED = (zlib.error, EOFError, lzma.LZMAError)


def load_texts(
    paths: list[str], text_field: str = "text", storage_options: dict | None = None
) -> list[str]:
    """All documents of `paths`, in the order given (each glob expanded in sorted order)."""
    if not paths:
        raise DataError("no paths given")
    docs: list[str] = []
    for pattern in paths:
        for f in _expand(pattern, storage_options or {}):
            docs += _read(f, text_field)
    return docs


def _expand(pattern: str, storage_options: dict) -> list[OpenFile]:
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


def _display_name(f: OpenFile) -> str:
    protocols = f.fs.protocol if isinstance(f.fs.protocol, tuple) else (f.fs.protocol,)
    return f.path if "file" in protocols else f.full_name


def _read(f: OpenFile, text_field: str) -> list[str]:
    name = _display_name(f)
    kind = _kind(name)
    try:
        with f as handle:
            if kind == ".parquet":
                return _parquet(handle, name, text_field)
            data = handle.read()
    except FileNotFoundError as err:
        raise DataError(f"{name}: no such file") from err
    except IsADirectoryError as err:
        raise DataError(f"{name}: is a directory; use a glob such as {name}/*.jsonl") from err
    except _DAMAGED as err:
        raise DataError(f"{name}: damaged compressed data ({err or type(err).__name__})") from err
    except OSError as err:
        raise DataError(f"{name}: cannot read: {err}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{name}: not UTF-8 text (byte offset {err.start})") from err
    return [text] if kind == ".txt" else _jsonl(text, name, text_field)


def _jsonl(text: str, name: str, text_field: str) -> list[str]:
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{name}:{lineno}: invalid JSON: {err.msg}") from err
        if not isinstance(row, dict):
            raise DataError(f"{name}:{lineno}: expected a JSON object, got {type(row).__name__}")
        if text_field not in row:
            raise DataError(
                f"{name}:{lineno}: no key {text_field!r} (keys: {sorted(row)[:10]}); "
                "set the domain's text_field"
            )
        value = row[text_field]
        if not isinstance(value, str):
            raise DataError(
                f"{name}:{lineno}: key {text_field!r} is {type(value).__name__}, expected a string"
            )
        docs.append(value)
    return docs


def _parquet(handle, name: str, text_field: str) -> list[str]:
    try:
        pf = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{name}: not a readable parquet file: {err}") from err
    schema = pf.schema_arrow
    if text_field not in schema.names:
        raise DataError(
            f"{name}: no column {text_field!r} (columns: {schema.names[:10]}); "
            "set the domain's text_field"
        )
    column_type = schema.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise DataError(f"{name}: column {text_field!r} has type {column_type}, expected string")
    values = pf.read(columns=[text_field]).column(text_field).to_pylist()
    for row, value in enumerate(values):
        if value is None:
            raise DataError(f"{name}: column {text_field!r} is null in row {row}")
    return values
