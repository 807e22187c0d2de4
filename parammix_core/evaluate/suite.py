"""The built-in benchmark suite: five small lm-eval tasks generated on this machine.

Each task is a real lm-eval task folder entry: a YAML (`output_type: multiple_choice`, a local
JSONL as its `json` dataset) and the JSONL itself, so `TaskManager(include_path=out_dir)` loads
them like any other task and a real run can swap in MMLU or GSM8K by name. One task per
capability group of the default utility:

    pm_arithmetic        math       "Question: What is 37 + 45?\\nAnswer: 37 + 45 =" -> " 82"
    pm_code_completion   code       a line of Python cut mid-way -> its true rest of the line
    pm_stdlib_knowledge  knowledge  a stdlib docstring's first sentence -> the function's name
    pm_word_order        language   a held-out English sentence -> its words in the right order
    pm_sequences         reasoning  continue a number sequence; transitive comparisons

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
"""

from __future__ import annotations

import ast
import json
import random
import re
import sysconfig
import textwrap
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

BUILTIN_TASKS: dict[str, str] = {
    "pm_arithmetic": "math",
    "pm_code_completion": "code",
    "pm_stdlib_knowledge": "knowledge",
    "pm_word_order": "language",
    "pm_sequences": "reasoning",
}

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
# Wrong choices per document (word order has one). Every choice re-reads the whole context, so
# the cost of an evaluation grows with it; 2 keeps chance at 1/3 for a quarter fewer tokens than 3.
_DISTRACTORS = 2
_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[,;:]?$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)

Doc = dict  # {"query": str, "choices": list[str], "gold": int, "kind": str}
_FIELDS = ("query", "choices", "gold", "kind")


class SuiteError(ValueError):
    """The sources cannot provide the requested documents; the message names task and source."""


@dataclass(frozen=True)
class _Docstring:
    kind: str  # "def" or "class"
    name: str
    sentence: str


# --- sources --------------------------------------------------------------------------------


def _stdlib_sources(root: Path) -> list[str]:
    """Texts of the stdlib's library modules, in sorted path order."""
    files = sorted(
        p for p in root.rglob("*.py") if not _SKIP_DIRS & set(p.relative_to(root).parts[:-1])
    )
    if not files:
        raise SuiteError(f"{root}: no Python source files found for the built-in suite")
    return [p.read_text("utf-8", errors="replace") for p in files]


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
        for node in ast.walk(tree):
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


# --- task generators ------------------------------------------------------------------------


def _shuffled(rng: random.Random, gold: str, distractors: Sequence[str], kind: str) -> Doc:
    choices = [gold, *distractors]
    rng.shuffle(choices)
    return {"choices": choices, "gold": choices.index(gold), "kind": kind}


def _round_robin(rng: random.Random, pools: Sequence[list], n: int, task: str) -> list:
    """n items drawn without replacement, cycling over the pools (each shuffled) in turn."""
    pools = [rng.sample(pool, len(pool)) for pool in pools]
    if sum(map(len, pools)) < n:
        raise SuiteError(f"{task}: only {sum(map(len, pools))} distinct documents exist, need {n}")
    out: list = []
    while len(out) < n:
        out.extend(pool.pop() for pool in pools if pool)
    return out[:n]


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def _arithmetic_docs(rng: random.Random, n: int) -> list[Doc]:
    """Sums, differences and products in the math corpus' worked-answer format."""
    two_digit = range(10, 100)
    problems = _round_robin(
        rng,
        [
            [(a, "+", b) for a in two_digit for b in two_digit],
            [(a, "-", b) for a in two_digit for b in two_digit if a > b],
            [(a, "*", b) for a in range(2, 20) for b in range(2, 10)],
        ],
        n,
        "pm_arithmetic",
    )
    docs = []
    for a, op, b in problems:
        answer = _OPS[op](a, b)
        # Plausible wrong answers: slips of one or ten, the wrong operation, swapped digits.
        wrong = {answer + 1, answer - 1, answer + 10, answer - 10, int(str(answer)[::-1])}
        wrong |= {f(a, b) for f in _OPS.values()}
        pool = sorted(w for w in wrong if w >= 0 and w != answer)
        doc = _shuffled(
            rng, f" {answer}", [f" {w}" for w in rng.sample(pool, _DISTRACTORS)], kind=op
        )
        doc["query"] = f"Question: What is {a} {op} {b}?\nAnswer: {a} {op} {b} ="
        docs.append(doc)
    return docs


def _split_points(line: str) -> list[int]:
    """Cut positions after an opening/operator/space, leaving a 5-24 character rest."""
    start = len(line) - len(line.lstrip()) + 6
    return [
        i
        for i in range(start, len(line) - 4)
        if line[i - 1] in " (.[,=:" and line[i] != " " and len(line) - i <= 24
    ]


def _code_docs(rng: random.Random, n: int, lines: list[tuple[str, str]], source: str) -> list[Doc]:
    """Pick the true rest of a code line against rests cut from other lines of similar length.

    Context: the previous line (when it is code too) and the line up to a cut after a space,
    bracket, dot, comma, `=` or `:`. Distractors: rests (within 2 characters of the true
    rest's length) of other lines, so length and "looks like code" give nothing away.
    """
    candidates = rng.sample(lines, len(lines))
    cuts = []  # parsing is the slow part: check lines only until there are enough
    for prev, line in candidates:
        points = _split_points(line)
        if points and _is_statement(line):
            prev = prev if len(prev) <= 60 and prev.strip() and _is_statement(prev) else ""
            cuts.append((prev, line, rng.choice(points)))
            if len(cuts) == 8 * n:
                break
    by_len: dict[int, set[str]] = defaultdict(set)
    for _, line, i in cuts:
        by_len[len(line) - i].add(line[i:])
    docs = []
    for prev, line, i in cuts:
        rest = line[i:]
        pool = sorted(set().union(*(by_len[len(rest) + d] for d in range(-2, 3))) - {rest})
        if len(pool) < _DISTRACTORS:
            continue
        doc = _shuffled(rng, rest, rng.sample(pool, _DISTRACTORS), kind="line")
        doc["query"] = textwrap.dedent((prev + "\n" if prev else "") + line[:i])
        docs.append(doc)
        if len(docs) == n:
            return docs
    raise SuiteError(f"pm_code_completion: {source} gives only {len(docs)} documents, need {n}")


def _knowledge_docs(rng: random.Random, n: int, entries: list[_Docstring]) -> list[Doc]:
    """Name the stdlib function/class a docstring sentence describes (same-kind distractors)."""
    if len(entries) < n:
        raise SuiteError(f"pm_stdlib_knowledge: {len(entries)} stdlib docstrings, need {n}")
    names: dict[str, list[str]] = {
        kind: sorted({e.name for e in entries if e.kind == kind}) for kind in ("def", "class")
    }
    order = list(entries)
    rng.shuffle(order)
    docs = []
    for e in order:
        # Names of about the same length, so the answer is not given away by being short.
        pool = [m for m in names[e.kind] if m != e.name and abs(len(m) - len(e.name)) <= 2]
        if len(pool) < _DISTRACTORS:
            continue
        doc = _shuffled(
            rng, f" {e.name}", [f" {m}" for m in rng.sample(pool, _DISTRACTORS)], kind=e.kind
        )
        doc["query"] = f"# {e.sentence}\n{e.kind}"
        docs.append(doc)
        if len(docs) == n:
            return docs
    raise SuiteError(f"pm_stdlib_knowledge: only {len(docs)} usable docstrings, need {n}")


def _word_order_pairs(rng: random.Random, sentence: str) -> list[Doc]:
    """All minimal pairs of one sentence: true next words vs two adjacent words swapped."""
    words = sentence.split()
    pairs = []
    for k in range(3, min(8, len(words) - 4)):
        m = min(5, len(words) - k)
        cont = words[k : k + m]
        for j in range(m - 1):
            if cont[j].lower().strip(",;:.") == cont[j + 1].lower().strip(",;:."):
                continue
            swapped = [*cont[:j], cont[j + 1], cont[j], *cont[j + 2 :]]
            doc = _shuffled(rng, " " + " ".join(cont), [" " + " ".join(swapped)], kind="swap")
            doc["query"] = " ".join(words[:k])
            pairs.append(doc)
    return pairs


def _word_order_docs(rng: random.Random, n: int, sentences: list[str], source: str) -> list[Doc]:
    """At most 3 pairs per sentence (spread over different cut points), sentences in turn."""
    order = list(sentences)
    rng.shuffle(order)
    per_sentence = [
        rng.sample(p, min(3, len(p))) for s in order if (p := _word_order_pairs(rng, s))
    ]
    docs = [pairs[r] for r in range(3) for pairs in per_sentence if r < len(pairs)]
    if len(docs) < n:
        raise SuiteError(f"pm_word_order: {source} gives {len(docs)} minimal pairs, need {n}")
    return docs[:n]


_NAMES = ("Anna", "Ben", "Carl", "Dora", "Emil", "Fay", "Gus", "Hana", "Ivan", "Jill", "Kurt")
_NAMES += ("Lena", "Max", "Nora", "Omar", "Pia", "Rex", "Sara", "Tom", "Uma")
_COMPARISONS = (  # comparative, superlative of the first, superlative of the last
    ("taller", "tallest", "shortest"),
    ("older", "oldest", "youngest"),
    ("faster", "fastest", "slowest"),
    ("heavier", "heaviest", "lightest"),
)


def _sequence_question(rng: random.Random, terms: list[int]) -> tuple[str, str, list[str]]:
    """Show four terms, ask for the fifth; distractors are near misses of the rule."""
    *shown, answer = terms
    wrong = {answer - 2, answer - 1, answer + 1, answer + 2, answer + 10}
    wrong |= {answer + (answer - shown[-1]), shown[-1] + shown[-2]}  # step twice; wrong rule
    pool = sorted(w for w in wrong if w > 0 and w != answer)
    question = "Continue the sequence: " + ", ".join(map(str, shown))
    return question, str(answer), [str(w) for w in rng.sample(pool, _DISTRACTORS)]


def _sequence_docs(rng: random.Random, n: int) -> list[Doc]:
    """Arithmetic, geometric and Fibonacci-like sequences; three-person transitive comparisons."""
    steps = [*range(-9, -1), *range(2, 13)]
    specs = _round_robin(
        rng,
        [
            [("arithmetic", s, d) for s in range(1, 41) for d in steps if s + 4 * d > 0],
            [("geometric", s, r) for s in range(1, 13) for r in (2, 3)],
            [("fibonacci", a, b) for a in range(1, 13) for b in range(1, 13)],
            [
                ("comparison", names, c, most)
                for names in _name_triples()
                for c in range(len(_COMPARISONS))
                for most in (True, False)
            ],
        ],
        n,
        "pm_sequences",
    )
    docs = []
    for spec in specs:
        kind = spec[0]
        if kind == "comparison":
            (a, b, c), comparison, ask_most = spec[1:]
            comparative, most, least = _COMPARISONS[comparison]
            question = f"{a} is {comparative} than {b}. {b} is {comparative} than {c}. "
            question += f"Who is the {most if ask_most else least}?"
            answer, distractors = (a, [b, c]) if ask_most else (c, [a, b])
        else:
            x, y = spec[1:]
            if kind == "arithmetic":
                terms = [x + i * y for i in range(5)]
            elif kind == "geometric":
                terms = [x * y**i for i in range(5)]
            else:
                terms = [x, y]
                while len(terms) < 5:
                    terms.append(terms[-1] + terms[-2])
            question, answer, distractors = _sequence_question(rng, terms)
        doc = _shuffled(rng, answer, distractors, kind=kind)
        doc["query"] = f"### Instruction:\n{question}\n### Response:\n"
        docs.append(doc)
    return docs


def _name_triples() -> list[tuple[str, str, str]]:
    return [(a, b, c) for a in _NAMES for b in _NAMES for c in _NAMES if len({a, b, c}) == 3]


# --- writing --------------------------------------------------------------------------------


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


def _task_yaml(name: str, data_file: Path) -> str:
    config = {
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
    # safe_dump cannot write lm-eval's `!function` tag, so that one line is added by hand.
    return (
        f"# Generated by parammix_core.evaluate.suite (group: {BUILTIN_TASKS[name]}).\n"
        + yaml.safe_dump(config, sort_keys=False)
        + f"process_results: !function {__name__}.score_choices\n"
    )


def write_builtin_suite(
    out_dir: Path,
    n_docs: int,
    seed: int,
    heldout_texts: dict[str, list[str]] | None = None,
    *,
    stdlib_dir: Path | None = None,
) -> Path:
    """Write `<task>.yaml` + `<task>.jsonl` for every task in `BUILTIN_TASKS` into `out_dir`.

    Args:
        out_dir: folder to write (created if missing); pass it to lm-eval as `include_path`.
        n_docs: documents per task.
        seed: every random choice derives from it (and the task name).
        heldout_texts: held-out documents per domain. `"web"` feeds pm_word_order and
            `"code"` feeds pm_code_completion; without them the stdlib's docstrings and
            source are used instead (text the model may have trained on).
        stdlib_dir: the standard library to read; default: this interpreter's.

    Returns:
        out_dir, with identical bytes for identical arguments on the same stdlib.
    """
    if n_docs < 2:
        raise SuiteError(f"n_docs must be at least 2 (a standard error needs two), got {n_docs}")
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    heldout_texts = heldout_texts or {}
    stdlib = _stdlib_sources(Path(stdlib_dir or sysconfig.get_paths()["stdlib"]))
    entries, docstrings = _parse_docstrings(stdlib)

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
        "pm_arithmetic": lambda rng: _arithmetic_docs(rng, n_docs),
        "pm_code_completion": lambda rng: _code_docs(
            rng, n_docs, _code_lines(code_texts), code_source
        ),
        "pm_stdlib_knowledge": lambda rng: _knowledge_docs(rng, n_docs, entries),
        "pm_word_order": lambda rng: _word_order_docs(
            rng, n_docs, _prose_sentences(prose), prose_source
        ),
        "pm_sequences": lambda rng: _sequence_docs(rng, n_docs),
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
