"""The standard library the built-in domains and tasks read: a snapshot shipped with Param-Mix.

The code and web domains and the code, knowledge and language tasks are made from Python's
standard library. Read from the running interpreter, they changed with the Python version, so
the embedded default gave other corpora, and other results, on another machine. They read
this snapshot instead: the files they use from CPython 3.11.7's `Lib` (Python Software
Foundation License; its LICENSE.txt is inside), in a deterministic tar.xz. It is checked
against its SHA-256 and unpacked once under `$PARAMMIX_CACHE/stdlib/`; whatever Python runs
Param-Mix, the default's corpora are the same bytes.

`write_snapshot` made it (`python -m parammix_core.data.sources.snapshot OUT` on 3.11.7).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from parammix_core.data.errors import DataError
from parammix_core.paths import cache_root

SNAPSHOT = Path(__file__).with_name("stdlib-3.11.7.tar.xz")
SHA256 = "7333c225528cc3a4e0acf3700ce4632425c0d3320bb24abf5cfd205a209139a1"


def stdlib_dir() -> Path:
    """The unpacked snapshot (unpacked on first use, in the cache)."""
    target = cache_root() / "stdlib" / SHA256[:16]
    if (target / ".complete").exists():
        return target
    raw = SNAPSHOT.read_bytes()
    if hashlib.sha256(raw).hexdigest() != SHA256:
        raise DataError(f"{SNAPSHOT}: damaged (SHA-256 differs from the one shipped)")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:xz") as tar:
        tar.extractall(scratch, filter="data")
    (scratch / ".complete").touch()
    try:
        os.replace(scratch, target)  # atomic; another process may have won the race
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def write_snapshot(root: Path, files: Iterable[Path], out: Path) -> str:
    """A deterministic tar.xz of `files` (under `root`): sorted, no times or owners. Returns
    its SHA-256."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz", preset=9) as tar:
        for path in sorted(set(files)):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    out.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def snapshot_files(root: Path) -> list[Path]:
    """What the built-in domains and tasks read under a stdlib `root`."""
    from parammix_core.data.sources.prose import NOT_NOTES, local_text_files
    from parammix_core.data.sources.python_code import library_files
    from parammix_core.evaluate.suite.parsing import suite_files

    topics = root / "pydoc_data" / "topics.py"
    notes = local_text_files(root, NOT_NOTES)
    return sorted({*library_files(root), *suite_files(root), *notes, topics})


if __name__ == "__main__":
    live = Path(sysconfig.get_paths()["stdlib"])
    print(write_snapshot(live, snapshot_files(live), Path(sys.argv[1])))
