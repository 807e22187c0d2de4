"""Helpers of the command-line bad-input tests (`test_bad_input_cli.py`,
`test_bad_input_cli_stores.py`, `test_bad_input_cli_runs.py`): a case, the contract every
refusal is checked against (`refused`), a tiny experiment's config file and `--set` items."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from flows.cli import main
from tests.parammix_core.bad_input import config, write_jsonl

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


def override(*sets: str, command: str = "run") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        argv = [command, "--set", f"store.url={tmp / 'store'}"]
        for item in sets:
            argv += ["--set", item]
        return argv

    return make
