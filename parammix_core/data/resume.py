"""Where an interrupted preparation left off, so a rerun tokenises only what is not on disk.

Tokenising a domain of billions of tokens takes hours; the shuffle before it (pass 1) and the
tokenizer take minutes and are simply redone. So the state kept is per domain's training
split: after each shard file is written, a small JSON journal records how far into the
shuffled document stream that shard reached (`Cursor`) and which tokenizer wrote it. A rerun
in the same folder with the same tokenizer skips that many documents without encoding them,
re-encodes the one batch the shard boundary fell in, drops the tokens already written, and
goes on writing the next shard. Same inputs give the same shards whether or not a run was
interrupted (tested byte for byte).

A journal that cannot be trusted (unreadable, another tokenizer, a shard missing or cut
short) is ignored and the split is written again from the start: slower, never wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from parammix_core.data.errors import DataError
from parammix_core.data.shards import check_shard, shard_name

RESUME_DIR = ".resume"


@dataclass(frozen=True)
class Cursor:
    """A split's progress at a shard boundary.

    Attributes:
        docs: documents of the stream encoded whole before the batch the boundary fell in.
        skip: tokens of that batch already in the written shards.
        tokens: tokens in the written shards (whole blocks: a shard is flushed when full).
        blocks: blocks in the written shards.
        shards: shard files written.
        done: the split is complete; `docs` is then the documents it used.
    """

    docs: int = 0
    skip: int = 0
    tokens: int = 0
    blocks: int = 0
    shards: int = 0
    done: bool = False


def tokenizer_digest(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of the tokenizer's full JSON: shards from another tokenizer are not resumed."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


class Journal:
    """The journal of one split (`<out>/.resume/<stem>.json`), beside its shards."""

    def __init__(self, out_dir: Path, tokens_dir: Path, stem: str, tokenizer: str) -> None:
        self.path = out_dir / RESUME_DIR / f"{stem}.json"
        self.tokens_dir, self.stem, self.tokenizer = tokens_dir, stem, tokenizer

    def load(self) -> Cursor:
        """Where the split left off; a fresh start when there is nothing trustworthy."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if raw.pop("tokenizer") != self.tokenizer:
                return Cursor()
            cursor = Cursor(**{f.name: raw[f.name] for f in fields(Cursor)})
        except (OSError, ValueError, KeyError, TypeError):
            return Cursor()
        if not self._valid(cursor):
            return Cursor()
        return cursor

    def save(self, cursor: Cursor) -> None:
        """Record `cursor` atomically (written beside, then renamed over the old journal)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(cursor), "tokenizer": self.tokenizer}))
        os.replace(tmp, self.path)

    def _valid(self, cursor: Cursor) -> bool:
        counts = (cursor.docs, cursor.skip, cursor.tokens, cursor.blocks, cursor.shards)
        if not all(isinstance(n, int) and n >= 0 for n in counts):
            return False
        rows = 0
        for i in range(cursor.shards):
            try:
                rows += check_shard(self.tokens_dir / shard_name(self.stem, i))
            except DataError:
                return False
        return rows == cursor.blocks
