"""The code domain: the Python standard library's own source, split into functions/classes."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from parammix_core.data.sources.chunks import CHUNK_CHARS, _chunks
from parammix_core.data.sources.snapshot import stdlib_dir

# Directories of the stdlib that are tests, third-party packages, GUI demos, generated tables
# (encodings) or prose data (pydoc_data goes to the web domain).
SKIP_DIRS = {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
    "idlelib",
    "turtledemo",
    "encodings",
    "pydoc_data",
    "ensurepip",
    "lib-dynload",
    "__pycache__",
}
_TOP_LEVEL = re.compile(r"(?:@|def |async def |class )")


def stdlib_files() -> list[Path]:
    """Python source files of the shipped stdlib snapshot (`snapshot`), sorted."""
    return library_files(stdlib_dir())


def library_files(root: Path) -> list[Path]:
    """Python source files of a stdlib `root`, sorted, without tests and generated/vendored
    code."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-")
        )
        files += [
            Path(dirpath, f)
            for f in filenames
            if f.endswith(".py") and not f.startswith("_sysconfigdata")
        ]
    return sorted(files)


def split_python(source: str) -> list[str]:
    """Split a module into top-level functions/classes (decorators attached) and the
    module-level code between them; pieces over CHUNK_CHARS are cut at blank lines."""
    segments: list[list[str]] = [[]]
    prev_decorator = False
    for line in source.splitlines():
        starts = bool(_TOP_LEVEL.match(line))
        if starts and not prev_decorator and segments[-1]:
            segments.append([])
        segments[-1].append(line)
        if line.strip():
            prev_decorator = line.startswith("@")
    docs: list[str] = []
    pending = ""  # short module-level code (imports, constants) joins the next segment
    for seg in segments:
        text = "\n".join(seg).strip("\n")
        if not text.strip():
            continue
        text = f"{pending}\n\n{text}" if pending else text
        if len(text) < 200:
            pending = text
            continue
        pending = ""
        docs += _chunks(text, CHUNK_CHARS)
    if pending:
        docs.append(pending)
    return docs


def code_texts(seed: int, target_chars: int) -> list[str]:
    """Stdlib source split into functions/classes, files drawn in a seeded order."""
    files = stdlib_files()
    random.Random(seed).shuffle(files)
    docs: list[str] = []
    total = 0
    for path in files:
        if total >= target_chars:
            break
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for doc in split_python(source):
            if total >= target_chars:
                break
            docs.append(doc)
            total += len(doc)
    return docs
