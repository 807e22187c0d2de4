"""Generators of the five tasks' documents: query, choices, gold index and kind."""

from __future__ import annotations

import random
import re
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence

from parammix_core.evaluate.suite.parsing import SuiteError, _Docstring, _is_statement

# Wrong choices per document (word order has one). Every choice re-reads the whole context, so
# the cost of an evaluation grows with it; 2 keeps chance at 1/3 for a quarter fewer tokens than 3.
_DISTRACTORS = 2

Doc = dict  # {"query": str, "choices": list[str], "gold": int, "kind": str}


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


# A whole number, not part of a longer number or a decimal: `{}` is the digits.
_WHOLE_NUMBER = r"(?<![\d.]){}(?!\d|\.\d)"


def _number_slips(answer: str) -> list[str]:
    """`answer` with its last number changed wherever it appears (off by one or ten, digits
    reversed): the same worked answer reaching a wrong result."""
    numbers = re.findall(_WHOLE_NUMBER.format(r"\d+"), answer)
    if not numbers:
        return []
    last = numbers[-1]
    value = int(last)
    wrong = {value + 1, value - 1, value + 10, value - 10, int(last[::-1])} - {value}
    same = re.compile(_WHOLE_NUMBER.format(last))
    return sorted({same.sub(str(w), answer) for w in wrong if w >= 0})


def heldout_answer_docs(rng: random.Random, n: int, texts: Sequence[str], marker: str) -> list[Doc]:
    """Held-out documents of a domain cut after `marker`: the document's own answer against one
    wrong answer, at most `n` (fewer when fewer documents hold `marker`).

    The wrong answer is the answer with a slipped number (`_number_slips`) or, when it has no
    number, another document's answer of about the same length. One wrong choice only: the
    default metric reads the gold answer alone, and every choice re-reads the whole context.
    """
    cut = (t.partition(marker) for t in texts)
    pairs = [(q + m, a) for q, m, a in cut if m and a.strip()]
    by_len: dict[int, set[str]] = defaultdict(set)
    for _, answer in pairs:
        by_len[len(answer) // 10].add(answer)
    rng.shuffle(pairs)
    docs = []
    for query, answer in pairs:
        slips = _number_slips(answer)
        pool = slips or sorted(by_len[len(answer) // 10] - {answer})
        if not pool:
            continue
        doc = _shuffled(rng, answer, rng.sample(pool, 1), kind="slip" if slips else "other")
        doc["query"] = query
        docs.append(doc)
        if len(docs) == n:
            break
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


def _knowledge_docs(rng: random.Random, n: int, entries: Sequence[_Docstring]) -> list[Doc]:
    """What a named stdlib function/class does: its docstring's first sentence, against other
    entries' sentences of about the same length.

    The gold is a whole sentence, not the name: the name's few rare tokens were scored so
    noisily that two real runs of the same mixtures did not rank them alike (benchmarks/
    RESULTS.md, "The knowledge task"); a sentence's bits per byte average over its ~15 tokens.
    """
    if len(entries) < n:
        raise SuiteError(f"pm_stdlib_knowledge: {len(entries)} stdlib docstrings, need {n}")
    by_len: dict[int, set[str]] = defaultdict(set)
    for e in entries:
        by_len[len(e.sentence)].add(e.sentence)
    order = list(entries)
    rng.shuffle(order)
    docs = []
    for e in order:
        near = range(len(e.sentence) - 3, len(e.sentence) + 4)  # length gives nothing away
        pool = sorted(set().union(*(by_len[k] for k in near)) - {e.sentence})
        if len(pool) < _DISTRACTORS:
            continue
        doc = _shuffled(rng, e.sentence, rng.sample(pool, _DISTRACTORS), kind=e.kind)
        doc["query"] = f'{e.kind} {e.name}:\n    """'
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
