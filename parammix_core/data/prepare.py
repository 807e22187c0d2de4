"""prepare_domains: per-domain corpora -> tokenizer -> packed token blocks, written once.

Per domain, in config order: get documents (built-in generator or user files), cap at
`max_documents`, clean, shuffle with a seed derived from (seed, domain name), then split by
whole documents: the first ones are held out until they hold `heldout_tokens` tokens, the
rest is training text, capped at `max_train_tokens`. Every document gets one eos appended,
documents are concatenated and cut into blocks of `block_size` (the remainder is dropped).

The tokenizer is trained (unless one is configured) on training documents only, which needs
the split before any tokenizer exists. So the split runs in two steps: a generous pool of
the first documents (`heldout_tokens` * HELDOUT_POOL_CHARS_PER_TOKEN characters, at most half
the documents) is kept away from the tokenizer, and after training the held-out set is the
shortest prefix of that pool with enough tokens; the rest of the pool goes to training.

Output directory (what the trainer and evaluator read; no pickle anywhere):

    tokenizer/              save_pretrained of a fast tokenizer (JSON files)
    tokens.safetensors      "<domain>.train" (N_train, block_size) and
                            "<domain>.heldout" (N_heldout, block_size), int32
    heldout_texts.json      {domain: [held-out documents as cleaned text]}
    stats.json              {domain: counts}, in config order (written last)

Same config and seed give byte-identical tokens.safetensors and tokenizer.json.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from parammix_core.config import DataConfig, DomainSpec
from parammix_core.data.clean import clean_documents
from parammix_core.data.errors import DataError
from parammix_core.data.loaders import load_texts
from parammix_core.data.sources import builtin_texts
from parammix_core.data.tokenizer import load_tokenizer, train_tokenizer

# Characters generated per wanted token for built-in domains. Our BPE gives 2.5-3.5
# characters per token; 5 leaves room for that and for documents lost to dedup.
CHARS_PER_TOKEN = 5
# Upper bound on characters per token for sizing the held-out pool (long tokens of big
# vocabularies included), so the pool nearly always holds `heldout_tokens`.
HELDOUT_POOL_CHARS_PER_TOKEN = 8
ENCODE_BATCH = 256  # documents per encode call: tokenise only as much as the caps need

TOKENS_FILE = "tokens.safetensors"
HELDOUT_FILE = "heldout_texts.json"
STATS_FILE = "stats.json"
TOKENIZER_DIR = "tokenizer"


@dataclass
class PreparedData:
    """A prepared corpus directory, loaded: blocks per domain plus what made them."""

    tokenizer: PreTrainedTokenizerFast
    train: dict[str, torch.Tensor]  # domain -> (N_train, block_size) int32
    heldout: dict[str, torch.Tensor]  # domain -> (N_heldout, block_size) int32
    heldout_texts: dict[str, list[str]]
    stats: dict[str, dict[str, int]]

    @property
    def domains(self) -> list[str]:
        return list(self.stats)


def domain_seed(seed: int, name: str) -> int:
    """A per-domain seed: two domains built from the same generator still differ."""
    return zlib.crc32(f"{seed}:{name}".encode())


def _domain_texts(
    spec: DomainSpec, cfg: DataConfig, seed: int, storage_options: dict | None
) -> list[str]:
    if spec.builtin is not None:
        want = (cfg.max_train_tokens + cfg.heldout_tokens) * CHARS_PER_TOKEN
        docs = builtin_texts(spec.builtin, domain_seed(seed, spec.name), want)
    else:
        try:
            docs = load_texts(spec.paths, spec.text_field, storage_options)
        except DataError as err:
            raise DataError(f"domain {spec.name!r}: {err}") from None
        if not docs:
            raise DataError(f"domain {spec.name!r}: no documents in {spec.paths} (empty files)")
    return docs[: spec.max_documents] if spec.max_documents else docs


def _heldout_pool(docs: list[str], heldout_tokens: int) -> int:
    """Number of leading documents kept away from the tokenizer for the held-out split."""
    want = heldout_tokens * HELDOUT_POOL_CHARS_PER_TOKEN
    limit = max(1, len(docs) // 2)
    chars = 0
    for i, doc in enumerate(docs[:limit]):
        chars += len(doc)
        if chars >= want:
            return i + 1
    return limit


def _take_tokens(
    docs: list[str], tokenizer: PreTrainedTokenizerFast, limit: int
) -> tuple[int, np.ndarray]:
    """Tokenise whole documents (eos appended) until they hold `limit` tokens.

    Returns how many documents were used and their concatenated ids, (n_tokens,) int32.
    """
    eos = tokenizer.eos_token_id
    pieces: list[list[int]] = []
    total = 0
    used = 0
    while used < len(docs) and total < limit:
        batch = docs[used : used + ENCODE_BATCH]
        encodings = tokenizer.backend_tokenizer.encode_batch(batch, add_special_tokens=False)
        for enc in encodings:
            ids = [*enc.ids, eos]
            pieces.append(ids)
            total += len(ids)
            used += 1
            if total >= limit:
                break
    stream = np.fromiter((t for ids in pieces for t in ids), dtype=np.int32, count=total)
    return used, stream


def _blocks(stream: np.ndarray, block_size: int) -> torch.Tensor:
    n = len(stream) // block_size
    return torch.from_numpy(stream[: n * block_size].reshape(n, block_size).copy())  # (n, T)


def prepare_corpora(
    cfg: DataConfig,
    seed: int,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    storage_options: dict | None = None,
) -> dict:
    """Build, tokenise and pack every domain of `cfg` into `out_dir`; return the stats.
    Corpus URLs are read with `storage_options` (the store's endpoint and credentials).

    Raises DataError for a domain with no text after cleaning, or with too few tokens for
    one held-out block or one training block.
    """
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    stats: dict[str, dict[str, int]] = {}
    docs_by_domain: dict[str, list[str]] = {}
    pool_sizes: dict[str, int] = {}
    for spec in cfg.domains:
        raw = _domain_texts(spec, cfg, seed, storage_options)
        docs, counts = clean_documents(raw, cfg.min_chars, cfg.max_chars, cfg.dedup)
        if not docs:
            raise DataError(
                f"domain {spec.name!r}: no text left after cleaning ({len(raw)} documents, "
                f"{counts['dropped_short']} shorter than min_chars={cfg.min_chars}, "
                f"{counts['dropped_duplicate']} duplicates)"
            )
        if len(docs) < 2:
            raise DataError(
                f"domain {spec.name!r}: 1 document left after cleaning ({len(raw)} documents, "
                f"{counts['dropped_short']} shorter than min_chars={cfg.min_chars}, "
                f"{counts['dropped_duplicate']} duplicates); the held-out split and the "
                "training text need one each"
            )
        random.Random(domain_seed(seed, spec.name)).shuffle(docs)
        docs_by_domain[spec.name] = docs
        pool_sizes[spec.name] = _heldout_pool(docs, cfg.heldout_tokens)
        stats[spec.name] = {
            "documents": len(raw),
            **counts,
            "characters": sum(map(len, docs)),
        }
        say(
            f"{spec.name}: {len(docs):,} of {len(raw):,} documents kept "
            f"({counts['dropped_short']:,} short, {counts['dropped_duplicate']:,} duplicates)"
        )

    if cfg.tokenizer is not None:
        tokenizer = load_tokenizer(cfg.tokenizer)
        say(f"tokenizer: loaded {cfg.tokenizer} ({len(tokenizer):,} tokens)")
    else:
        outside_pool = {name: d[pool_sizes[name] :] for name, d in docs_by_domain.items()}
        tokenizer = train_tokenizer(outside_pool, cfg.vocab_size, seed)
        say(f"tokenizer: trained byte-level BPE, {len(tokenizer):,} tokens")

    tensors: dict[str, torch.Tensor] = {}
    heldout_texts: dict[str, list[str]] = {}
    bs = cfg.block_size
    for name, docs in docs_by_domain.items():
        pool = docs[: pool_sizes[name]]
        n_held, held = _take_tokens(pool, tokenizer, cfg.heldout_tokens)
        train_docs = pool[n_held:] + docs[pool_sizes[name] :]
        n_train, train = _take_tokens(train_docs, tokenizer, cfg.max_train_tokens)
        train = train[: cfg.max_train_tokens]
        if len(held) < bs:
            raise DataError(
                f"domain {name!r}: the held-out split has {len(held)} tokens from {n_held} "
                f"documents, fewer than one block of {bs}; the domain has "
                f"{len(docs)} documents after cleaning"
            )
        if len(train) < bs:
            raise DataError(
                f"domain {name!r}: {len(train)} training tokens from {n_train} documents "
                f"after holding out {len(held)}, fewer than one block of {bs}; add text "
                "or lower heldout_tokens"
            )
        tensors[f"{name}.train"] = _blocks(train, bs)
        tensors[f"{name}.heldout"] = _blocks(held, bs)
        heldout_texts[name] = pool[:n_held]
        stats[name].update(
            train_documents=n_train,
            heldout_documents=n_held,
            train_tokens=len(train),
            heldout_tokens=len(held),
            train_blocks=len(train) // bs,
            heldout_blocks=len(held) // bs,
        )
        say(
            f"{name}: {stats[name]['train_blocks']:,} training and "
            f"{stats[name]['heldout_blocks']:,} held-out blocks of {bs}"
        )

    tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)
    save_file(tensors, out_dir / TOKENS_FILE)
    _write_json(out_dir / HELDOUT_FILE, heldout_texts)
    _write_json(out_dir / STATS_FILE, stats)
    return stats


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: missing; is this a prepared data directory?") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON: {err}") from err


def load_prepared(out_dir: Path) -> PreparedData:
    """Read what `prepare_corpora` wrote (safetensors and JSON only)."""
    out_dir = Path(out_dir)
    stats = _read_json(out_dir / STATS_FILE)
    heldout_texts = _read_json(out_dir / HELDOUT_FILE)
    try:
        tensors = load_file(out_dir / TOKENS_FILE)
    except (FileNotFoundError, SafetensorError) as err:
        raise DataError(f"{out_dir / TOKENS_FILE}: cannot read: {err}") from err
    split: dict[str, dict[str, torch.Tensor]] = {"train": {}, "heldout": {}}
    for name in stats:
        for part, into in split.items():
            key = f"{name}.{part}"
            t = tensors.get(key)
            if t is None or t.dtype != torch.int32 or t.dim() != 2:
                got = "missing" if t is None else f"{t.dtype} {tuple(t.shape)}"
                raise DataError(f"{out_dir / TOKENS_FILE}: tensor {key!r} is {got}")
            into[name] = t
        if name not in heldout_texts:
            raise DataError(f"{out_dir / HELDOUT_FILE}: no entry for domain {name!r}")
    return PreparedData(
        tokenizer=load_tokenizer(out_dir / TOKENIZER_DIR),
        train=split["train"],
        heldout=split["heldout"],
        heldout_texts=heldout_texts,
        stats=stats,
    )


def natural_weights(stats: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mixture weights in proportion to each domain's cleaned characters (before the
    token caps): the "natural proportions" baseline. For built-in domains that size is
    what was generated or found, so they come out near uniform."""
    chars = {name: s["characters"] for name, s in stats.items()}
    total = sum(chars.values())
    if total <= 0:
        raise DataError("natural_weights: the domains have no characters")
    return {name: c / total for name, c in chars.items()}
