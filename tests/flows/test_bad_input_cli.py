"""Bad input as a user meets it: through the `parammix` command line, every failure of every
kind (configs, corpora, checkpoints, stores, tables) prints exactly one `error:` line naming
the stage and the field or file, exits 2, shows no traceback, publishes nothing and deletes
nothing. Flow cases run in the session's Prefect API, as `parammix run` would."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from flows.cli import main
from parammix_core.data import load_prepared
from parammix_core.store import Store
from tests.parammix_core.bad_input import build_pipeline_store, config, open_store, write_jsonl

FRAME = re.compile(r'^\s*File ".*", line \d+', re.M)


@dataclass(frozen=True)
class Case:
    """`make(tmp) -> argv` builds the bad input under `tmp`; the error must contain `says`."""

    make: Callable[[Path], list[str]]
    says: tuple[str, ...]
    published: frozenset[str] = frozenset()  # stages whose artifacts may be in the store


def case(make: Callable[[Path], list[str]], *says: str, published: tuple[str, ...] = ()) -> Case:
    return Case(make, says, frozenset(published))


def files_of(root: Path, skip: tuple[str, ...]) -> dict[str, str]:
    """Path -> sha256 of every file under `root`, except under the folders in `skip`."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(skip):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def published_stages(store: Path) -> set[str]:
    return {p.relative_to(store).parts[0] for p in store.rglob("MANIFEST.json")}


def refused(tmp: Path, argv: list[str], capfd, says: tuple[str, ...], published=frozenset()):
    """Run the CLI; check the contract; return the error text."""
    before = files_of(tmp, ("store", "cache"))
    stored = files_of(tmp / "store", ()) if (tmp / "store").exists() else {}
    code = main(argv)
    out, err = capfd.readouterr()
    text = out + err
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    message = err[err.index("error:") :]
    for want in says:
        assert want in message, f"{want!r} not in {message!r}"
    assert "Traceback" not in text and not FRAME.search(text), text
    assert files_of(tmp, ("store", "cache")) == before  # nothing outside the store touched
    if stored:
        after = files_of(tmp / "store", ())
        assert {k: after.get(k) for k in stored} == stored  # nothing in the store lost
    if (tmp / "store").exists():
        assert published_stages(tmp / "store") <= set(published)
    return message


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def good_corpus(tmp: Path) -> dict[str, list[str]]:
    return {
        "a": [str(write_jsonl(tmp / "a.jsonl", seed=0))],
        "b": [str(write_jsonl(tmp / "b.jsonl", seed=1))],
    }


def write_config(tmp: Path, corpus: dict[str, list[str]] | None = None, **overrides) -> str:
    data = config(corpus or good_corpus(tmp), tmp / "store", **overrides)
    data["validation"] = {"enabled": False}
    data["final"] = {"enabled": False}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run_with(corpus_b: Callable[[Path], list[str]], **overrides) -> Callable[[Path], list[str]]:
    """`parammix run` on domain 'a' (good) and domain 'b' from `corpus_b(tmp)`."""

    def make(tmp: Path) -> list[str]:
        corpus = {"a": [str(write_jsonl(tmp / "a.jsonl"))], "b": corpus_b(tmp)}
        return ["run", "--config", write_config(tmp, corpus, **overrides)]

    return make


# --- configs: refused at load, before any store or flow -------------------------------------


def yaml_file(text: str | bytes, command: str = "validate-config") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "exp.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return (
            [command, str(path)]
            if command == "validate-config"
            else [command, "--config", str(path)]
        )

    return make


def override(*sets: str, command: str = "run") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        argv = [command, "--set", f"store.url={tmp / 'store'}"]
        for item in sets:
            argv += ["--set", item]
        return argv

    return make


BOMB = "store:\n  storage_options:\n    l0: &l0 [a, a]\n" + "".join(
    f"    l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 24)
)

CONFIG_CASES = {
    "unknown-key": case(
        yaml_file("training: {expert: {stepz: 3}}\n"), "exp.yaml", "training.expert.stepz"
    ),
    "zero-steps": case(
        yaml_file("training: {base: {steps: 0}}\n"),
        "training.base.steps: Input should be greater than 0",
    ),
    "bool-as-number": case(
        yaml_file("training: {expert: {lr: true}}\n"), "training.expert.lr: expected a number"
    ),
    "duplicate-key": case(
        yaml_file("seed: 1\nseed: 2\n"), "exp.yaml: not valid YAML: duplicate key 'seed'"
    ),
    "not-yaml": case(yaml_file("data: [unclosed\n"), "exp.yaml: not valid YAML"),
    "top-level-list": case(yaml_file("- 1\n- 2\n"), "exp.yaml: top level must be a mapping"),
    "not-utf8": case(
        yaml_file("name: caf\xe9\n".encode("latin-1")), "exp.yaml: not UTF-8 text (byte offset 9)"
    ),
    "empty-file-run": case(yaml_file("", "run"), "exp.yaml: the file is empty"),
    "alias-bomb-run": case(
        yaml_file(BOMB, "run"), "exp.yaml: refused: the document expands to more than"
    ),
    "too-many-aliases": case(
        yaml_file("a: &a 1\nb: [" + ", ".join(["*a"] * 80) + "]\n"), "more than 64 aliases"
    ),
    "n-mixtures-1e12": case(
        override("search.n_mixtures=1000000000000"),
        "search.n_mixtures: Input should be less than or equal to 100000",
    ),
    "seed-too-large": case(
        override("seed=99999999999999"), "seed: Input should be less than or equal to"
    ),
    "storage-options-huge": case(
        override("store.storage_options={" + ", ".join(f"k{i}: {i}" for i in range(300)) + "}"),
        "store.storage_options: more than 256 entries",
    ),
    "unknown-store-scheme": case(
        override("store.url=nosuch://bucket/x"), "store.url: unknown URL scheme 'nosuch'"
    ),
    "domain-name-too-long": case(
        override("data.domains.0.name=" + "m" * 300),
        "data.domains.0.name: String should have at most 64 characters",
    ),
    "secret-in-config": case(
        override("store.storage_options={secret: hunter2}"),
        "store.storage_options: secrets are not accepted",
    ),
    "no-such-config-file": case(
        lambda tmp: ["run", "--config", str(tmp / "nope.yaml")], "nope.yaml: no such config file"
    ),
    "bad-set-path": case(
        override("data.domains.9.name=x"), "--set 'data.domains.9.name=x': the config has no field"
    ),
    "bad-set-syntax": case(override("nonsense"), "--set 'nonsense': expected dotted.path=value"),
    "unknown-bound-domain": case(
        override("search.bounds={poetry: {min: 0.2}}"), "search.bounds: unknown domains ['poetry']"
    ),
}

# --- tables: parammix import / surrogate ----------------------------------------------------

RATIOS = "run_id,math,code\nr1,0.25,0.75\nr2,0.5,0.5\nr3,0.3,0.7\n"
METRICS = "run_id,group.math,loss.math\nr1,0.5,2.5\nr2,0.6,2.0\nr3,0.55,2.2\n"


def tables(ratios: str | bytes = RATIOS, metrics: str = METRICS) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        r, m = tmp / "ratios.csv", tmp / "metrics.csv"
        r.write_bytes(ratios if isinstance(ratios, bytes) else ratios.encode())
        m.write_text(metrics)
        return [
            "import",
            "--ratios",
            str(r),
            "--metrics",
            str(m),
            "--out",
            str(tmp / "store.parquet"),
        ]

    return make


def surrogate(train: str, test: str, *extra: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return ["surrogate", "--train", str(tmp / train), "--test", str(tmp / test), *extra]

    return make


TABLE_CASES = {
    "ratios-missing": case(
        lambda tmp: ["import", "--ratios", str(tmp / "r.csv"), "--metrics", str(tmp / "m.csv")],
        "r.csv: no such ratios file",
    ),
    "extra-field": case(
        tables(RATIOS.replace("r2,0.5,0.5", "r2,0.5,0.5,9")),
        "ratios.csv, line 3: 4 fields, but the header has 3",
    ),
    "extra-field-every-row": case(
        tables("run_id,math,code\nr1,0.2,0.8,1\nr2,0.5,0.5,2\n"),
        "ratios.csv: 2 bad rows:\n  line 2: 4 fields, but the header has 3\n  line 3: 4 fields",
    ),
    "duplicate-run": case(
        tables(RATIOS.replace("r3,", "r2,")),
        "ratios.csv, line 4, column 'run_id': duplicated run id 'r2'",
    ),
    "weights-sum": case(
        tables(RATIOS.replace("r2,0.5,0.5", "r2,0.5,0.6")), "ratios.csv, line 3", "sum to 1.1"
    ),
    "negative-weight": case(
        tables(RATIOS.replace("r1,0.25", "r1,-0.25")), "line 2, column 'math': negative weight"
    ),
    "nan-weight": case(
        tables(RATIOS.replace("r1,0.25", "r1,nan")), "column 'math': nan is not a finite number"
    ),
    "text-metric": case(
        tables(metrics=METRICS.replace("r1,0.5", "r1,high")),
        "metrics.csv, line 2, column 'group.math': not a number",
    ),
    "no-run-id": case(tables(RATIOS.replace("run_id", "id")), "column 'run_id': missing"),
    "ratios-not-utf8": case(
        tables(RATIOS.encode() + b"r4,0.5,\xe9\n"), "ratios.csv: not UTF-8 text"
    ),
    "empty-ratios": case(tables(""), "ratios.csv"),
    "surrogate-missing-table": case(surrogate("train.parquet", "test.parquet"), "train.parquet"),
}

# --- stores: admin commands and a run pointed at the wrong folder ----------------------------


def user_folder(tmp: Path) -> Path:
    home = tmp / "home"
    for rel, text in {
        "src/main.py": "print(1)\n",
        "corpus/p.jsonl": "{}\n",
        "notes.txt": "x\n",
    }.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    return home


def store_cmd(
    *action: str, at: Callable[[Path], Path] | None = None
) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        where = at(tmp) if at else tmp / "nowhere"
        return ["store", *action, "--set", f"store.url={where}"]

    return make


UNREACHABLE = (
    "store.storage_options={endpoint_url: 'http://127.0.0.1:9', "
    "config_kwargs: {connect_timeout: 1, retries: {max_attempts: 1}}}"
)
STORE_CASES = {
    "gc-delete-on-a-user-folder": case(
        store_cmd("gc", "--older-than", "0", "--delete", at=user_folder),
        "home: not a Param-Mix store (no STORE_ID marker)",
    ),
    "list-on-a-user-folder": case(store_cmd("list", at=user_folder), "not a Param-Mix store"),
    "verify-on-a-missing-store": case(store_cmd("verify"), "nowhere: no store here"),
    "gc-negative-age": case(
        store_cmd("gc", "--older-than", "-5"), "--older-than -5: must be 0 or more seconds"
    ),
    "run-into-a-user-folder": case(
        lambda tmp: ["run", "--config", write_config(tmp, **{"store__url": str(user_folder(tmp))})],
        "home: the folder is not empty and is not a Param-Mix store",
    ),
    "store-endpoint-unreachable": case(
        override(
            "store.url=s3://bucket-x/p",
            UNREACHABLE,
        ),
        "s3://bucket-x/p",
    ),
}


@pytest.mark.parametrize(
    "case",
    [*CONFIG_CASES.values(), *TABLE_CASES.values(), *STORE_CASES.values()],
    ids=[*CONFIG_CASES, *TABLE_CASES, *STORE_CASES],
)
def test_refused_before_any_flow(case: Case, tmp_path: Path, capfd, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-printed-secret")
    message = refused(tmp_path, case.make(tmp_path), capfd, case.says)
    assert "never-printed-secret" not in message


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
        r"(preflight|prepare_domains|base_model|train_expert\[\w+\]"
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


def test_the_suite_has_at_least_60_cases():
    cases = [CONFIG_CASES, TABLE_CASES, STORE_CASES, CORPUS_CASES, CHECKPOINT_CASES]
    assert sum(len(c) for c in cases) + 1 >= 60
