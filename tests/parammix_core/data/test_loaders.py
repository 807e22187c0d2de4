"""User corpora: each format (streamed), globs, fsspec URLs, and errors that name
file/line/row/column."""

import gzip
import importlib.util
import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parammix_core.data import DataError, load_texts
from parammix_core.data.fingerprint import fingerprint
from parammix_core.data.loaders import iter_texts


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


def test_jsonl_with_a_byte_order_mark(tmp_path):
    """Windows tools (and Python's utf-8-sig) start a file with U+FEFF: refused before."""
    p = tmp_path / "bom.jsonl"
    p.write_text('{"text": "first"}\n{"text": "\ufeffkept inside"}\n', encoding="utf-8-sig")
    assert load_texts([str(p)]) == ["first", "\ufeffkept inside"]


def test_parquet_with_a_dictionary_encoded_text_column(tmp_path):
    """pandas' category dtype writes dictionary<string>: refused before as not a string."""
    p = tmp_path / "cat.parquet"
    column = pa.array(["a cat", "a dog", "a cat"]).dictionary_encode()
    pq.write_table(pa.table({"text": column}), p)
    assert load_texts([str(p)]) == ["a cat", "a dog", "a cat"]


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


# --- streaming: compressed JSONL, row groups, Arrow folders ------------------------------


def test_bz2_and_xz_jsonl(tmp_path):
    import bz2
    import lzma

    (tmp_path / "a.jsonl.bz2").write_bytes(bz2.compress(b'{"text": "bz"}\n'))
    (tmp_path / "b.jsonl.xz").write_bytes(lzma.compress(b'{"text": "xz"}\n'))
    assert load_texts([str(tmp_path / "*.jsonl.*")]) == ["bz", "xz"]


def test_iter_texts_is_lazy(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "first"}\n{"text": broken}\n', encoding="utf-8")
    docs = iter_texts([str(p)])
    assert next(docs) == "first"  # read before the bad line is met
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        next(docs)


def test_jsonl_bad_utf8_names_byte_offset(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl: not UTF-8 text \(byte offset 25\)"):
        load_texts([str(p)])


def test_parquet_row_groups_stream_and_null_row_counts_across_them(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [f"r{i}" for i in range(10)]}), p, row_group_size=3)
    assert pq.ParquetFile(p).num_row_groups == 4
    assert load_texts([str(p)]) == [f"r{i}" for i in range(10)]
    q = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["a"] * 7 + [None]}), q, row_group_size=3)
    with pytest.raises(DataError, match=r"nulls\.parquet: column 'text' is null in row 7"):
        load_texts([str(q)])


def _arrow_folder(folder, shards, column="text"):
    """A folder laid out like `datasets.Dataset.save_to_disk`: Arrow IPC stream files."""
    folder.mkdir()
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for name, texts in zip(names, shards, strict=True):
        table = pa.table({column: texts, "n": list(range(len(texts)))})
        with pa.ipc.new_stream(folder / name, table.schema) as out:
            for batch in table.to_batches(max_chunksize=2):
                out.write_batch(batch)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": n} for n in names]})
    )
    (folder / "dataset_info.json").write_text("{}")
    return folder


def test_save_to_disk_folder_is_read_as_its_arrow_files(tmp_path):
    folder = _arrow_folder(tmp_path / "ds", [["a", "b", "c"], ["d", "e"]])
    assert load_texts([str(folder)]) == ["a", "b", "c", "d", "e"]
    assert load_texts([str(folder / "*.arrow")]) == ["a", "b", "c", "d", "e"]
    names = [entry[0].rsplit("/", 1)[-1] for entry in fingerprint([str(folder)], {})]
    assert names == ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]


def test_arrow_errors_name_file_column_and_row(tmp_path):
    folder = _arrow_folder(tmp_path / "ds", [["a", "b"]], column="body")
    with pytest.raises(DataError, match=r"data-00000-of-00001\.arrow: no column 'text'"):
        load_texts([str(folder)])
    nulls = _arrow_folder(tmp_path / "nulls", [["a", "b", "c", None]])
    with pytest.raises(DataError, match=r"\.arrow: column 'text' is null in row 3"):
        load_texts([str(nulls)])
    (tmp_path / "junk.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match=r"junk\.arrow: not a readable Arrow IPC stream"):
        load_texts([str(tmp_path / "junk.arrow")])


def test_folder_written_by_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["x", "y", "z"]}).save_to_disk(str(tmp_path / "ds"))
    assert load_texts([str(tmp_path / "ds")]) == ["x", "y", "z"]


def test_zst_jsonl(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    p = tmp_path / "d.jsonl.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "zst"}\n'))
    assert load_texts([str(p)]) == ["zst"]


def test_zst_without_zstandard_is_refused_by_name(tmp_path):
    if importlib.util.find_spec("zstandard") is not None:
        pytest.skip("zstandard is installed")
    p = tmp_path / "d.jsonl.zst"
    p.write_bytes(b"(\xb5/\xfd")
    with pytest.raises(DataError, match=r"d\.jsonl\.zst: a \.zst file needs the zstandard"):
        load_texts([str(p)])
