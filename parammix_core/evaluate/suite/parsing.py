"""Raw material of the suite: stdlib docstrings, prose sentences and code lines, via `ast`."""

from __future__ import annotations

import ast
import json
import os
import re
import tempfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

# Stdlib folders that are not representative library code: tests, generated tables, IDLE.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "turtledemo",
        "lib2to3",
        "encodings",
        "pydoc_data",
        "ensurepip",
        "site-packages",
        "dist-packages",
        "__pycache__",
    }
)
_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[,;:]?$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# What can hold a statement: a docstring's owner is never inside an expression.
_HOLDS_STATEMENTS = (ast.stmt, ast.Module, ast.excepthandler, ast.match_case)


class SuiteError(ValueError):
    """The sources cannot provide the requested documents; the message names task and source."""


@dataclass(frozen=True)
class _Docstring:
    kind: str  # "def" or "class"
    name: str
    sentence: str


def suite_files(root: Path) -> list[Path]:
    """The stdlib's library modules under `root`, sorted."""
    return sorted(
        p for p in root.rglob("*.py") if not _SKIP_DIRS & set(p.relative_to(root).parts[:-1])
    )


def _stdlib_sources(root: Path) -> list[str]:
    """Texts of the stdlib's library modules, in sorted path order."""
    files = suite_files(root)
    if not files:
        raise SuiteError(f"{root}: no Python source files found for the built-in suite")
    return [p.read_text("utf-8", errors="replace") for p in files]


@dataclass(frozen=True)
class StdlibMaterial:
    """A stdlib's library sources, its knowledge entries and all its docstrings."""

    sources: tuple[str, ...]
    entries: tuple[_Docstring, ...]
    docstrings: tuple[str, ...]


_PARSED: dict[str, StdlibMaterial] = {}


def stdlib_material(root: Path, identity: str | None = None) -> StdlibMaterial:
    """The material of the stdlib at `root`. Parsing it takes seconds and every store's suite
    needs it, so with an `identity` (a hash of its content: the shipped snapshot's) it is
    parsed once per process, and its docstrings kept as JSON beside the sources for the next
    process using the same folder."""
    if identity is not None and identity in _PARSED:
        return _PARSED[identity]
    sources = _stdlib_sources(root)
    kept = root / f".docstrings-{identity[:16]}.json" if identity is not None else None
    if kept is not None and kept.exists():
        saved = json.loads(kept.read_text("utf-8"))
        entries = [_Docstring(*e) for e in saved["entries"]]
        docstrings = saved["docstrings"]
    else:
        entries, docstrings = _parse_docstrings(sources)
        if kept is not None:
            _write_atomic(kept, {"entries": list(map(astuple, entries)), "docstrings": docstrings})
    material = StdlibMaterial(tuple(sources), tuple(entries), tuple(docstrings))
    if identity is not None:
        _PARSED[identity] = material
    return material


def _write_atomic(path: Path, data: dict) -> None:
    """JSON to `path` through a temporary file: a reader sees all of it or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    os.replace(tmp, path)


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """`ast.walk` (breadth first, same order) over the nodes that can hold statements: an
    eighth of the nodes, and every node a docstring belongs to."""
    todo = deque([tree])
    while todo:
        node = todo.popleft()
        todo.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, _HOLDS_STATEMENTS))
        yield node


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    return _SENTENCE_END.split(paragraph, 1)[0]


def _parse_docstrings(sources: Sequence[str]) -> tuple[list[_Docstring], list[str]]:
    """Read every docstring with `ast` (nothing is imported).

    Returns:
        The public functions/classes whose first docstring sentence names exactly one of them,
        and all docstrings (modules, classes, functions): the prose of the code.
    """
    found: list[_Docstring] = []
    prose: list[str] = []
    for text in sources:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are templates or need a newer grammar
        for node in _statements(tree):
            if not isinstance(node, _DOCUMENTED):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            prose.append(doc)
            if isinstance(node, ast.Module) or node.name.startswith("_"):
                continue
            sentence = _first_sentence(doc)
            if 20 <= len(sentence) <= 80 and sentence.endswith("."):
                kind = "class" if isinstance(node, ast.ClassDef) else "def"
                found.append(_Docstring(kind, node.name, sentence))
    unique = list(dict.fromkeys(found))
    names_per_sentence = Counter(d.sentence for d in unique)
    return [d for d in unique if names_per_sentence[d.sentence] == 1], prose


def _prose_sentences(texts: Iterable[str]) -> list[str]:
    """Plain English sentences of 8-40 words (letters and light punctuation only)."""
    out = []
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
                words = sentence.split()
                if (
                    8 <= len(words) <= 40
                    and sentence.endswith(".")
                    and all(_WORD.match(w) for w in [*words[:-1], words[-1][:-1]])
                ):
                    out.append(sentence)
    return list(dict.fromkeys(out))


def _code_lines(texts: Iterable[str]) -> list[tuple[str, str]]:
    """(previous line, line) candidates: no blanks, comments, decorators or obvious strings."""
    out = []
    for text in texts:
        lines = text.splitlines()
        for prev, line in zip(["", *lines], lines, strict=False):
            body = line.strip()
            if (
                16 <= len(body) <= 80
                and len(line) <= 100
                and not body.startswith(("#", "@", '"', "'"))
                and '"""' not in line
                and "'''" not in line
            ):
                out.append((prev, line))
    return out


def _is_statement(line: str) -> bool:
    """Whether a line parses on its own as Python (a block header gets a body), not a string.

    Source files cut into chunks can start inside a docstring, so tokenising a whole text does
    not tell prose from code; one line at a time does.
    """
    body = line.strip()
    for candidate in (body, body + " pass"):
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        first = tree.body[0] if tree.body else None  # None: only a comment
        return first is not None and not (
            isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        )
    return False
