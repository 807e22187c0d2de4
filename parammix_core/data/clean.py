"""Document cleaning: whitespace normalisation, length filter, truncation, exact dedup.

Normalisation must not destroy code: leading indentation and single blank lines are kept;
only what carries no meaning goes (CR line ends, trailing spaces, control characters, runs
of blank lines, blank lines at the ends). Dedup compares the stored (normalised, truncated)
text, so two documents are duplicates exactly when the model would see the same tokens.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# C0/C1 control characters except tab and newline (form feeds are common in old sources).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TRAILING_SPACE = re.compile(r"[ \t]+(?=\n)")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """NFC, \\n line ends, no control characters or trailing spaces, at most one blank line
    in a row, no blank lines at either end. Indentation is kept."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("", text + "\n")
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n").rstrip()


def truncate(text: str, max_chars: int) -> str:
    """Cut to at most `max_chars`, at a line end when one lies in the second half."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    newline = cut.rfind("\n")
    if newline >= max_chars // 2:
        cut = cut[:newline]
    return cut.rstrip()


class Cleaner:
    """`clean_documents` one document at a time, for corpora streamed from disk. Dedup keeps
    an 8-byte blake2b digest per kept document instead of its text (~100 bytes a document in
    a set; a false "duplicate" needs a 64-bit collision: about 3e-4 for 10^8 documents)."""

    def __init__(self, min_chars: int, max_chars: int, dedup: bool) -> None:
        if min_chars < 0 or max_chars <= min_chars:
            raise ValueError(f"need 0 <= min_chars < max_chars, got {min_chars} and {max_chars}")
        self.min_chars, self.max_chars, self.dedup = min_chars, max_chars, dedup
        self.counts = {"dropped_short": 0, "dropped_duplicate": 0, "truncated": 0}
        self._seen: set[int] = set()

    def __call__(self, raw: str) -> str | None:
        """The cleaned text, or None when it is dropped (counted in `counts`)."""
        text = normalize(raw)
        if len(text) > self.max_chars:
            text = truncate(text, self.max_chars)
            self.counts["truncated"] += 1
        if len(text) < self.min_chars:
            self.counts["dropped_short"] += 1
            return None
        if self.dedup:
            digest = int.from_bytes(
                hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=8).digest()
            )
            if digest in self._seen:
                self.counts["dropped_duplicate"] += 1
                return None
            self._seen.add(digest)
        return text


def clean_documents(
    texts: list[str], min_chars: int, max_chars: int, dedup: bool
) -> tuple[list[str], dict[str, int]]:
    """Normalise, drop short, truncate long and (optionally) drop exact duplicates.

    Returns the kept documents in input order (first occurrence wins) and counts:
    `dropped_short`, `dropped_duplicate`, `truncated`.
    """
    clean = Cleaner(min_chars, max_chars, dedup)
    kept = [text for raw in texts if (text := clean(raw)) is not None]
    return kept, clean.counts
