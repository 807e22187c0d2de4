"""Preflight of what the first stages will read, before any server starts or anything trains.

`parammix validate-config`, `parammix run` and the first task of every flow run (one started
from a deployment too) call `preflight`: the evaluation tasks resolved, then the inputs. So a
corpus path that matches nothing, a checkpoint folder without its config, weights or
tokenizer, a tokenizer folder that is not there, or a table of `search.import_runs` that is
missing or does not fit the experiment fails in seconds with the field named, instead of after
the Prefect server has started and the data stage has begun. Only listings and file names are
read: nothing is loaded, downloaded or written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import fsspec

from parammix_core.config import ConfigError, Experiment
from parammix_core.data import DataError
from parammix_core.failure import describe
from parammix_core.runs import RunsError
from parammix_core.stages.data import domain_files
from parammix_core.stages.imports import imported_rows, imports_ref

# Any of these beside the weights is a tokenizer transformers can load.
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"})


class PreflightError(ValueError):
    """An input the run would fail on; the message names the field and the path."""


def preflight(exp: Experiment, source: str) -> None:
    """The evaluation tasks (names, metrics, data files, code execution), then the inputs;
    a config bad on both has both named in one error, not the second after fixing the first.
    Cheap when repeated in one process (lm-eval's task index is read once)."""
    from parammix_core.evaluate.resolve import check_evaluation  # loads lm-eval

    try:
        check_evaluation(exp, source)
    except ConfigError as tasks:
        try:
            check_inputs(exp)
        except Exception as inputs:
            raise ConfigError(f"{tasks}\n{describe(inputs, 'preflight')}") from None
        raise
    check_inputs(exp)


def check_inputs(exp: Experiment) -> None:
    """Refuse, by field, every input the data and base stages could not read: one at a time
    would make a user fix and rerun once per missing corpus."""
    checks: list[tuple[str, Callable[[], object]]] = [
        (f"domain {d.name!r} ({', '.join(d.paths)})", functools.partial(domain_files, exp, d.name))
        for d in exp.data.domains
        if d.paths
    ]
    if exp.data.tokenizer is not None:
        tokenizer = exp.data.tokenizer
        check = functools.partial(_check_tokenizer, "data.tokenizer", tokenizer, exp)
        checks.append(("data.tokenizer", check))
    if exp.model.checkpoint is not None:
        checks.append(("model.checkpoint", functools.partial(_check_checkpoint, exp)))
    if exp.search.import_runs is not None:  # else read after data, base and experts trained
        checks.append(("search.import_runs", functools.partial(_check_imports, exp)))
    refused: list[ValueError] = []
    for field, check in checks:
        try:
            check()
        except (DataError, PreflightError, RunsError) as err:  # they name the field
            refused.append(err)
        except Exception as err:  # e.g. botocore's NoCredentialsError: named, and the rest go on
            refused.append(PreflightError(f"{field}: {type(err).__name__}: {err}"))
    if len(refused) == 1:
        raise refused[0]
    if refused:
        listed = "".join(f"\n  {err}" for err in refused)
        raise PreflightError(f"{len(refused)} inputs cannot be read:{listed}")


def _check_imports(exp: Experiment) -> None:
    """search.import_runs: both files there, and the tables the search would join."""
    runs = exp.search.import_runs
    assert runs is not None
    imports_ref(exp)  # names the field of a missing file
    imported_rows(exp, runs.ratios, runs.metrics)


def _names(exp: Experiment, url: str, field: str) -> tuple[str, set[str]]:
    fs, root = fsspec.core.url_to_fs(url, **exp.store.storage_options)
    if not fs.isdir(root):
        raise PreflightError(f"{field}: no such folder {url!r}")
    return root, {path.rstrip("/").rsplit("/", 1)[-1] for path in fs.ls(root, detail=False)}


def _check_tokenizer(field: str, url: str, exp: Experiment) -> None:
    root, names = _names(exp, url, field)
    if not names & TOKENIZER_FILES:
        raise PreflightError(
            f"{field}: {root} holds no tokenizer (none of {sorted(TOKENIZER_FILES)})"
        )


def _check_checkpoint(exp: Experiment) -> None:
    root, names = _names(exp, exp.model.checkpoint, "model.checkpoint")
    if "config.json" not in names:
        raise PreflightError(
            f"model.checkpoint: {root} has no config.json, so it is not a Hugging Face checkpoint"
        )
    if not any(name.endswith(".safetensors") for name in names):
        pickled = sorted(n for n in names if n.endswith(".bin"))
        raise PreflightError(
            f"model.checkpoint: {root} has only pickled weights {pickled}: convert them to "
            "safetensors (pickles are never loaded)"
            if pickled
            else f"model.checkpoint: {root} has no *.safetensors weights"
        )
    if exp.data.tokenizer is None and not names & TOKENIZER_FILES:
        raise PreflightError(
            f"model.checkpoint: {root} holds no tokenizer (none of {sorted(TOKENIZER_FILES)}); "
            "save it beside the weights or name one in data.tokenizer"
        )
