"""Bad corpora and too-small corpora, through the stages a run calls: each error names the
domain and the file (line, column), and the store is unchanged afterwards."""

import bz2
import gzip
import json
import lzma
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parammix_core import stages
from parammix_core.config import parse_experiment
from parammix_core.data import DataError
from parammix_core.runs import RunsError
from parammix_core.simplex import SimplexError
from parammix_core.store import StoreError
from tests.parammix_core.bad_input import (
    artifact_file,
    build_pipeline_store,
    copy_store,
    experiment,
    open_store,
    snapshot,
    write_jsonl,
)


def _refused(tmp_path: Path, corpus: dict, error: type, match: str, **overrides) -> None:
    """prepare_domains on `corpus` raises `error` matching `match`; nothing is written."""
    exp = experiment(corpus, tmp_path / "store", **overrides)
    store = open_store(exp, tmp_path / "cache")
    before = snapshot(tmp_path / "store")
    with pytest.raises(error, match=match):
        stages.prepare_domains(exp, store)
    assert snapshot(tmp_path / "store") == before


def _good(tmp_path: Path) -> list[str]:
    return [str(write_jsonl(tmp_path / "good.jsonl"))]


def test_missing_corpus_file_names_domain_and_file(tmp_path):
    corpus = {"a": _good(tmp_path), "b": [str(tmp_path / "nowhere.jsonl")]}
    _refused(tmp_path, corpus, DataError, r"domain 'b': .*nowhere\.jsonl: no such file")


def test_glob_matching_nothing_names_domain_and_pattern(tmp_path):
    corpus = {"a": _good(tmp_path), "b": [str(tmp_path / "shards" / "*.parquet")]}
    _refused(tmp_path, corpus, DataError, r"domain 'b': .*shards/\*\.parquet: no file matches")


def test_empty_corpus_files_name_domain_and_paths(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    corpus = {"a": _good(tmp_path), "b": [str(tmp_path / "empty.jsonl")]}
    _refused(tmp_path, corpus, DataError, r"domain 'b': no documents in \[.*empty\.jsonl'\]")


def test_undecodable_bytes_name_domain_file_and_offset(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"text": "caf\xe9 au lait, long enough to keep"}\n')
    corpus = {"a": _good(tmp_path), "b": [str(bad)]}
    _refused(
        tmp_path, corpus, DataError, r"domain 'b': .*latin1\.jsonl: not UTF-8 text \(byte offset 13"
    )


def test_corrupt_gzip_names_domain_and_file(tmp_path):
    bad = tmp_path / "corpus.jsonl.gz"
    bad.write_bytes(b"this was never gzipped")
    corpus = {"a": _good(tmp_path), "b": [str(bad)]}
    _refused(tmp_path, corpus, DataError, r"domain 'b': .*corpus\.jsonl\.gz: cannot read")


def _damaged(raw: bytes) -> bytes:
    """A compressed stream with its header intact and bytes flipped further in."""
    return raw[:20] + bytes(b ^ 0xFF for b in raw[20:60]) + raw[60:]


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        (".gz", lambda data: _damaged(gzip.compress(data))),
        (".gz", lambda data: gzip.compress(data)[:-30]),  # truncated
        (".xz", lambda data: _damaged(lzma.compress(data))),
        (".bz2", lambda data: _damaged(bz2.compress(data))),
    ],
    ids=["gz-damaged-stream", "gz-truncated", "xz-damaged-stream", "bz2-damaged-stream"],
)
def test_damaged_compressed_stream_names_domain_and_file(tmp_path, suffix, damage):
    """A valid header over a damaged stream is a data error (never retried), not a zlib
    error naming neither file nor domain."""
    raw = write_jsonl(tmp_path / "plain.jsonl", n_docs=200).read_bytes()
    bad = tmp_path / f"corpus.jsonl{suffix}"
    bad.write_bytes(damage(raw))
    corpus = {"a": _good(tmp_path), "b": [str(bad)]}
    message = rf"domain 'b': .*corpus\.jsonl\{suffix}: (damaged compressed data|cannot read)"
    _refused(tmp_path, corpus, DataError, message)


def test_parquet_without_the_text_column_names_domain_file_and_columns(tmp_path):
    table = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": ["x" * 50], "id": [1]}), table)
    corpus = {"a": _good(tmp_path), "b": [str(table)]}
    message = r"domain 'b': .*docs\.parquet: no column 'text' \(columns: \['body', 'id'\]\)"
    _refused(tmp_path, corpus, DataError, message)


def test_jsonl_row_without_the_configured_field_names_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"content": "a" * 50}) + "\n" + json.dumps({"body": "b" * 50}) + "\n",
        encoding="utf-8",
    )
    corpus = {"a": _good(tmp_path), "b": [str(path)]}
    _refused(
        tmp_path,
        corpus,
        DataError,
        r"domain 'b': .*rows\.jsonl:2: no key 'content' \(keys: \['body'\]\)",
        data__domains=[
            {"name": "a", "paths": corpus["a"]},
            {"name": "b", "paths": corpus["b"], "text_field": "content"},
        ],
    )


def test_domain_with_no_text_after_filtering(tmp_path):
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps({"text": "tiny"}) + "\n" for _ in range(5)))
    corpus = {"a": _good(tmp_path), "b": [str(short)]}
    message = r"domain 'b': no text left after cleaning \(5 documents, 5 shorter than min_chars=10"
    _refused(tmp_path, corpus, DataError, message)


def test_domain_of_duplicates_only_after_dedup(tmp_path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps({"text": "the same line " * 20}) + "\n" for _ in range(30)))
    corpus = {"a": _good(tmp_path), "b": [str(dup)]}
    message = r"domain 'b': 1 document left after cleaning \(30 documents, 0 shorter .*29 dup"
    _refused(tmp_path, corpus, DataError, message)


# --- a training batch larger than a domain's corpus: refused before any training -------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return build_pipeline_store(tmp_path_factory.mktemp("pipeline"))


@pytest.mark.parametrize("field", ["training.base.batch_size", "probe.batch_size"])
def test_batch_larger_than_a_domain_fails_before_training(tmp_path, field):
    small = write_jsonl(tmp_path / "small.jsonl", n_docs=8)
    corpus = {"a": _good(tmp_path), "b": [str(small)]}
    exp = experiment(corpus, tmp_path / "store", **{field.replace(".", "__"): 50})
    store = open_store(exp, tmp_path / "cache")
    data = stages.prepare_domains(exp, store)
    stats = store.load_json(data, "stats.json")
    blocks = stats["b"]["train_blocks"]
    assert blocks < 50 <= stats["a"]["train_blocks"]
    before = snapshot(tmp_path / "store")
    message = rf"{field}=50 is larger than the training corpus of domain\(s\) \{{'b': {blocks}\}}"
    with pytest.raises(DataError, match=message):
        stages.build_base(exp, store, data)
    assert snapshot(tmp_path / "store") == before  # no base, no _work checkpoints


def test_expert_batch_larger_than_the_corpus_fails_before_training(pipeline, tmp_path):
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    exp = exp.model_copy(
        update={
            "training": exp.training.model_copy(
                update={"expert": exp.training.expert.model_copy(update={"batch_size": 10_000})}
            )
        }
    )
    before = snapshot(tmp_path / "store")
    with pytest.raises(DataError, match=r"training.expert.batch_size=10000 is larger .*'a': \d+"):
        stages.train_expert(exp, store, "a", refs["data"], refs["base"])
    assert snapshot(tmp_path / "store") == before


def test_truncated_prepared_data_is_refused_not_reused(pipeline, tmp_path):
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    tokens = artifact_file(store, refs["data"], "tokens/a.train-00000.safetensors")
    tokens.write_bytes(tokens.read_bytes()[:100])
    before = snapshot(tmp_path / "store")
    with pytest.raises(
        StoreError, match=r"domains-\w+/tokens/a\.train-00000\.safetensors: size 100 does not"
    ):
        stages.prepare_domains(exp, store)
    assert snapshot(tmp_path / "store") == before


def test_tampered_prepared_data_is_refused_where_it_is_used(pipeline, tmp_path):
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    tokens = artifact_file(store, refs["data"], "tokens/a.train-00000.safetensors")
    raw = bytearray(tokens.read_bytes())
    raw[-1] ^= 0xFF  # same size, other bytes: only the sha256 tells
    tokens.write_bytes(bytes(raw))
    exp = parse_experiment({**exp.model_dump(mode="json"), "seed": 1})  # a base not built yet
    before = snapshot(tmp_path / "store")
    with pytest.raises(
        StoreError, match=r"domains-\w+/tokens/a\.train-00000\.safetensors: sha256 does not"
    ):
        stages.build_base(exp, store, refs["data"])
    assert snapshot(tmp_path / "store") == before


# --- imported runs: mixture weights from someone else's tables ----------------------------


def _import(tmp_path: Path, pipeline, ratios: str, metrics: str | None = None):
    exp, _ = pipeline
    exp, store = copy_store(exp, tmp_path)
    (tmp_path / "ratios.csv").write_text(ratios)
    groups = exp.evaluation.groups
    metrics = metrics or (
        "run_id,"
        + ",".join(f"group.{g}" for g in groups)
        + "\n"
        + "".join(f"r{i}," + ",".join("0.5" for _ in groups) + "\n" for i in (1, 2))
    )
    (tmp_path / "metrics.csv").write_text(metrics)
    runs = {"ratios": str(tmp_path / "ratios.csv"), "metrics": str(tmp_path / "metrics.csv")}
    data = exp.model_dump(mode="json")
    data["search"]["import_runs"] = runs
    exp = parse_experiment(data)
    before = snapshot(tmp_path / "store")
    return exp, store, before


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        (
            "run_id,a,b\nr1,0.5,0.5\nr2,0.7,0.2\n",
            r"ratios\.csv, line 3: weights of run 'r2' sum to 0\.9, not 1",
        ),
        ("run_id,a,b\nr1,0.5,0.5\nr2,-0.5,1.5\n", r"ratios\.csv, line 3, column 'a': negative"),
        ("run_id,a,b\nr1,nan,0.5\nr2,0.5,0.5\n", r"ratios\.csv, line 2, column 'a': nan is not"),
        ("run_id,a,b\nr1,inf,0.5\nr2,0.5,0.5\n", r"ratios\.csv, line 2, column 'a': inf is not"),
        ("run_id,a,poetry\nr1,0.5,0.5\nr2,0.5,0.5\n", r"columns \['a', 'poetry'\] differ"),
    ],
    ids=["not-summing-to-1", "negative", "nan", "infinite", "unknown-domain"],
)
def test_imported_mixtures_are_checked(pipeline, tmp_path, ratios, message):
    exp, store, before = _import(tmp_path, pipeline, ratios)
    with pytest.raises(RunsError, match=message):
        stages.import_runs(exp, store)
    assert snapshot(tmp_path / "store") == before


def test_imported_runs_file_missing_names_the_field(pipeline, tmp_path):
    exp, store, before = _import(tmp_path, pipeline, "run_id,a,b\nr1,1,0\n")
    (tmp_path / "ratios.csv").unlink()
    with pytest.raises(RunsError, match=r"search\.import_runs\.ratios: no such file .*ratios\.csv"):
        stages.import_runs(exp, store)
    assert snapshot(tmp_path / "store") == before


def test_stage_mixtures_off_the_simplex_name_the_domain(pipeline, tmp_path):
    """merge_and_evaluate refuses a mixture before it loads a model or writes anything."""
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    before = snapshot(tmp_path / "store")
    args = (refs["data"], refs["base"], refs["experts"])
    for alpha, message in (
        ([0.6, 0.6], r"sum to 1\.2, not 1"),
        ([float("nan"), 1.0], r"not finite for domain\(s\) \['a'\]"),
        ([1.2, -0.2], r"negative for domain\(s\) \['b'\]"),
        ([1.0], r"1 weight\(s\) but there are 2 domains \['a', 'b'\]"),
    ):
        with pytest.raises(SimplexError, match=message):
            stages.merge_and_evaluate(exp, store, [[0.5, 0.5], alpha], *args)
    assert snapshot(tmp_path / "store") == before
    assert not re.search("evals", " ".join(before))
