"""The benchmarks call the library as it is now: no name they read from it has moved away.

A benchmark runs for an hour before reaching a stage call, so a name that moved (as
`train_mixed` did from `stages.validate` to `stages.mixed`) fails late and far from the commit
that moved it; this reads every `module.name` a benchmark takes from `parammix_core` instead.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
# names a benchmark reads only from checkouts older than this one (it runs on both)
FROM_OLDER_CHECKOUTS = {("rechoose.py", "mfm.fit_gp")}


def _library_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> the parammix_core module it is bound to."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("parammix_core"):
            for name in node.names:
                full = f"{node.module}.{name.name}"
                try:
                    importlib.import_module(full)
                except ImportError:  # a function or class, not a module
                    continue
                aliases[name.asname or name.name] = full
        elif isinstance(node, ast.Import):
            for name in node.names:
                if name.name.startswith("parammix_core"):
                    aliases[name.asname or name.name] = name.name
    return aliases


def missing_names(path: Path) -> list[str]:
    """`alias.name` reads in the file whose module has no such name."""
    tree = ast.parse(path.read_text())
    aliases = _library_aliases(tree)
    missing = []
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
        "validate.validation_mixtures\n"
        "validate.train_mixed\n"
    )
    assert missing_names(stale) == ["stale.py:3: validate.train_mixed"]
