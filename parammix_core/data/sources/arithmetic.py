"""The math domain: generated arithmetic and algebra questions with worked answers."""

from __future__ import annotations

import random

from parammix_core.data.sources.vocabulary import (
    ITEMS,
    NAMES,
    PRICED,
    Template,
    _generate,
    _names,
    _num,
)


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
