"""Built-in domains: non-empty, deterministic, in the formats the benchmarks ask in."""

import gzip
import os
import re
from pathlib import Path

import pytest

from parammix_core.data import DataError, builtin_texts
from parammix_core.data.sources import (
    CHUNK_CHARS,
    _chunks,
    _read_text_file,
    local_text_files,
    looks_english,
    prose,
    split_python,
    stdlib_dir,
    stdlib_files,
)

TARGET = 30_000


@pytest.mark.parametrize("name", ["math", "code", "sft", "web"])
def test_builtin_domain_is_nonempty_and_deterministic(name):
    docs = builtin_texts(name, seed=3, target_chars=TARGET)
    assert docs and all(d.strip() for d in docs)
    assert builtin_texts(name, seed=3, target_chars=TARGET) == docs
    assert builtin_texts(name, seed=4, target_chars=TARGET) != docs


@pytest.mark.parametrize("name", ["math", "code", "sft"])
def test_builtin_domain_reaches_target(name):
    docs = builtin_texts(name, seed=0, target_chars=TARGET)
    assert TARGET <= sum(map(len, docs)) < TARGET + 2 * CHUNK_CHARS


def test_math_answers_are_correct():
    docs = builtin_texts("math", seed=1, target_chars=60_000)
    pattern = re.compile(r"^Question: .+\nAnswer: .+ The answer is (-?\d+|odd|even)\.$", re.S)
    assert all(pattern.match(d) for d in docs)
    binary = re.compile(
        r"^Question: What is (\d+) ([-+*/]) (\d+)\?\nAnswer: .* The answer is (-?\d+)\.$"
    )
    checked = 0
    for d in docs:
        if m := binary.match(d):
            a, op, b, ans = int(m[1]), m[2], int(m[3]), int(m[4])
            if op == "/":
                assert b and a % b == 0 and ans * b == a, d
            else:
                assert ans == {"+": a + b, "-": a - b, "*": a * b}[op], d
            checked += 1
    assert checked > 100


def test_sft_format():
    docs = builtin_texts("sft", seed=2, target_chars=TARGET)
    pattern = re.compile(r"^### Instruction:\n.+\n### Response:\n.+$", re.S)
    assert all(pattern.match(d) for d in docs)
    assert any("Who is the" in d for d in docs)
    assert any("comes next in the sequence" in d for d in docs)


def test_stdlib_files_skip_tests_and_vendored_code():
    files = stdlib_files()
    assert files == sorted(files)
    assert any(f.name == "json" or f.parent.name == "json" for f in files)
    bad = {"test", "tests", "site-packages", "idlelib", "encodings"}
    assert not [f for f in files if bad & set(f.parts)]


def test_split_python_per_top_level_definition():
    source = (
        "import os\n\nX = 1\n\n\n"
        "@decorator\n@other(1)\ndef f(a):\n    '''Doc.'''\n\n    return a + " + "1" * 200 + "\n\n\n"
        "class C:\n    def m(self):\n        return 2" + " " * 200 + "\n\n"
        "async def g():\n    await h()" + "#" * 200 + "\n"
    )
    docs = split_python(source)
    assert len(docs) == 3
    assert docs[0].startswith("import os\n\nX = 1\n\n@decorator\n@other(1)\ndef f(a):")
    assert docs[1].startswith("class C:\n    def m(self):\n        return 2")
    assert docs[2].startswith("async def g():")


def test_code_documents_are_bounded():
    docs = builtin_texts("code", seed=0, target_chars=200_000)
    assert max(map(len, docs)) <= CHUNK_CHARS
    assert sum(d.startswith(("def ", "class ", "@")) for d in docs) > len(docs) / 3


def test_chunks_respect_limit_and_keep_text():
    text = "\n\n".join(f"paragraph {i} " + "word " * (i * 7) for i in range(40))
    pieces = _chunks(text, 300)
    assert max(map(len, pieces)) <= 300
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )


def test_looks_english():
    assert looks_english(
        "This module provides an interface to the mechanisms used to implement the import "
        "statement. It defines the functions that are used by the interpreter."
    )
    assert not looks_english("x = foo(bar, baz)\ny = qux[1:2]\nz = {a: b for a, b in c}")
    assert not looks_english("Файл содержит описание модуля и его функций для работы с текстом.")


def test_web_is_english():
    docs = builtin_texts("web", seed=0, target_chars=TARGET)
    assert all(looks_english(d) for d in docs)


def test_unknown_builtin_and_bad_target():
    with pytest.raises(DataError, match="unknown built-in domain 'poetry'"):
        builtin_texts("poetry", 0, 100)
    with pytest.raises(DataError, match="target_chars"):
        builtin_texts("math", 0, 0)


def test_local_text_files_and_reading(tmp_path, monkeypatch):
    pkg = tmp_path / "doc" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "README").write_text("plain readme", encoding="utf-8")
    (pkg / "changelog.Debian.gz").write_bytes(gzip.compress("zipped log é".encode()))
    (pkg / "index.html").write_text("<html></html>", encoding="utf-8")
    (pkg / "notes.txt").write_bytes(b"binary\0data")
    (pkg / "link.txt").symlink_to(pkg / "README")
    (tmp_path / "doc" / "tests").mkdir()
    (tmp_path / "doc" / "tests" / "README").write_text("a test's readme", encoding="utf-8")
    files = local_text_files(tmp_path / "doc", frozenset({"tests"}))
    assert [f.name for f in files] == ["README", "changelog.Debian.gz", "notes.txt"]
    assert local_text_files(tmp_path / "missing") == []
    assert _read_text_file(pkg / "changelog.Debian.gz") == "zipped log é"
    assert _read_text_file(pkg / "notes.txt") is None
    # FILE_CHARS is read in prose, where _read_text_file lives
    monkeypatch.setattr(prose, "FILE_CHARS", 3)  # reads 12 bytes: cuts "é" (2 bytes) in half
    (pkg / "long.txt").write_text("abcdefghijk\u00e9xyz", encoding="utf-8")
    assert _read_text_file(pkg / "long.txt") == "abc"


def test_web_reads_only_what_python_ships(monkeypatch):
    """The default's web corpus must not depend on what else the machine has installed
    (/usr/share/doc grows with every Debian package): every file it reads is Python's own."""
    read: list[Path] = []
    real_read_text, real_open = prose._read_text_file, prose.module_docstrings
    monkeypatch.setattr(prose, "_read_text_file", lambda p: read.append(p) or real_read_text(p))
    monkeypatch.setattr(prose, "module_docstrings", lambda p: read.append(p) or real_open(p))
    walked: list[str] = []
    real_walk = os.walk
    monkeypatch.setattr(prose.os, "walk", lambda root: walked.append(str(root)) or real_walk(root))
    docs = builtin_texts("web", seed=0, target_chars=TARGET)
    assert docs and read
    stdlib = stdlib_dir()
    assert set(walked) == {str(stdlib)}  # the stdlib's source, then its notes
    outside = [p for p in read if not Path(p).is_relative_to(stdlib)]
    assert outside == []
    assert not any({"site-packages", "dist-packages"} & set(Path(p).parts) for p in read)
