"""The benchmarks call the library as it is now: no name they read from it has moved away.

A benchmark runs for an hour before reaching a stage call, so a name that moved (as
`train_mixed` did from `stages.validate` to `stages.mixed`) fails late and far from the commit
that moved it; this reads every name a benchmark imports from, or reads on, a `parammix_core`
module instead.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
# names a benchmark reads only from checkouts older than this one (it runs on both)
FROM_OLDER_CHECKOUTS = {("rechoose.py", "mfm.fit_gp")}


def _library_imports(tree: ast.AST) -> tuple[dict[str, str], list[tuple[int, str, str]]]:
    """Local name -> the parammix_core module it is bound to, and (line, module, name) of every
    other name taken `from parammix_core... import name` (a function, class or constant)."""
    aliases, names = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("parammix_core"):
            for name in node.names:
                full = f"{node.module}.{name.name}"
                try:
                    importlib.import_module(full)
                except ImportError:
                    names.append((node.lineno, node.module, name.name))
                    continue
                aliases[name.asname or name.name] = full
        elif isinstance(node, ast.Import):
            for name in node.names:
                if name.name.startswith("parammix_core"):
                    aliases[name.asname or name.name] = name.name
    return aliases, names


def missing_names(path: Path) -> list[str]:
    """Names the file imports from, or reads as `alias.name` on, a parammix_core module that
    has no such name."""
    tree = ast.parse(path.read_text())
    aliases, imported = _library_imports(tree)
    missing = [
        f"{path.name}:{line}: {module}.{name}"
        for line, module, name in imported
        if not hasattr(importlib.import_module(module), name)
    ]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        module = aliases.get(node.value.id)
        read = f"{node.value.id}.{node.attr}"
        if (path.name, read) in FROM_OLDER_CHECKOUTS or not module:
            continue
        if not hasattr(importlib.import_module(module), node.attr):
            missing.append(f"{path.name}:{node.lineno}: {read}")
    return missing


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_library_name_a_benchmark_reads_exists(path):
    assert missing_names(path) == []


def test_a_moved_name_is_found(tmp_path):
    stale = tmp_path / "stale.py"
    stale.write_text(
        "from parammix_core.stages import validate\n"
        "from parammix_core.stages.mixed import mixed_ref, train_expert\n"
        "validate.validation_mixtures\n"
        "validate.train_mixed\n"
    )
    assert missing_names(stale) == [
        "stale.py:2: parammix_core.stages.mixed.train_expert",
        "stale.py:4: validate.train_mixed",
    ]
