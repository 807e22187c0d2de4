"""Code versions: an artifact's address covers the code that computed it.

A stage's version hashes the source of every `parammix_core` module the stage's modules
import, directly or through others (imports inside functions included), plus the versions
of the numerical libraries those modules import. Sources are compared as syntax trees without
docstrings, so comments, formatting and documentation leave every key unchanged, while any
change that can alter an output (a constant, an expression, a new import) gives the stages
that depend on it new keys: they recompute instead of silently reusing stale artifacts. No
version number to remember to bump; a test keeps it that way. The config models' field
declarations are left out (`without_fields`): a field reaches a stage as a value in its spec, so
adding one to a section re-keys only the stages whose specs hold that section.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import threading
from collections.abc import Callable, Mapping

PACKAGE = "parammix_core"
SCHEMA = "parammix_core.config"  # pydantic models: their values are in the specs, not their code

# The modules computing each stage's artifacts (a choice: the surrogates' or the GP's).
STAGE_MODULES = {
    "data": ("parammix_core.stages.data",),
    "base": ("parammix_core.stages.base",),
    "expert": ("parammix_core.stages.experts",),
    "probe": ("parammix_core.stages.probe",),
    "search_inputs": ("parammix_core.stages.search_inputs",),
    "imports": ("parammix_core.stages.imports",),
    "proposals": ("parammix_core.stages.proposals",),
    "runevals": ("parammix_core.stages.multifidelity",),
    "evals": ("parammix_core.stages.evaluate",),
    "surrogates": ("parammix_core.stages.surrogates",),
    "choice": ("parammix_core.stages.search", "parammix_core.stages.fidelity_choice"),
    "mixed": ("parammix_core.stages.mixed",),
    "validation": ("parammix_core.stages.validate",),
    "final": ("parammix_core.stages.final",),
    "report": ("parammix_core.stages.report",),
}

# Third-party libraries whose versions change numbers (import name -> distribution).
NUMERIC_LIBRARIES = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "lm_eval": "lm_eval",
    "lightgbm": "lightgbm",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "numpy": "numpy",
    "botorch": "botorch",
    "deepspeed": "deepspeed",
}


def code_version(stage: str) -> str:
    """The version of the code computing `stage`'s artifacts (a short hex digest)."""
    with _HASHING:
        return _installed_version(STAGE_MODULES[stage])


# Prefect computes cache keys in its worker threads; CPython 3.11's `ast.parse` raised
# "AST constructor recursion depth mismatch" when two threads parsed at once.
_HASHING = threading.Lock()


@functools.cache
def _installed_version(modules: tuple[str, ...]) -> str:
    return _digest(modules, _installed_source)  # once per process: ~0.7 s for every stage


@functools.cache
def _installed_source(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # `from a.b import name`: a.b.name is no module
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as f:
        return f.read()


def _digest(roots: tuple[str, ...], source_of: Callable[[str], str | None]) -> str:
    modules, libraries = closure(roots, source_of)
    h = hashlib.sha256()
    for name in sorted(modules):
        source = source_of(name) or ""
        hashed = without_fields(source) if _is_schema(name) else normalised(source)
        h.update(f"{name}\n{hashed}\n".encode())
    for lib in sorted(libraries):
        h.update(f"{lib}=={_library_version(lib)}\n".encode())
    return h.hexdigest()[:16]


def versions_with(sources: Mapping[str, str]) -> dict[str, str]:
    """Every stage's version as if the modules in `sources` had that source (for tests)."""

    def source_of(name: str) -> str | None:
        return sources[name] if name in sources else _installed_source(name)

    return {stage: _digest(modules, source_of) for stage, modules in STAGE_MODULES.items()}


def closure(
    roots: tuple[str, ...], source_of: Callable[[str], str | None]
) -> tuple[set[str], set[str]]:
    """The `parammix_core` modules the `roots` depend on (themselves included) and the
    numerical libraries they import."""
    seen: set[str] = set()
    libraries: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        source = source_of(name)
        if source is None:
            continue
        seen.add(name)
        for target in _imports(source):
            top = target.split(".")[0]
            if top == PACKAGE:
                todo.append(target)
            elif top in NUMERIC_LIBRARIES:
                libraries.add(top)
    return seen, libraries


@functools.lru_cache(maxsize=1024)
def _imports(source: str) -> list[str]:
    """Modules an import statement anywhere in `source` loads (a `from X import Y` may load
    the submodule X.Y)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{alias.name}" for alias in node.names]
    return out


@functools.lru_cache(maxsize=1024)
def normalised(source: str) -> str:
    """The syntax tree without docstrings: what the code does, not how it is written."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _is_schema(module: str) -> bool:
    return module == SCHEMA or module.startswith(SCHEMA + ".")


@functools.lru_cache(maxsize=1024)
def without_fields(source: str) -> str:
    """`normalised`, less the field declarations of the config models (a class body's
    annotated assignments). Every stage imports `Experiment`, so every config module is in
    every stage's closure; a field's default, type or description reaches a stage only as the
    dumped value in its spec, so a field added to one section (evaluation, say) re-keys the
    stages whose specs hold that section, not the data and base. Methods, validators and
    module-level constants stay hashed: they compute."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            node.body = [n for n in node.body if not isinstance(n, ast.AnnAssign)] or [ast.Pass()]
    return normalised(ast.unparse(tree))


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(NUMERIC_LIBRARIES[name])
    except importlib.metadata.PackageNotFoundError:
        return "absent"
