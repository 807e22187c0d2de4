"""The sft domain: generated instruction/response pairs."""

from __future__ import annotations

import itertools
import random

from parammix_core.data.sources.vocabulary import (
    ADJECTIVES,
    NOUNS,
    SPELLING,
    VERBS,
    Template,
    _generate,
    _names,
)


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
