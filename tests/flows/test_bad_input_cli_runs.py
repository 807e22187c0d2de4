"""Bad input as a user meets it in a run: through `parammix run`, every bad corpus or
checkpoint and a tampered artifact prints exactly one `error:` line naming the stage and the
field or file, exits 2, shows no traceback, publishes nothing and deletes nothing. The cases
run in the session's Prefect API, as `parammix run` would."""

from __future__ import annotations

import bz2
import gzip
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from flows.cli import main
from parammix_core.data import load_prepared
from parammix_core.store import Store
from tests.flows.bad_input_cli import Case, case, published_stages, refused, write_config
from tests.parammix_core.bad_input import build_pipeline_store, open_store, write_jsonl


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def run_with(corpus_b: Callable[[Path], list[str]], **overrides) -> Callable[[Path], list[str]]:
    """`parammix run` on domain 'a' (good) and domain 'b' from `corpus_b(tmp)`."""

    def make(tmp: Path) -> list[str]:
        corpus = {"a": [str(write_jsonl(tmp / "a.jsonl"))], "b": corpus_b(tmp)}
        return ["run", "--config", write_config(tmp, corpus, **overrides)]

    return make


# --- corpora: in the first stage of a run ---------------------------------------------------


def file_b(name: str, data: bytes | Callable[[Path], bytes]) -> Callable[[Path], list[str]]:
    def corpus_b(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(data(tmp) if callable(data) else data)
        return [str(path)]

    return corpus_b


def plain(tmp: Path, n: int = 200) -> bytes:
    return write_jsonl(tmp / "plain.jsonl.src", n_docs=n).read_bytes()


def flipped(raw: bytes) -> bytes:
    return raw[:20] + bytes(b ^ 0xFF for b in raw[20:60]) + raw[60:]


def parquet_b(table: pa.Table) -> Callable[[Path], list[str]]:
    def corpus_b(tmp: Path) -> list[str]:
        pq.write_table(table, tmp / "b.parquet")
        return [str(tmp / "b.parquet")]

    return corpus_b


def long_docs(n: int) -> bytes:
    return "".join(
        json.dumps({"text": f"doc {i} " + "word " * 30}) + "\n" for i in range(n)
    ).encode()


CORPUS_CASES = {
    "missing-file": case(
        run_with(lambda tmp: [str(tmp / "nowhere.jsonl")]),
        "preflight: domain 'b'",  # listed before the server starts
        "nowhere.jsonl: no such file",
    ),
    "glob-matches-nothing": case(
        run_with(lambda tmp: [str(tmp / "shards" / "*.jsonl")]),
        "domain 'b'",
        "shards/*.jsonl: no file matches",
    ),
    "empty-file": case(
        run_with(file_b("b.jsonl", b"\n\n")), "domain 'b': no documents in", "b.jsonl"
    ),
    "not-utf8": case(
        run_with(file_b("b.jsonl", b'{"text": "caf\xe9 au lait and more words here"}\n')),
        "b.jsonl: not UTF-8 text (byte offset 13)",
    ),
    "gz-damaged-stream": case(
        run_with(file_b("b.jsonl.gz", lambda tmp: flipped(gzip.compress(plain(tmp))))),
        "prepare_domains: domain 'b'",
        "b.jsonl.gz: damaged compressed data",
    ),
    "gz-truncated": case(
        run_with(file_b("b.jsonl.gz", lambda tmp: gzip.compress(plain(tmp))[:-40])),
        "b.jsonl.gz: damaged compressed data",
    ),
    "gz-not-gzip": case(
        run_with(file_b("b.jsonl.gz", b"this was never gzipped")), "b.jsonl.gz: cannot read"
    ),
    "bz2-damaged-stream": case(
        run_with(file_b("b.jsonl.bz2", lambda tmp: flipped(bz2.compress(plain(tmp))))),
        "domain 'b'",
        "b.jsonl.bz2",
    ),
    "invalid-json-line": case(
        run_with(file_b("b.jsonl", long_docs(5) + b"{not json}\n")), "b.jsonl:6: invalid JSON"
    ),
    "json-not-an-object": case(
        run_with(file_b("b.jsonl", b"[1, 2]\n")), "b.jsonl:1: expected a JSON object"
    ),
    "missing-text-field": case(
        run_with(file_b("b.jsonl", b'{"body": "x"}\n')), "b.jsonl:1: no key 'text'"
    ),
    "text-not-a-string": case(
        run_with(file_b("b.jsonl", b'{"text": 42}\n')), "b.jsonl:1: key 'text' is int"
    ),
    "parquet-no-column": case(
        run_with(parquet_b(pa.table({"body": ["x" * 80]}))), "b.parquet: no column 'text'"
    ),
    "parquet-not-string": case(
        run_with(parquet_b(pa.table({"text": [1, 2]}))), "b.parquet: column 'text' has type int64"
    ),
    "parquet-damaged": case(
        run_with(file_b("b.parquet", b"PAR1 not really parquet PAR1")),
        "b.parquet: not a readable parquet file",
    ),
    "unsupported-type": case(
        run_with(file_b("b.csv", b"text\nhello\n")), "b.csv: unsupported file type"
    ),
    "directory-not-file": case(
        run_with(lambda tmp: [str((tmp / "dir.jsonl").mkdir() or tmp / "dir.jsonl")]), "dir.jsonl"
    ),
    "too-short-after-filtering": case(
        run_with(file_b("b.jsonl", b'{"text": "tiny"}\n' * 5)), "domain 'b'"
    ),
    "context-too-short-for-the-tasks": case(
        run_with(file_b("b.jsonl", lambda tmp: write_jsonl(tmp / "b.src").read_bytes())),
        "merge_and_evaluate[batch 0]: lm-eval refused a request",
        "the model's context is 32 tokens: raise data.block_size",
        published=("data", "base", "expert", "probe", "proposals"),
    ),
    "built-in-tasks-beyond-their-sources": case(
        run_with(file_b("b.jsonl", plain), evaluation__builtin_docs_per_task=5000),
        "evaluation_suite: evaluation.builtin_docs_per_task: pm_stdlib_knowledge: 3780 stdlib "
        "docstrings, need 5000",
        published=("data",),  # before the base trains
    ),
    "batch-larger-than-corpus": case(
        run_with(
            file_b("b.jsonl", lambda tmp: write_jsonl(tmp / "small.src", n_docs=6).read_bytes()),
            training__expert__batch_size=64,
        ),
        "training.expert.batch_size=64 is larger than the training corpus",
        published=("data",),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CORPUS_CASES.values(), ids=list(CORPUS_CASES))
def test_bad_corpus_in_a_run(case: Case, prefect_api, tmp_path: Path, capfd):
    message = refused(tmp_path, case.make(tmp_path), capfd, case.says, case.published)
    stage = (
        r"(preflight|prepare_domains|evaluation_suite|base_model|train_expert\[\w+\]"
        r"|merge_and_evaluate\[batch \d+\])"
    )
    assert re.match(rf"error: {stage}: ", message)


# --- checkpoints: a user's base -------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    """A tiny pre-trained base with its tokenizer, saved as a user's checkpoint folder."""
    exp, refs = build_pipeline_store(tmp_path_factory.mktemp("pipeline"))
    store = open_store(exp, tmp_path_factory.mktemp("cache"))
    out = tmp_path_factory.mktemp("checkpoint") / "good"
    shutil.copytree(store.local_dir(refs["base"]), out)
    load_prepared(store.local_dir(refs["data"])).tokenizer.save_pretrained(out)
    return out


def with_checkpoint(damage: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def make(tmp: Path, good: Path) -> list[str]:
        target = tmp / "ckpt"
        shutil.copytree(good, target)
        damage(target)
        return ["run", "--config", write_config(tmp, model__checkpoint=str(target))]

    return make


def edit_config(**changes):
    def damage(path: Path) -> None:
        cfg = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**cfg, **changes}))

    return damage


def write(rel: str, data: bytes):
    return lambda path: (path / rel).write_bytes(data)


CHECKPOINT_CASES = {
    "missing-folder": case(
        lambda tmp, good: [
            "run",
            "--config",
            write_config(tmp, model__checkpoint=str(tmp / "nope")),
        ],
        "preflight: model.checkpoint: no such folder",
        "nope",
    ),
    "truncated-weights": case(
        with_checkpoint(
            lambda p: (p / "model.safetensors").write_bytes(
                (p / "model.safetensors").read_bytes()[:-100]
            )
        ),
        "base_model:",
        "ckpt/model.safetensors: not a valid safetensors file",
        published=("data",),
    ),
    "corrupt-header": case(
        with_checkpoint(write("model.safetensors", b"\x10" + b"\x00" * 7 + b"{not a header}")),
        "ckpt/model.safetensors: not a valid safetensors file",
        published=("data",),
    ),
    "pickle-as-safetensors": case(
        with_checkpoint(lambda p: torch.save({"w": torch.ones(2)}, p / "model.safetensors")),
        "ckpt/model.safetensors: a pickle (torch.save) file",
        published=("data",),
    ),
    "pickle-only": case(
        with_checkpoint(
            lambda p: (
                (p / "model.safetensors").unlink(),
                (p / "pytorch_model.bin").write_bytes(b"\x80\x04no"),
            )
        ),
        "preflight: model.checkpoint: ",
        "ckpt has only pickled weights ['pytorch_model.bin']",
    ),
    "fewer-layers-than-config": case(
        with_checkpoint(edit_config(num_hidden_layers=2)),
        "ckpt: the weights do not fit config.json",
        published=("data",),
    ),
    "config-not-json": case(
        with_checkpoint(write("config.json", b"{'hidden_size': 16")),
        "prepare_domains:",
        "ckpt: cannot load a tokenizer",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CHECKPOINT_CASES.values(), ids=list(CHECKPOINT_CASES))
def test_bad_checkpoint_in_a_run(case: Case, prefect_api, good_checkpoint, tmp_path: Path, capfd):
    argv = case.make(tmp_path, good_checkpoint)
    refused(tmp_path, argv, capfd, case.says, case.published)


# --- a damaged store on a cached rerun ------------------------------------------------------


@pytest.mark.slow
def test_tampered_artifact_is_found_by_run_verify(prefect_api, tmp_path: Path, capfd):
    """A fully cached rerun reads nothing, so it cannot notice a tampered artifact;
    `--verify` re-hashes what the cached stages would have returned and names it."""
    config_file = write_config(tmp_path, data__block_size=128)
    argv = ["run", "--config", config_file]
    assert main(argv) == 0
    capfd.readouterr()
    store = Store(str(tmp_path / "store"))
    expert = next(m for m in store.artifacts() if m["stage"] == "expert" and m["name"] == "b")
    weights = (
        tmp_path
        / "store"
        / f"expert/b-{expert['key'][:24]}"
        / expert["upload"]
        / "model.safetensors"
    )
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight: same size
    weights.write_bytes(bytes(data))
    assert main(argv) == 0  # the cache answers without reading the artifact
    capfd.readouterr()
    message = refused(
        tmp_path,
        [*argv, "--verify"],
        capfd,
        ("train_expert[b]:", "model.safetensors: sha256 does not match the manifest"),
        published=tuple(published_stages(tmp_path / "store")),
    )
    assert message.startswith("error: train_expert[b]: expert/b-")
