"""The web domain: English prose shipped with Python (stdlib docstrings, the language
reference's topics, the stdlib's own notes and licence).

Nothing on the machine is read: text under /usr/share/doc changes whenever a Debian package is
installed, and the interpreter's own stdlib with the Python version; both made the default's
results differ between two machines with the same code. The stdlib read is the snapshot
shipped with Param-Mix (`snapshot`).
"""

from __future__ import annotations

import ast
import codecs
import gzip
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from parammix_core.data.sources.chunks import CHUNK_CHARS, _chunks
from parammix_core.data.sources.python_code import stdlib_files
from parammix_core.data.sources.snapshot import stdlib_dir
from parammix_core.data.sources.vocabulary import _words

# Folders of the stdlib whose text files are not its own notes: tests and installed packages.
NOT_NOTES = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages"})
_DOC_NAMES = (
    "readme",
    "news",
    "changelog",
    "history",
    "copyright",
    "copying",
    "license",
    "authors",
    "thanks",
    "contributing",
    "faq",
    "todo",
)
_DOC_SUFFIXES = {".txt", ".md", ".rst"}
FILE_CHARS = 20_000  # read at most this much of one file: no changelog dominates
_STOPWORDS = frozenset(
    _words(
        "the a an of to and in is it that for on with as by be are this or from at not was "
        "you can if which have has will all its use used when may any"
    )
)
_WORD = re.compile(r"[A-Za-z]+")


def looks_english(text: str) -> bool:
    """Cheap prose test: mostly ASCII letters and spaces (little punctuation or markup),
    and common English function words are frequent."""
    if not text:
        return False
    ascii_share = sum(c.isascii() for c in text) / len(text)
    words = _WORD.findall(text)
    letters = sum(map(len, words)) + text.count(" ")
    if ascii_share < 0.97 or len(words) < 8 or letters < 0.8 * len(text):
        return False
    stop = sum(w.lower() in _STOPWORDS for w in words)
    return stop / len(words) >= 0.12


def _is_doc_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    suffix = Path(name).suffix
    return suffix in _DOC_SUFFIXES or (
        name.startswith(_DOC_NAMES) and suffix not in {".html", ".json", ".log", ".py"}
    )


def _read_text_file(path: Path) -> str | None:
    """The first FILE_CHARS characters of a UTF-8 text file (gz decompressed), else None."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read(FILE_CHARS * 4)
        # final=False: a character cut by the size limit is dropped, not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
    except (OSError, EOFError, UnicodeDecodeError):
        return None  # unreadable, corrupt gzip or not UTF-8: skip the file
    if "\0" in text:
        return None
    return text[:FILE_CHARS]


def local_text_files(root: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
    """Plain-text documentation files under `root` (none if it is missing), sorted, without
    the folders named in `skip`."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for f in filenames:
            p = Path(dirpath, f)
            if not p.is_symlink() and _is_doc_file(p):
                found.append(p)
    return sorted(found)


def module_docstrings(path: Path) -> list[str]:
    """Docstrings of a module and of its functions/classes, parsed with `ast` (no import)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return []
    nodes = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [d for n in ast.walk(tree) if isinstance(n, nodes) and (d := ast.get_docstring(n))]


def pydoc_topics() -> list[str]:
    """Python's language-reference topics shipped in pydoc_data (a dict literal of prose)."""
    path = stdlib_dir() / "pydoc_data" / "topics.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            return [v.value for v in node.value.values if isinstance(v, ast.Constant)]
    return []


def _web_sources(seed: int) -> dict[str, list[Callable[[], list[str]]]]:
    """Lazy readers per kind of source, each list in a seeded order."""
    rng = random.Random(seed)
    notes = local_text_files(stdlib_dir(), NOT_NOTES)
    kinds = {
        "docstrings": [lambda p=p: module_docstrings(p) for p in stdlib_files()],
        "reference": [lambda t=t: [t] for t in pydoc_topics()],
        "notes": [lambda p=p: [t] if (t := _read_text_file(p)) else [] for p in notes],
    }
    for units in kinds.values():
        rng.shuffle(units)
    return kinds


def web_texts(seed: int, target_chars: int) -> list[str]:
    """English prose shipped with Python, balanced by characters across kinds of source
    (docstrings, reference topics, notes) and split into paragraph groups."""
    kinds = _web_sources(seed)
    queues: dict[str, Iterator[Callable[[], list[str]]]] = {k: iter(v) for k, v in kinds.items()}
    chars = dict.fromkeys(kinds, 0)
    docs: list[str] = []
    while queues and sum(chars.values()) < target_chars:
        kind = min(queues, key=lambda k: chars[k])  # ties: dict order, fixed
        reader = next(queues[kind], None)
        if reader is None:
            del queues[kind]
            continue
        for text in reader():
            for chunk in _chunks(text, CHUNK_CHARS):
                if looks_english(chunk):
                    docs.append(chunk)
                    chars[kind] += len(chunk)
    return docs
