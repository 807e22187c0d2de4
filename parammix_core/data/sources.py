"""Built-in domains, made on this machine with no downloads.

The embedded default must run anywhere, offline, so its four corpora come from what every
Debian/Python machine has:

- math: generated arithmetic and algebra questions with worked answers, in the
  "Question: ...\\nAnswer: ... The answer is N." form the built-in math benchmark asks in;
- code: the Python standard library's own source, one document per top-level function or
  class (or per chunk of module-level code);
- sft: generated instruction/response pairs ("### Instruction:\\n...\\n### Response:\\n...");
- web: English prose found locally: stdlib docstrings (read with `ast`, never imported),
  Python's reference topics (`pydoc_data`), and text files under /usr/share/doc and
  /usr/share/common-licenses.

Generated domains produce as much as asked. Local ones return what exists, up to the target,
so a small machine gives a small web domain; only an empty one is an error. Everything is a
function of (seed, target_chars) and of the files on the machine: files are listed in sorted
order and sampled with the seed, never in directory-listing order.
"""

from __future__ import annotations

import ast
import codecs
import gzip
import itertools
import os
import random
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

from parammix_core.data.errors import DataError

# Longest document a splitter emits; below DataConfig.max_chars so nothing is truncated.
CHUNK_CHARS = 3000

Template = Callable[[random.Random], str]


def builtin_texts(name: str, seed: int, target_chars: int) -> list[str]:
    """Documents of one built-in domain, about `target_chars` characters in total.

    Generated domains (math, sft) always reach the target; local ones (code, web) stop at
    what the machine has. Raises DataError for an unknown name or a domain that ends empty.
    """
    makers: dict[str, Callable[[int, int], list[str]]] = {
        "math": math_texts,
        "code": code_texts,
        "sft": sft_texts,
        "web": web_texts,
    }
    if name not in makers:
        raise DataError(f"unknown built-in domain {name!r}; available: {sorted(makers)}")
    if target_chars <= 0:
        raise DataError(f"built-in domain {name!r}: target_chars must be > 0, got {target_chars}")
    docs = makers[name](seed, target_chars)
    if not docs:
        raise DataError(f"built-in domain {name!r} found no text on this machine")
    return docs


def _generate(templates: list[Template], seed: int, target_chars: int) -> list[str]:
    """Draw template instances until the documents reach `target_chars` characters."""
    rng = random.Random(seed)
    docs: list[str] = []
    total = 0
    while total < target_chars:
        doc = rng.choice(templates)(rng)
        docs.append(doc)
        total += len(doc)
    return docs


# --- shared vocabulary for the generated domains ----------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


NAMES = _words(
    "Alice Ben Carla David Emma Farid Grace Hugo Iris Jack Kim Leo Maya Nina Omar Paul Rosa "
    "Sam Tara Umar Vera Will Yara Zoe Amir Bella Chen Dora Eli Fiona"
)
ITEMS = _words(
    "apples books marbles pencils stickers cookies cards stamps shells coins eggs flowers "
    "toys candies balloons oranges buttons beads cupcakes crayons"
)
PRICED = _words("pen notebook sandwich ticket lamp cup shirt ball kite plant")
NOUNS = _words(
    "cat dog bird fish horse teacher doctor farmer child student river mountain city garden "
    "house window table chair book letter song story road bridge boat train car tree flower "
    "apple bread cake coffee friend king queen village forest island storm cloud moon star "
    "lamp door key box bag ship market school"
)
ADJECTIVES = _words(
    "small big old young quiet loud bright dark happy sad quick slow warm cold green red "
    "blue tall short clever gentle busy"
)
VERBS = _words(
    "sees finds likes carries paints follows watches opens builds visits helps reads "
    "cleans moves holds"
)
WORDS = _words(
    "banana strawberry apple letter bottle mississippi committee balloon coffee pepper "
    "apple garden rabbit little summer yellow window kitten puzzle butter cherry tomato "
    "parallel success address accommodate necessary grammar bookkeeper assessment pizza "
    "teeth school moon street tree hello level better silly grass little occurrence"
)
SPELLING = sorted(set(WORDS + NOUNS + ADJECTIVES + VERBS))


def _num(rng: random.Random) -> int:
    """A number with 1, 2 or 3 digits (2 most often)."""
    digits = rng.choice((1, 2, 2, 3))
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _names(rng: random.Random, k: int) -> list[str]:
    return rng.sample(NAMES, k)


# --- math ---------------------------------------------------------------------------------------


def _qa(question: str, answer: str) -> str:
    return f"Question: {question}\nAnswer: {answer}"


def _math_add(rng: random.Random) -> str:
    a, b = _num(rng), _num(rng)
    op = rng.choice(("+", "+", "+", "plus"))
    return _qa(f"What is {a} {op} {b}?", f"{a} + {b} = {a + b}. The answer is {a + b}.")


def _math_sub(rng: random.Random) -> str:
    a, b = _num(rng), _num(rng)
    if rng.random() < 0.85:
        a, b = max(a, b), min(a, b)
    op = rng.choice(("-", "-", "-", "minus"))
    return _qa(f"What is {a} {op} {b}?", f"{a} - {b} = {a - b}. The answer is {a - b}.")


def _math_mul(rng: random.Random) -> str:
    if rng.random() < 0.1:
        a = rng.randint(2, 40)
        return _qa(
            f"What is {a} squared?", f"{a} squared is {a} * {a} = {a * a}. The answer is {a * a}."
        )
    a = rng.randint(2, 99) if rng.random() < 0.8 else rng.randint(100, 999)
    b = rng.randint(2, 12) if rng.random() < 0.6 else rng.randint(2, 99)
    if rng.random() < 0.5:
        a, b = b, a
    op = rng.choice(("*", "*", "*", "times"))
    return _qa(f"What is {a} {op} {b}?", f"{a} * {b} = {a * b}. The answer is {a * b}.")


def _math_div(rng: random.Random) -> str:
    b, q = rng.randint(2, 25), rng.randint(2, 199)
    op = rng.choice(("/", "/", "divided by"))
    return _qa(f"What is {b * q} {op} {b}?", f"{b * q} / {b} = {q}. The answer is {q}.")


def _math_two_ops(rng: random.Random) -> str:
    a, b, c = _num(rng), rng.randint(2, 12), rng.randint(2, 20)
    if rng.random() < 0.5:
        p = b * c
        return _qa(
            f"What is {a} + {b} * {c}?",
            f"Multiply first: {b} * {c} = {p}. Then add: {a} + {p} = {a + p}. "
            f"The answer is {a + p}.",
        )
    s = a + b
    return _qa(
        f"What is ({a} + {b}) * {c}?",
        f"Add inside the brackets first: {a} + {b} = {s}. Then multiply: {s} * {c} = {s * c}. "
        f"The answer is {s * c}.",
    )


def _math_word_add(rng: random.Random) -> str:
    n, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), _num(rng), _num(rng)
    return _qa(
        f"{n} has {a} {item}. {n} gets {b} more {item}. How many {item} does {n} have now?",
        f"{n} starts with {a} {item} and gets {b} more: {a} + {b} = {a + b}. "
        f"The answer is {a + b}.",
    )


def _math_word_sub(rng: random.Random) -> str:
    n, m = _names(rng, 2)
    item, a = rng.choice(ITEMS), rng.randint(10, 999)
    b = rng.randint(1, a)
    return _qa(
        f"{n} has {a} {item} and gives {b} of them to {m}. How many {item} does {n} have left?",
        f"{n} gives away {b} of {a}: {a} - {b} = {a - b}. The answer is {a - b}.",
    )


def _math_word_mul(rng: random.Random) -> str:
    n, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 30), rng.randint(2, 24)
    return _qa(
        f"{n} buys {a} boxes of {item}. Each box holds {b} {item}. How many {item} does {n} buy?",
        f"{a} boxes with {b} {item} each: {a} * {b} = {a * b}. The answer is {a * b}.",
    )


def _math_word_div(rng: random.Random) -> str:
    n, item, b, q = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 12), rng.randint(2, 40)
    return _qa(
        f"{n} shares {b * q} {item} equally among {b} friends. "
        f"How many {item} does each friend get?",
        f"{b * q} {item} shared by {b} friends: {b * q} / {b} = {q}. The answer is {q}.",
    )


def _math_word_multi(rng: random.Random) -> str:
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(1, 60), rng.randint(2, 9), rng.randint(2, 12)
    p = b * c
    d = rng.randint(1, a + p)
    return _qa(
        f"{n} has {a} {item}. {n} buys {b} packs with {c} {item} in each pack, "
        f"then gives away {d}. How many {item} does {n} have now?",
        f"The packs hold {b} * {c} = {p} {item}. Together: {a} + {p} = {a + p}. "
        f"After giving away {d}: {a + p} - {d} = {a + p - d}. The answer is {a + p - d}.",
    )


def _math_word_price(rng: random.Random) -> str:
    thing, price, k = rng.choice(PRICED), rng.randint(2, 50), rng.randint(2, 15)
    paid = ((price * k) // 10 + 1 + rng.randint(0, 5)) * 10
    if rng.random() < 0.5:
        return _qa(
            f"One {thing} costs {price} dollars. How much do {k} of them cost?",
            f"{k} * {price} = {price * k}. The answer is {price * k}.",
        )
    return _qa(
        f"One {thing} costs {price} dollars. Someone buys {k} of them and pays with "
        f"{paid} dollars. How much change do they get?",
        f"The cost is {k} * {price} = {price * k}. The change is {paid} - {price * k} = "
        f"{paid - price * k}. The answer is {paid - price * k}.",
    )


def _math_linear(rng: random.Random) -> str:
    a, x, b = rng.randint(2, 12), rng.randint(-10, 30), rng.randint(1, 60)
    kind = rng.randrange(3)
    if kind == 0:
        c = a * x + b
        return _qa(
            f"Solve for x: {a}x + {b} = {c}.",
            f"Subtract {b} from both sides: {a}x = {c - b}. Divide both sides by {a}: "
            f"x = {x}. The answer is {x}.",
        )
    if kind == 1:
        c = a * x - b
        return _qa(
            f"Solve for x: {a}x - {b} = {c}.",
            f"Add {b} to both sides: {a}x = {c + b}. Divide both sides by {a}: x = {x}. "
            f"The answer is {x}.",
        )
    return _qa(
        f"Solve for x: x + {b} = {x + b}.",
        f"Subtract {b} from both sides: x = {x + b} - {b} = {x}. The answer is {x}.",
    )


def _math_compare(rng: random.Random) -> str:
    a, b = _num(rng), _num(rng)
    while a == b:
        b = _num(rng)
    hi, lo = max(a, b), min(a, b)
    if rng.random() < 0.5:
        return _qa(
            f"Which is larger, {a} or {b}?", f"{hi} is larger than {lo}. The answer is {hi}."
        )
    return _qa(f"Which is smaller, {a} or {b}?", f"{lo} is smaller than {hi}. The answer is {lo}.")


def _math_percent(rng: random.Random) -> str:
    p = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80, 90))
    n = rng.randint(1, 100) * 20
    r = n * p // 100
    return _qa(f"What is {p}% of {n}?", f"{p}% of {n} is {n} * {p} / 100 = {r}. The answer is {r}.")


def _math_parity(rng: random.Random) -> str:
    n = rng.randint(1, 9999)
    r = n % 2
    word = "odd" if r else "even"
    return _qa(
        f"Is {n} even or odd?",
        f"{n} divided by 2 leaves a remainder of {r}, so {n} is {word}. The answer is {word}.",
    )


MATH_TEMPLATES: list[Template] = [
    # plain arithmetic twice: it is what the math benchmark asks
    _math_add,
    _math_add,
    _math_sub,
    _math_sub,
    _math_mul,
    _math_mul,
    _math_div,
    _math_two_ops,
    _math_word_add,
    _math_word_sub,
    _math_word_mul,
    _math_word_div,
    _math_word_multi,
    _math_word_price,
    _math_linear,
    _math_compare,
    _math_percent,
    _math_parity,
]


def math_texts(seed: int, target_chars: int) -> list[str]:
    """Generated questions with worked answers, one question per document."""
    return _generate(MATH_TEMPLATES, seed, target_chars)


# --- sft ----------------------------------------------------------------------------------------


def _sft(instruction: str, response: str) -> str:
    return f"### Instruction:\n{instruction}\n### Response:\n{response}"


def _sentence(rng: random.Random) -> str:
    adj1, adj2 = rng.sample(ADJECTIVES, 2)
    n1, n2 = rng.sample(NOUNS, 2)
    return f"the {adj1} {n1} {rng.choice(VERBS)} the {adj2} {n2}"


def _sft_sort_numbers(rng: random.Random) -> str:
    xs = [rng.randint(0, 99) for _ in range(rng.randint(3, 7))]
    joined = ", ".join(map(str, xs))
    if rng.random() < 0.5:
        return _sft(
            f"Sort these numbers from smallest to largest: {joined}.",
            ", ".join(map(str, sorted(xs))),
        )
    return _sft(
        f"Sort these numbers from largest to smallest: {joined}.",
        ", ".join(map(str, sorted(xs, reverse=True))),
    )


def _sft_sort_words(rng: random.Random) -> str:
    ws = rng.sample(NOUNS, rng.randint(3, 6))
    return _sft(f"Put these words in alphabetical order: {', '.join(ws)}.", ", ".join(sorted(ws)))


def _sft_count_letter(rng: random.Random) -> str:
    word = rng.choice(SPELLING)
    letter = rng.choice(word) if rng.random() < 0.85 else rng.choice("qxzjkv")
    n = word.count(letter)
    times = "time" if n == 1 else "times"
    ask = rng.choice(
        (
            'How many times does the letter "{l}" appear in the word "{w}"?',
            'Count the letter "{l}" in "{w}".',
            'How many "{l}"s are there in "{w}"?',
        )
    )
    return _sft(
        ask.format(l=letter, w=word),
        f'The word "{word}" is spelled {"-".join(word)}. '
        f'The letter "{letter}" appears {n} {times}.',
    )


UNITS = (
    ("kilometers", "kilometer", "meters", 1000),
    ("meters", "meter", "centimeters", 100),
    ("kilograms", "kilogram", "grams", 1000),
    ("hours", "hour", "minutes", 60),
    ("minutes", "minute", "seconds", 60),
    ("days", "day", "hours", 24),
    ("weeks", "week", "days", 7),
    ("liters", "liter", "milliliters", 1000),
    ("dozens", "dozen", "items", 12),
    ("years", "year", "months", 12),
)


def _sft_units(rng: random.Random) -> str:
    big, one, small, f = rng.choice(UNITS)
    n = rng.randint(2, 500)
    if rng.random() < 0.6:
        return _sft(
            f"Convert {n} {big} to {small}.",
            f"There are {f} {small} in one {one}, so {n} {big} is {n} * {f} = {n * f} {small}.",
        )
    return _sft(
        f"Convert {n * f} {small} to {big}.",
        f"There are {f} {small} in one {one}, so {n * f} {small} is {n * f} / {f} = {n} {big}.",
    )


def _sft_compare(rng: random.Random) -> str:
    a, b = rng.sample(range(1, 1000), 2)
    if rng.random() < 0.5:
        verdict = "Yes" if a > b else "No"
        rel = "greater than" if a > b else "less than"
        return _sft(f"Is {a} greater than {b}?", f"{verdict}. {a} is {rel} {b}.")
    kg = rng.randint(1, 20)
    g = rng.choice([x for x in range(250, 25000, 250) if x != kg * 1000])
    heavier = f"{kg} kg" if kg * 1000 > g else f"{g} g"
    return _sft(
        f"Which is heavier: {kg} kg or {g} g?",
        f"{kg} kg is {kg * 1000} g, so {heavier} is heavier.",
    )


def _sft_reverse(rng: random.Random) -> str:
    if rng.random() < 0.2:
        w = rng.choice(SPELLING)
        return _sft(f'Spell the word "{w}" backwards.', f'"{w}" spelled backwards is "{w[::-1]}".')
    s = _sentence(rng)
    return _sft(
        f'Reverse the order of the words in: "{s}".', '"' + " ".join(reversed(s.split())) + '"'
    )


def _sft_count_words(rng: random.Random) -> str:
    s = _sentence(rng) + rng.choice(("", " in the morning", " near the river", " again"))
    n = len(s.split())
    return _sft(f'How many words are in the sentence "{s}"?', f"The sentence has {n} words.")


def _sft_uppercase(rng: random.Random) -> str:
    s = _sentence(rng)
    return _sft(f'Write this sentence in capital letters: "{s}".', s.upper() + ".")


RELATIONS = (  # comparative, superlatives of the first and the last, their adjectives
    ("taller", "tallest", "shortest", "tall", "short"),
    ("older", "oldest", "youngest", "old", "young"),
    ("faster", "fastest", "slowest", "fast", "slow"),
    ("heavier", "heaviest", "lightest", "heavy", "light"),
)


def _sft_order_reasoning(rng: random.Random) -> str:
    people = _names(rng, rng.randint(3, 4))
    comp, top, bottom, top_adj, bottom_adj = rng.choice(RELATIONS)
    facts = [f"{a} is {comp} than {b}." for a, b in itertools.pairwise(people)]
    rng.shuffle(facts)
    ask_top = rng.random() < 0.5
    asked = top if ask_top else bottom
    answer = people[0] if ask_top else people[-1]
    order = f"the order from {top_adj} to {bottom_adj} is {', '.join(people)}"
    instruction = f"{' '.join(facts)} Who is the {asked}?"
    if rng.random() < 0.5:  # answer first, as a benchmark reads it; then the reason
        return _sft(instruction, f"{answer}. From the statements, {order}.")
    return _sft(instruction, f"From the statements, {order}. So the {asked} is {answer}.")


def _sft_sequence(rng: random.Random) -> str:
    kind = rng.choice((0, 0, 1, 2, 3, 4))
    if kind == 0:
        start, step = rng.randint(0, 200), rng.randint(1, 25)
        xs = [start + i * step for i in range(6)]
        rule = f"Each number is {step} more than the one before"
    elif kind == 1:
        step = rng.randint(1, 25)
        start = rng.randint(6 * step, 300)
        xs = [start - i * step for i in range(6)]
        rule = f"Each number is {step} less than the one before"
    elif kind == 2:
        start, ratio = rng.randint(1, 12), rng.choice((2, 3, 4))
        xs = [start * ratio**i for i in range(6)]
        rule = f"Each number is {ratio} times the one before"
    elif kind == 3:
        first = rng.randint(1, 20)
        xs = [(first + i) ** 2 for i in range(6)]
        rule = "The numbers are consecutive squares"
    else:
        xs = [rng.randint(1, 12), rng.randint(1, 12)]
        while len(xs) < 6:
            xs.append(xs[-1] + xs[-2])
        rule = "Each number is the sum of the two before it"
    shown, nxt = ", ".join(map(str, xs[:-1])), xs[-1]
    if rng.random() < 0.5:  # answer first, as a benchmark reads it; then the rule
        return _sft(f"Continue the sequence: {shown}", f"{nxt}. {rule}.")
    return _sft(
        f"What number comes next in the sequence {shown}?", f"{rule}, so the next number is {nxt}."
    )


def _sft_list_stat(rng: random.Random) -> str:
    xs = [rng.randint(1, 99) for _ in range(rng.randint(3, 6))]
    joined = ", ".join(map(str, xs))
    kind = rng.randrange(3)
    if kind == 0:
        return _sft(f"What is the largest number in this list: {joined}?", f"{max(xs)}.")
    if kind == 1:
        return _sft(f"What is the smallest number in this list: {joined}?", f"{min(xs)}.")
    return _sft(f"Add up these numbers: {joined}.", f"{' + '.join(map(str, xs))} = {sum(xs)}.")


SFT_TEMPLATES: list[Template] = [
    _sft_sort_numbers,
    _sft_sort_words,
    _sft_count_letter,
    _sft_units,
    _sft_compare,
    _sft_reverse,
    _sft_count_words,
    _sft_uppercase,
    _sft_order_reasoning,
    _sft_sequence,
    _sft_list_stat,
]


def sft_texts(seed: int, target_chars: int) -> list[str]:
    """Generated instruction/response pairs, one pair per document."""
    return _generate(SFT_TEMPLATES, seed, target_chars)


# --- code ---------------------------------------------------------------------------------------

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


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """Python source files of the stdlib, sorted, without tests and generated/vendored code."""
    root = stdlib_dir()
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


# --- web ----------------------------------------------------------------------------------------

TEXT_ROOTS = ("/usr/share/common-licenses", "/usr/share/doc")
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


def _chunks(text: str, limit: int) -> list[str]:
    """Group blank-line-separated paragraphs into pieces of at most `limit` characters."""
    out: list[str] = []
    cur = ""
    for para in re.split(r"\n[ \t]*\n", text):
        if not para.strip():
            continue
        while len(para) > limit:  # one huge paragraph: cut at the last newline or space
            cut = max(para.rfind("\n", 0, limit), para.rfind(" ", 0, limit))
            cut = cut if cut > limit // 2 else limit
            if cur:
                out.append(cur)
                cur = ""
            out.append(para[:cut])
            para = para[cut:].lstrip("\n")
        if cur and len(cur) + 2 + len(para) > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    if cur.strip():
        out.append(cur)
    return out


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


def local_text_files(roots: tuple[str, ...] = TEXT_ROOTS) -> list[Path]:
    """Plain-text documentation files under `roots` (missing roots skipped), sorted."""
    found: list[Path] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in filenames:
                p = Path(dirpath, f)
                if not p.is_symlink() and (root.endswith("licenses") or _is_doc_file(p)):
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
    python_docs: list[Callable[[], list[str]]] = [
        lambda p=p: module_docstrings(p) for p in stdlib_files()
    ]
    python_docs += [lambda t=t: [t] for t in pydoc_topics()]
    roots = TEXT_ROOTS
    if Path(sys.prefix, "share", "doc").is_dir() and sys.prefix != "/usr":
        roots = (*roots, str(Path(sys.prefix, "share", "doc")))
    files = local_text_files(roots)
    licenses = [p for p in files if p.name.lower() in ("copyright", "copying", "license")]
    licenses += [p for p in files if "common-licenses" in p.parts]
    changelogs = [p for p in files if p.name.lower().startswith(("changelog", "news", "history"))]
    taken = set(licenses) | set(changelogs)
    readmes = [p for p in files if p not in taken]

    def readers(paths: list[Path]) -> list[Callable[[], list[str]]]:
        return [lambda p=p: [t] if (t := _read_text_file(p)) else [] for p in paths]

    kinds = {
        "python": python_docs,
        "readme": readers(readmes),
        "license": readers(licenses),
        "changelog": readers(changelogs),
    }
    for units in kinds.values():
        rng.shuffle(units)
    return kinds


def web_texts(seed: int, target_chars: int) -> list[str]:
    """English prose found locally, balanced by characters across kinds of source
    (Python docs, READMEs, licenses, changelogs) and split into paragraph groups."""
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
