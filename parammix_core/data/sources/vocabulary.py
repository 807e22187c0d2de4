"""Word lists and draw helpers shared by the generated domains (math, sft)."""

from __future__ import annotations

import random
from collections.abc import Callable

Template = Callable[[random.Random], str]


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
