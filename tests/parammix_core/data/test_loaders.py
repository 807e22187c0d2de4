"""User corpora: each format, globs, fsspec URLs, and errors that name file/line/column."""

import gzip
import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parammix_core.data import DataError, load_texts


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_txt_is_one_document_per_file(tmp_path):
    (tmp_path / "b.txt").write_text("second\n\nwith a paragraph", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    assert load_texts([str(tmp_path / "*.txt")]) == ["first", "second\n\nwith a paragraph"]


def test_jsonl_with_text_field_and_blank_lines(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"body": "one", "id": 1}\n\n{"body": "two"}\n', encoding="utf-8")
    assert load_texts([str(p)], text_field="body") == ["one", "two"]


def test_gzipped_jsonl(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"text": "zipped"}\n'))
    assert load_texts([str(p)]) == ["zipped"]


def test_parquet(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["p1", "p2"], "n": [1, 2]}), p)
    assert load_texts([str(p)]) == ["p1", "p2"]


def test_paths_keep_given_order_and_fsspec_urls(tmp_path):
    _jsonl(tmp_path / "z.jsonl", [{"text": "z"}])
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    with fsspec.open("memory://corpus/m.txt", "w") as f:
        f.write("from memory")
    paths = [f"file://{tmp_path}/z.jsonl", str(tmp_path / "a.txt"), "memory://corpus/*.txt"]
    assert load_texts(paths) == ["z", "a", "from memory"]


def test_missing_file_names_path(tmp_path):
    with pytest.raises(DataError, match=r"missing\.jsonl: no such file"):
        load_texts([str(tmp_path / "missing.jsonl")])


def test_glob_matching_nothing_names_pattern(tmp_path):
    with pytest.raises(DataError, match=r"\*\.parquet: no file matches"):
        load_texts([str(tmp_path / "*.parquet")])


def test_undecodable_bytes_name_file(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe bytes")
    with pytest.raises(DataError, match=r"bad\.txt: not UTF-8 text \(byte offset 3\)"):
        load_texts([str(tmp_path / "bad.txt")])


def test_bad_json_line_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "fine"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        load_texts([str(p)])


def test_json_line_not_an_object(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [["a", "list"]])
    with pytest.raises(DataError, match=r"d\.jsonl:1: expected a JSON object, got list"):
        load_texts([str(p)])


def test_missing_key_names_file_line_and_key(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b"}, {"content": "c"}])
    with pytest.raises(DataError, match=r"d\.jsonl:3: no key 'text' \(keys: \['content'\]\)"):
        load_texts([str(p)])


def test_non_string_value_names_line(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"text": 5}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: key 'text' is int"):
        load_texts([str(p)])


def test_parquet_missing_column_names_file_and_column(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["x"]}), p)
    with pytest.raises(DataError, match=r"d\.parquet: no column 'text' \(columns: \['body'\]\)"):
        load_texts([str(p)])


def test_parquet_null_and_wrong_type(tmp_path):
    p = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["x", None]}), p)
    with pytest.raises(DataError, match=r"nulls\.parquet: column 'text' is null in row 1"):
        load_texts([str(p)])
    q = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), q)
    with pytest.raises(DataError, match=r"ints\.parquet: column 'text' has type int64"):
        load_texts([str(q)])


def test_unsupported_extension(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.csv: unsupported file type"):
        load_texts([str(p)])


def test_no_paths():
    with pytest.raises(DataError, match="no paths"):
        load_texts([])
