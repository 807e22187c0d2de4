"""Cleaning: normalisation keeps code intact; counts of what was dropped are right."""

import pytest

from parammix_core.data import clean_documents
from parammix_core.data.clean import normalize, truncate


def test_normalize_keeps_indentation_and_single_blank_lines():
    code = "def f():\r\n    if x:\t\r\n\treturn 1   \n\n\n\n\n    y = 2\x0c\n\n"
    assert normalize(code) == "def f():\n    if x:\n\treturn 1\n\n    y = 2"
    assert normalize("\n\n   indented first line\n") == "   indented first line"
    assert normalize("cafe\u0301") == "caf\u00e9"  # NFC


def test_truncate_prefers_line_end():
    text = "a" * 50 + "\n" + "b" * 100
    assert truncate(text, 80) == "a" * 50
    assert truncate("x" * 100, 80) == "x" * 80
    assert truncate("short", 80) == "short"


def test_clean_counts():
    texts = [
        "a document that is long enough",
        "tiny",
        "a document that is long enough   ",  # duplicate after normalisation
        "a document that is long enough\r\n",  # duplicate too
        "another document, also long enough",
        "   \n\n  ",
        "x" * 500,
    ]
    kept, counts = clean_documents(texts, min_chars=20, max_chars=100, dedup=True)
    assert kept == [
        "a document that is long enough",
        "another document, also long enough",
        "x" * 100,
    ]
    assert counts == {"dropped_short": 2, "dropped_duplicate": 2, "truncated": 1}


def test_clean_without_dedup_keeps_duplicates():
    kept, counts = clean_documents(["same text here", "same text here"], 5, 50, dedup=False)
    assert kept == ["same text here", "same text here"]
    assert counts["dropped_duplicate"] == 0


def test_clean_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min_chars < max_chars"):
        clean_documents(["abc"], 10, 10, dedup=True)
