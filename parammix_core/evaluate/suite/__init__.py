"""The built-in benchmark suite: five small lm-eval tasks generated on this machine.

Each task is a real lm-eval task folder entry: a YAML (`output_type: multiple_choice`, a local
JSONL as its `json` dataset) and the JSONL itself, so `TaskManager(include_path=out_dir)` loads
them like any other task and a real run can swap in MMLU or GSM8K by name. One task per
capability group of the default utility:

    pm_arithmetic        math       a held-out math question -> its worked answer
    pm_code_completion   code       a line of Python cut mid-way -> its true rest of the line
    pm_stdlib_knowledge  knowledge  a stdlib function's name -> its docstring's first sentence
    pm_word_order        language   a held-out English sentence -> its words in the right order
    pm_sequences         reasoning  a held-out instruction (sequences, comparisons, sorting,
                                    counting) -> its response

pm_arithmetic and pm_sequences are cut from the held-out documents of the `math` and `sft`
domains ("Question: ...\\nAnswer:" -> " 37 + 45 = 82. The answer is 82.", against the same
answer with its result slipped): generated questions with a one-number answer (the fallback
when those domains are absent) were too far from what short training changes for real mixed
runs to separate on them (benchmarks/RESULTS.md, issue 16).

Why these: the model is a ~1M-parameter Llama trained for a few hundred steps, so the tasks
must be scoreable by log-likelihood (no generation), short (each evaluation of ~100 merged
models pays for every token), and sensitive to the training domains: the prompts reuse the
formats of the math ("Question:/Answer:") and instruction ("### Instruction:/### Response:")
corpora, and the code/prose tasks are cut from the same kinds of text as the code and web
domains. Distractors are chosen to be plausible on the surface (same length class, same
kind of token) so that a model wins by knowing the domain, not by preferring short answers.

Everything is derived from `seed`, `n_docs`, the held-out texts passed in and the Python
standard library on this machine (read with `ast`, never imported), with no downloads; the
same inputs give the same bytes.

`parsing` reads the raw material (docstrings, sentences, code lines), `documents` builds each
task's documents, and this module writes the YAML + JSONL files.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from parammix_core.data.sources import snapshot
from parammix_core.evaluate.suite.documents import (
    Doc,
    _arithmetic_docs,
    _code_docs,
    _knowledge_docs,
    _sequence_docs,
    _word_order_docs,
    heldout_answer_docs,
)
from parammix_core.evaluate.suite.parsing import (
    SuiteError,
    _code_lines,
    _prose_sentences,
    stdlib_material,
)

__all__ = [
    "BUILTIN_TASKS",
    "METRICS",
    "SuiteError",
    "score_choices",
    "task_config",
    "write_builtin_suite",
]

BUILTIN_TASKS: dict[str, str] = {
    "pm_arithmetic": "math",
    "pm_code_completion": "code",
    "pm_stdlib_knowledge": "knowledge",
    "pm_word_order": "language",
    "pm_sequences": "reasoning",
}
_FIELDS = ("query", "choices", "gold", "kind")

# Tasks cut from a domain's held-out documents when it has enough: (domain, where the answer
# starts). The cut is the domain's own prompt format, so the gold answer is what it trains.
_HELDOUT_CUTS: dict[str, tuple[str, str]] = {
    "pm_arithmetic": ("math", "\nAnswer:"),
    "pm_sequences": ("sft", "\n### Response:\n"),
}

# Writing stays in this module, not a submodule: each YAML names `{__name__}.score_choices`,
# so moving it would change the bytes written.

METRICS = ("acc", "acc_norm", "p_correct")


def score_choices(doc: dict, results: Sequence[tuple[float, bool]]) -> dict[str, float]:
    """lm-eval `process_results` of the built-in tasks: one document's scores.

    `acc` and `acc_norm` are lm-eval's (argmax of the summed log-likelihood, raw or per
    character). `p_correct` is the probability the model gives the right choice, normalised
    over the choices: a continuous score that still moves when the argmax does not, so merges
    that differ a little are told apart with far fewer documents than by accuracy.
    """
    lls = np.array([ll for ll, _ in results], dtype=np.float64)  # (n_choices,)
    lengths = np.array([len(c) for c in doc["choices"]], dtype=np.float64)
    gold = doc["gold"]
    log_p = lls - np.logaddexp.reduce(lls)
    return {
        "acc": float(np.argmax(lls) == gold),
        "acc_norm": float(np.argmax(lls / lengths) == gold),
        "p_correct": float(np.exp(log_p[gold])),
    }


def task_config(name: str, data_file: Path) -> dict:
    """A built-in task's lm-eval config, less its `process_results` (a function, added to the
    YAML by hand); also what a config is checked against before the suite is generated."""
    return {
        "task": name,
        "tag": ["parammix_builtin"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        # Column names, not Jinja templates: lm-eval then reads the fields directly (faster).
        "doc_to_text": "query",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": "",  # the choices carry their own leading space where needed
        "metric_list": [
            {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS
        ],
        "metadata": {"version": 1},
    }


def _task_yaml(name: str, data_file: Path) -> str:
    # safe_dump cannot write lm-eval's `!function` tag, so that one line is added by hand.
    return (
        f"# Generated by parammix_core.evaluate.suite (group: {BUILTIN_TASKS[name]}).\n"
        + yaml.safe_dump(task_config(name, data_file), sort_keys=False)
        + f"process_results: !function {__name__}.score_choices\n"
    )


def write_builtin_suite(
    out_dir: Path,
    n_docs: int,
    seed: int,
    heldout_texts: dict[str, list[str]] | None = None,
    *,
    stdlib_dir: Path | None = None,
    task_docs: Mapping[str, int] | None = None,
) -> Path:
    """Write `<task>.yaml` + `<task>.jsonl` for every task in `BUILTIN_TASKS` into `out_dir`.

    Args:
        out_dir: folder to write (created if missing); pass it to lm-eval as `include_path`.
        n_docs: documents per task.
        seed: every random choice derives from it (and the task name).
        heldout_texts: held-out documents per domain. `"web"` feeds pm_word_order and
            `"code"` feeds pm_code_completion; without them the stdlib's docstrings and
            source are used instead (text the model may have trained on). `"math"` and
            `"sft"` feed pm_arithmetic and pm_sequences when they hold `n_docs` documents
            in the built-in domains' format; else those tasks are generated.
        stdlib_dir: the standard library to read; default: the shipped snapshot (the same
            on every machine, `parammix_core.data.sources.snapshot`).
        task_docs: documents of the named tasks instead of `n_docs` (a noisy task gets more;
            a task cut from held-out documents cannot have more than they hold).

    Returns:
        out_dir, with identical bytes for identical arguments on the same stdlib.
    """
    counts = {name: int((task_docs or {}).get(name, n_docs)) for name in BUILTIN_TASKS}
    unknown = sorted(set(task_docs or {}) - set(BUILTIN_TASKS))
    if unknown:
        raise SuiteError(f"task_docs names no built-in task: {unknown}")
    for name, count in counts.items():
        if count < 2:
            raise SuiteError(
                f"{name}: documents must be at least 2 (a standard error needs two), got {count}"
            )
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    heldout_texts = heldout_texts or {}
    if stdlib_dir is None:
        material = stdlib_material(snapshot.stdlib_dir(), identity=snapshot.SHA256)
    else:
        material = stdlib_material(Path(stdlib_dir))
    stdlib, entries, docstrings = material.sources, material.entries, material.docstrings

    if heldout_texts.get("code"):
        code_source, code_texts = "heldout_texts['code']", heldout_texts["code"]
    else:
        code_source, code_texts = "the stdlib source", stdlib
    if heldout_texts.get("web"):
        prose_source, prose = "heldout_texts['web']", heldout_texts["web"]
    else:
        prose_source = "the stdlib docstrings"
        prose = docstrings
        warnings.warn(
            "pm_word_order: no held-out web texts given; using stdlib docstrings", stacklevel=2
        )
    generators: dict[str, Callable[[random.Random], list[Doc]]] = {
        "pm_arithmetic": lambda rng: _heldout_or(
            "pm_arithmetic", rng, counts["pm_arithmetic"], heldout_texts, _arithmetic_docs
        ),
        "pm_code_completion": lambda rng: _code_docs(
            rng, counts["pm_code_completion"], _code_lines(code_texts), code_source
        ),
        "pm_stdlib_knowledge": lambda rng: _knowledge_docs(
            rng, counts["pm_stdlib_knowledge"], entries
        ),
        "pm_word_order": lambda rng: _word_order_docs(
            rng, counts["pm_word_order"], _prose_sentences(prose), prose_source
        ),
        "pm_sequences": lambda rng: _heldout_or(
            "pm_sequences", rng, counts["pm_sequences"], heldout_texts, _sequence_docs
        ),
    }
    for name, generate in generators.items():
        docs = generate(random.Random(f"{seed}:{name}"))
        data_file = out_dir / f"{name}.jsonl"
        data_file.write_text(
            "".join(
                json.dumps({k: d[k] for k in _FIELDS}, ensure_ascii=False) + "\n" for d in docs
            ),
            encoding="utf-8",
        )
        (out_dir / f"{name}.yaml").write_text(_task_yaml(name, data_file), encoding="utf-8")
    return out_dir


def _heldout_or(
    name: str,
    rng: random.Random,
    n_docs: int,
    heldout_texts: dict[str, list[str]],
    generate: Callable[[random.Random, int], list[Doc]],
) -> list[Doc]:
    """The task cut from its domain's held-out documents, or generated when they are too few."""
    domain, marker = _HELDOUT_CUTS[name]
    texts = heldout_texts.get(domain, [])
    docs = heldout_answer_docs(rng, n_docs, texts, marker)
    if len(docs) == n_docs:
        return docs
    if texts:
        warnings.warn(
            f"{name}: heldout_texts[{domain!r}] gives {len(docs)} documents in the "
            f"{marker!r} format, need {n_docs}; using generated questions",
            stacklevel=2,
        )
    return generate(rng, n_docs)
