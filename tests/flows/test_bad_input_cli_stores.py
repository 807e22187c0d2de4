"""Bad tables, stores and settings as a user meets them, refused before any flow: one `error:`
line naming the file, store or setting, exit 2, no traceback, nothing published or deleted
(the configs' cases are in `test_bad_input_cli.py`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from tests.flows.bad_input_cli import Case, case, override, refused, write_config


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


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
    "import-out-is-an-input": case(
        lambda tmp: [*tables()(tmp)[:-1], str(tmp / "metrics.csv")],
        "--out ",
        "metrics.csv: is an input table; name a new file",
    ),
    "import-out-in-a-missing-folder": case(
        lambda tmp: [*tables()(tmp)[:-1], str(tmp / "nowhere" / "rows.parquet")],
        "nowhere/rows.parquet: the folder ",
        "nowhere does not exist",
    ),
    "import-out-cannot-be-written": case(
        lambda tmp: [*tables()(tmp)[:-1], "/proc/version"], "--out /proc/version: cannot write it ("
    ),
    "column-given-twice": case(  # pandas read it as the domains math, math.1 (audit 38)
        tables(RATIOS.replace("run_id,math,code", "run_id,math,math")),
        "ratios.csv, line 1: column(s) ['math'] given more than once",
    ),
    "metric-given-twice": case(
        tables(metrics=METRICS.replace("loss.math\n", "group.math\n", 1)),
        "metrics.csv, line 1: column(s) ['group.math'] given more than once",
    ),
    "column-without-a-name": case(  # read as the domain 'Unnamed: 2'
        tables(RATIOS.replace("run_id,math,code", "run_id,math,")),
        "ratios.csv, line 1: column 3 has no name",
    ),
    "extra-field": case(
        tables(RATIOS.replace("r2,0.5,0.5", "r2,0.5,0.5,9")),
        "ratios.csv, line 3: 4 fields, but the header has 3",
    ),
    "extra-field-every-row": case(
        tables("run_id,math,code\nr1,0.2,0.8,1\nr2,0.5,0.5,2\n"),
        "ratios.csv: 2 bad rows (the values are checked once every row has the header's "
        "fields):\n  line 2: 4 fields, but the header has 3\n  line 3: 4 fields",
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


def stage_named_folder(tmp: Path) -> Path:
    """A user's folder whose sub-folders happen to carry stage names."""
    project = tmp / "project"
    for rel in ("data/my_corpus.jsonl", "report/q3.md"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("mine\n")
    return project


def a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("x\n")
    return tmp / "notes.txt"


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
    "gc-nan-age": case(
        store_cmd("gc", "--older-than", "nan"), "--older-than nan: must be 0 or more seconds"
    ),
    "run-into-a-user-folder": case(
        lambda tmp: ["run", "--config", write_config(tmp, **{"store__url": str(user_folder(tmp))})],
        "home: the folder is not empty and is not a Param-Mix store",
    ),
    "run-into-a-folder-with-stage-names": case(
        lambda tmp: [
            "run",
            "--config",
            write_config(tmp, **{"store__url": str(stage_named_folder(tmp))}),
        ],
        "project: the folder is not empty and is not a Param-Mix store",
        "it holds data/my_corpus.jsonl, report/q3.md",
    ),
    "run-into-the-cache": case(  # the autouse fixture's PARAMMIX_CACHE
        lambda tmp: ["run", "--config", write_config(tmp, **{"store__url": str(tmp / "cache/s")})],
        "cache/s: inside the cache folder",
        "(PARAMMIX_CACHE), which Param-Mix empties as it works; give store.url a folder outside",
    ),
    "store-at-the-root": case(  # "/" stripped to "", read as the working folder: a whole
        override("store.url=/"),  # store was built there (audit 2026-12-07)
        "store '/': the root of a file system; store.url needs a folder in it",
    ),
    "export-from-a-user-folder": case(  # said "not in the store: run `parammix run` first"
        lambda tmp: [
            "export",
            "--set",
            f"store.url={user_folder(tmp)}",
            "--chosen",
            "--out",
            str(tmp / "o"),
        ],
        "not a Param-Mix store (no STORE_ID marker)",
    ),
    "export-from-a-file": case(  # was a raw NotADirectoryError
        lambda tmp: [
            "export",
            "--set",
            f"store.url={a_file(tmp)}",
            "--chosen",
            "--out",
            str(tmp / "o"),
        ],
        "notes.txt: a file, not a folder",
    ),
    "store-host-not-there": case(  # was "gaierror: [Errno -2] Name or service not known"
        lambda tmp: ["store", "list", "--set", "store.url=ftp://example.invalid/x"],
        "store 'ftp://example.invalid/x': cannot open (",
    ),
    "run-into-a-file": case(
        lambda tmp: ["run", "--config", write_config(tmp, **{"store__url": str(a_file(tmp))})],
        "notes.txt: a file, not a folder; point store.url at a new or empty folder",
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
    "case", [*TABLE_CASES.values(), *STORE_CASES.values()], ids=[*TABLE_CASES, *STORE_CASES]
)
def test_refused_before_any_flow(case: Case, tmp_path: Path, capfd, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-printed-secret")
    message = refused(tmp_path, case.make(tmp_path), capfd, case.says)
    assert "never-printed-secret" not in message


def test_an_unreachable_prefect_api_is_refused_before_the_store(tmp_path: Path, capfd):
    """An audit (2026-12-07): the run made the store, then failed after about 20 s with a bare
    RuntimeError naming no setting."""
    url = "http://127.0.0.1:9/api"
    with temporary_settings(updates={PREFECT_API_URL: url}):
        refused(tmp_path, override()(tmp_path), capfd, (f"PREFECT_API_URL {url}: cannot reach",))
    assert not (tmp_path / "store").exists()


def test_a_prefect_home_that_is_a_file_is_named(tmp_path: Path, capfd):
    """Was "the temporary Prefect server exited with code 3" (audit 38)."""
    home = tmp_path / "cache" / "prefect-home"  # inside the cache: the harness's own folders
    home.parent.mkdir(exist_ok=True)
    home.write_text("")
    with temporary_settings(updates={PREFECT_HOME: home}, restore_defaults={PREFECT_API_URL}):
        refused(tmp_path, override()(tmp_path), capfd, (f"PREFECT_HOME {home}: a file",))
    assert not (tmp_path / "store").exists()


def test_import_never_writes_into_a_store(tmp_path: Path, capfd):
    """A release check overwrote a stored rows.parquet and the store's own STORE_ID this way."""
    stored = tmp_path / "s" / "evals" / "batch-0" / "rows.parquet"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"artifact")
    (tmp_path / "s" / "STORE_ID").write_text("0" * 32)
    for out in (stored, tmp_path / "s" / "STORE_ID"):
        argv = [*tables()(tmp_path)[:-1], str(out)]
        refused(tmp_path, argv, capfd, (f"--out {out}: inside the store {tmp_path / 's'}",))
    assert (
        stored.read_bytes() == b"artifact" and (tmp_path / "s" / "STORE_ID").read_text() == "0" * 32
    )
    assert sorted(p.name for p in stored.parent.iterdir()) == ["rows.parquet"]


def test_a_cache_that_is_a_file_is_one_error_line(tmp_path: Path, capfd):
    (tmp_path / "cache").write_text("x\n")  # where the autouse fixture points PARAMMIX_CACHE
    says = ("PARAMMIX_CACHE: cannot write in", "set PARAMMIX_CACHE to a writable folder")
    refused(tmp_path, ["run", "--config", write_config(tmp_path)], capfd, says)
    assert (tmp_path / "cache").read_text() == "x\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has the GPU asked for")
def test_a_gpu_asked_for_on_a_machine_without_one_is_refused_before_the_store(
    tmp_path: Path, capfd
):
    """An audit (2026-12-07): validate-config passed, then the run made the store and failed in
    base_model with a bare ValueError naming no field."""
    argv = override("runtime.device=cuda")(tmp_path)
    refused(tmp_path, argv, capfd, ("runtime.device: 'cuda' requested but CUDA is not available",))
    assert not (tmp_path / "store").exists()
