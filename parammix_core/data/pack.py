"""Pass 2 of the preparation: a domain's shuffled documents -> token shards, resumably.

The held-out split is small and written again on every run; the training split keeps a
journal (`resume.py`) after every shard, so a run stopped after hours of tokenisation goes on
from its last complete shard instead of from the first document.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

from parammix_core.config import DataConfig
from parammix_core.data.errors import DataError
from parammix_core.data.resume import Cursor, Journal, tokenizer_digest
from parammix_core.data.shards import BlockWriter, shard_name
from parammix_core.data.shuffle import read_shuffled

ENCODE_BATCH = 256  # documents per encode call: tokenise only as much as the caps need
TOKENS_DIR = "tokens"


@dataclass
class Domain:
    """One domain between the passes: its shuffled buckets and held-out pool."""

    name: str
    buckets: list[Path]
    kept: int
    pool: list[str]


def feed(
    docs: Iterator[str],
    tokenizer: PreTrainedTokenizerFast,
    out: BlockWriter,
    limit: int,
    cut: bool,
    start: Cursor | None = None,
    journal: Journal | None = None,
) -> int:
    """Tokenise whole documents (eos appended) into `out` until it holds `limit` tokens
    (`cut`: exactly `limit`, the last document cut short). Returns the documents used.

    From `start` (a writer already holding its shards), the first `start.docs` documents
    are skipped unread by the tokenizer and the first `start.skip` tokens of the next batch
    dropped. With a `journal`, the cursor is saved after every full shard."""
    eos = tokenizer.eos_token_id
    start = start or Cursor()
    used, skip = start.docs, start.skip
    docs = itertools.islice(docs, start.docs, None)
    batch_docs = batch_base = 0  # the batch in progress: documents and tokens before it

    if journal is not None:
        out.on_flush = lambda: journal.save(
            Cursor(batch_docs, out.tokens - batch_base, out.tokens, out.blocks, out.shards)
        )
    while out.tokens < limit:
        batch = list(itertools.islice(docs, ENCODE_BATCH))
        if not batch:
            break
        batch_docs, batch_base = used, out.tokens - skip
        ids: list[int] = []
        total = batch_base
        for enc in tokenizer.backend_tokenizer.encode_batch(batch, add_special_tokens=False):
            doc = enc.ids
            doc.append(eos)
            doc = doc[: limit - total] if cut else doc
            ids += doc
            total += len(doc)
            used += 1
            if total >= limit:
                break
        out.append(np.array(ids[skip:], dtype=np.int32))
        skip = 0
    return used


def pack_domain(
    domain: Domain,
    tokenizer: PreTrainedTokenizerFast,
    cfg: DataConfig,
    out_dir: Path,
    say: Callable[[str], None],
) -> tuple[list[str], dict[str, int]]:
    """Tokenise the held-out split, then the training text (from where an earlier run in
    `out_dir` stopped), into shards; returns the held-out documents and the counts."""
    bs, tokens_dir = cfg.block_size, out_dir / TOKENS_DIR
    held = BlockWriter(tokens_dir, f"{domain.name}.heldout", bs)
    n_held = feed(iter(domain.pool), tokenizer, held, cfg.heldout_tokens, cut=False)
    if held.tokens < bs:
        raise DataError(
            f"domain {domain.name!r}: the held-out split has {held.tokens} tokens from "
            f"{n_held} documents, fewer than one block of {bs}; the domain has "
            f"{domain.kept} documents after cleaning"
        )
    held.close()
    stem = f"{domain.name}.train"
    journal = Journal(out_dir, tokens_dir, stem, tokenizer_digest(tokenizer))
    start = journal.load()
    _drop_shards_after(tokens_dir, stem, start.shards)
    if start.shards:
        say(
            f"{domain.name}: resuming after {start.shards} training shard(s) on disk "
            f"({start.tokens:,} tokens, {start.docs:,} documents)"
        )
    train = BlockWriter(tokens_dir, stem, bs, (start.tokens, start.blocks, start.shards))
    if start.done:
        n_train = start.docs
    else:
        rest = itertools.islice(read_shuffled(domain.buckets), len(domain.pool), None)
        train_docs = itertools.chain(domain.pool[n_held:], rest)
        n_train = feed(train_docs, tokenizer, train, cfg.max_train_tokens, True, start, journal)
    if train.tokens < bs:
        raise DataError(
            f"domain {domain.name!r}: {train.tokens} training tokens from {n_train} documents "
            f"after holding out {held.tokens}, fewer than one block of {bs}; add text "
            "or lower heldout_tokens"
        )
    train.close()
    journal.save(Cursor(n_train, 0, train.tokens, train.blocks, train.shards, done=True))
    counts = {
        "train_documents": n_train,
        "heldout_documents": n_held,
        "train_tokens": train.tokens,
        "heldout_tokens": held.tokens,
        "train_blocks": train.blocks,
        "heldout_blocks": held.blocks,
    }
    return domain.pool[:n_held], counts


def _drop_shards_after(folder: Path, stem: str, keep: int) -> None:
    """Remove shard files a stopped run wrote past its journal (the one it was writing)."""
    for file in folder.glob(f"{stem}-{'[0-9]' * 5}.safetensors"):
        if file.name >= shard_name(stem, keep):
            file.unlink()
