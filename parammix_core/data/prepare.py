"""prepare_domains: per-domain corpora -> tokenizer -> packed token blocks, in bounded memory.

Per domain, in config order: stream documents (built-in generator or user files), cap at
`max_documents`, clean each one, and shuffle them with a seed derived from (seed, domain
name) by an external shuffle (`shuffle.py`: bucket files on disk, one bucket in memory at a
time). Then split by whole documents: the first ones of the shuffled order are held out until
they hold `heldout_tokens` tokens, the rest is training text, capped at `max_train_tokens`.
Every document gets one eos appended, documents are concatenated and cut into blocks of
`block_size` (the remainder is dropped).

The tokenizer is trained (unless one is configured) on training documents only, which needs
the split before any tokenizer exists. So the split runs in two steps: a generous pool of
the first documents (`heldout_tokens` * HELDOUT_POOL_CHARS_PER_TOKEN characters, at most half
the documents) is kept away from the tokenizer, and after training the held-out set is the
shortest prefix of that pool with enough tokens; the rest of the pool goes to training. The
trainer draws from the documents right after the pool, TOKENIZER_SAMPLE_CHARS in all.

Memory holds one bucket of text, one shard of tokens, the held-out pools, the tokenizer's
sample and, with dedup, an 8-byte digest per kept document: not the corpus.

Output directory (what the trainer and evaluator read; no pickle anywhere):

    tokenizer/              save_pretrained of a fast tokenizer (JSON files)
    tokens/<domain>.train-00000.safetensors, ...    one (n, block_size) int32 tensor
    tokens/<domain>.heldout-00000.safetensors, ...  "blocks" per shard (shards.py)
    heldout_texts.json      {domain: [held-out documents as cleaned text]}
    stats.json              {domain: counts}, in config order (written last)

The buckets live in `.buckets/` inside the output directory while it is written and are
removed at the end. Same config and seed give byte-identical shards and tokenizer.json.
Preparing again into the directory of a stopped run resumes each domain's training split
after its last complete shard (`pack.py`, journals in `.resume/`, removed when complete).
"""

from __future__ import annotations

import itertools
import json
import shutil
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from fsspec.core import OpenFile
from transformers import PreTrainedTokenizerFast

from parammix_core.config import DataConfig, DomainSpec
from parammix_core.data.clean import Cleaner
from parammix_core.data.errors import DataError
from parammix_core.data.loaders import corpus_files, iter_file
from parammix_core.data.pack import TOKENS_DIR, Domain, pack_domain
from parammix_core.data.resume import RESUME_DIR
from parammix_core.data.shards import TokenBlocks, open_blocks
from parammix_core.data.shuffle import bucket_count, read_shuffled, write_buckets
from parammix_core.data.sources import builtin_texts
from parammix_core.data.tokenizer import load_tokenizer, train_tokenizer

# Characters generated per wanted token for built-in domains. Our BPE gives 2.5-3.5
# characters per token; 5 leaves room for that and for documents lost to dedup.
CHARS_PER_TOKEN = 5
# Upper bound on characters per token for sizing the held-out pool (long tokens of big
# vocabularies included), so the pool nearly always holds `heldout_tokens`.
HELDOUT_POOL_CHARS_PER_TOKEN = 8
# Characters of training documents, over all domains (an equal share each), that the
# tokenizer trainer draws its balanced sample from: a bound on memory, far above the
# sample itself (tokenizer.SAMPLE_CHARS_PER_DOMAIN).
TOKENIZER_SAMPLE_CHARS = 50_000_000
# Bytes of text per byte of a compressed corpus file, to size the shuffle's buckets.
COMPRESSION_GUESS = 4

BUCKETS_DIR = ".buckets"
HELDOUT_FILE = "heldout_texts.json"
STATS_FILE = "stats.json"
TOKENIZER_DIR = "tokenizer"


@dataclass
class PreparedData:
    """A prepared corpus directory, loaded: blocks per domain plus what made them."""

    tokenizer: PreTrainedTokenizerFast
    train: dict[str, TokenBlocks]  # domain -> (N_train, block_size) int32, rows read from disk
    heldout: dict[str, torch.Tensor]  # domain -> (N_heldout, block_size) int32, in memory
    heldout_texts: dict[str, list[str]]
    stats: dict[str, dict[str, int]]

    @property
    def domains(self) -> list[str]:
        return list(self.stats)


def domain_seed(seed: int, name: str) -> int:
    """A per-domain seed: two domains built from the same generator still differ."""
    return zlib.crc32(f"{seed}:{name}".encode())


def _source(
    spec: DomainSpec, cfg: DataConfig, seed: int, storage_options: dict | None
) -> tuple[Iterable[str], int]:
    """The domain's raw documents (lazily for files) and an estimate of their bytes."""
    if spec.builtin is not None:
        want = (cfg.max_train_tokens + cfg.heldout_tokens) * CHARS_PER_TOKEN
        docs = builtin_texts(spec.builtin, domain_seed(seed, spec.name), want)
        return docs, sum(map(len, docs))
    files = corpus_files(spec.paths, storage_options or {})
    size = sum(map(_text_bytes, files))
    docs = (doc for f in files for doc in iter_file(f, spec.text_field))
    return docs, size


def _text_bytes(f: OpenFile) -> int:
    """About how many bytes of text a corpus file holds (0 if unknown: reading it will name
    the problem)."""
    try:
        size = f.fs.size(f.path) or 0
    except OSError:
        return 0
    return size * (COMPRESSION_GUESS if f.compression else 1)


def _shuffle_domain(
    spec: DomainSpec, cfg: DataConfig, seed: int, scratch: Path, storage_options: dict | None
) -> tuple[list[Path], dict[str, int]]:
    """Pass 1: clean the domain's documents into shuffle buckets; returns them and counts."""
    clean = Cleaner(cfg.min_chars, cfg.max_chars, cfg.dedup)
    counts = {"documents": 0, "kept": 0, "characters": 0}

    def cleaned(raw: Iterable[str]) -> Iterator[str]:
        for doc in itertools.islice(raw, spec.max_documents):
            counts["documents"] += 1
            if (text := clean(doc)) is not None:
                counts["kept"] += 1
                counts["characters"] += len(text)
                yield text

    try:
        raw, size = _source(spec, cfg, seed, storage_options)
        buckets = write_buckets(
            cleaned(raw), domain_seed(seed, spec.name), scratch / spec.name, bucket_count(size)
        )
    except DataError as err:
        raise DataError(f"domain {spec.name!r}: {err}") from None
    return buckets, {**counts, **clean.counts}


def _check_kept(name: str, paths: list[str], counts: dict[str, int], min_chars: int) -> None:
    if counts["documents"] == 0:
        raise DataError(f"domain {name!r}: no documents in {paths} (empty files)")
    why = (
        f"{counts['documents']} documents, {counts['dropped_short']} shorter than "
        f"min_chars={min_chars}, {counts['dropped_duplicate']} duplicates"
    )
    if counts["kept"] == 0:
        raise DataError(f"domain {name!r}: no text left after cleaning ({why})")
    if counts["kept"] < 2:
        raise DataError(
            f"domain {name!r}: 1 document left after cleaning ({why}); the held-out split "
            "and the training text need one each"
        )


def _pool(docs: Iterator[str], kept: int, heldout_tokens: int) -> list[str]:
    """The leading documents kept away from the tokenizer for the held-out split."""
    want = heldout_tokens * HELDOUT_POOL_CHARS_PER_TOKEN
    limit = max(1, kept // 2)
    pool: list[str] = []
    chars = 0
    for doc in itertools.islice(docs, limit):
        pool.append(doc)
        chars += len(doc)
        if chars >= want:
            break
    return pool


def _take_chars(docs: Iterator[str], budget: int) -> list[str]:
    taken: list[str] = []
    chars = 0
    for doc in docs:
        if chars >= budget:
            break
        taken.append(doc)
        chars += len(doc)
    return taken


def prepare_corpora(
    cfg: DataConfig,
    seed: int,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    storage_options: dict | None = None,
) -> dict:
    """Build, tokenise and pack every domain of `cfg` into `out_dir`; return the stats.
    Corpus URLs are read with `storage_options` (the store's endpoint and credentials).
    An `out_dir` left by a stopped run with the same inputs is resumed, not started over.

    Raises DataError for a domain with no text after cleaning, or with too few tokens for
    one held-out block or one training block.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / BUCKETS_DIR
    try:
        return _prepare(
            cfg, seed, out_dir, scratch, progress or (lambda _msg: None), storage_options
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _prepare(
    cfg: DataConfig,
    seed: int,
    out_dir: Path,
    scratch: Path,
    say: Callable[[str], None],
    storage_options: dict | None,
) -> dict:
    stats: dict[str, dict[str, int]] = {}
    domains: list[Domain] = []
    for spec in cfg.domains:
        buckets, counts = _shuffle_domain(spec, cfg, seed, scratch, storage_options)
        _check_kept(spec.name, spec.paths, counts, cfg.min_chars)
        kept = counts["kept"]
        pool = _pool(read_shuffled(buckets), kept, cfg.heldout_tokens)
        domains.append(Domain(spec.name, buckets, kept, pool))
        stats[spec.name] = {
            "documents": counts["documents"],
            **{k: counts[k] for k in ("dropped_short", "dropped_duplicate", "truncated")},
            "characters": counts["characters"],
        }
        cut = counts["truncated"]
        say(
            f"{spec.name}: {kept:,} of {stats[spec.name]['documents']:,} documents kept "
            f"({counts['dropped_short']:,} short, {counts['dropped_duplicate']:,} duplicates)"
            + (f"; {cut:,} cut to their first data.max_chars = {cfg.max_chars:,}" if cut else "")
        )

    tokenizer = _tokenizer(cfg, seed, domains, say)
    heldout_texts: dict[str, list[str]] = {}
    for domain in domains:
        heldout_texts[domain.name], counts = pack_domain(domain, tokenizer, cfg, out_dir, say)
        stats[domain.name].update(counts)
        shutil.rmtree(scratch / domain.name)
        say(
            f"{domain.name}: {counts['train_blocks']:,} training and "
            f"{counts['heldout_blocks']:,} held-out blocks of {cfg.block_size}"
        )

    tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)
    _write_json(out_dir / HELDOUT_FILE, heldout_texts)
    _write_json(out_dir / STATS_FILE, stats)
    shutil.rmtree(out_dir / RESUME_DIR, ignore_errors=True)  # complete: nothing to resume
    return stats


def _tokenizer(
    cfg: DataConfig, seed: int, domains: list[Domain], say: Callable[[str], None]
) -> PreTrainedTokenizerFast:
    """The configured tokenizer, or one trained on each domain's documents after its pool."""
    if cfg.tokenizer is not None:
        tokenizer = load_tokenizer(cfg.tokenizer)
        say(f"tokenizer: loaded {cfg.tokenizer} ({len(tokenizer):,} tokens)")
        return tokenizer
    share = TOKENIZER_SAMPLE_CHARS // len(domains)
    sample = {
        d.name: _take_chars(itertools.islice(read_shuffled(d.buckets), len(d.pool), None), share)
        for d in domains
    }
    tokenizer = train_tokenizer(sample, cfg.vocab_size, seed)
    say(f"tokenizer: trained byte-level BPE, {len(tokenizer):,} tokens")
    return tokenizer


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
    """Read what `prepare_corpora` wrote (safetensors and JSON only). Training blocks stay
    on disk (rows are read when sampled); the held-out blocks are read into memory
    (`heldout_tokens` per domain, no more than the held-out texts loaded beside them)."""
    out_dir = Path(out_dir)
    stats = _read_json(out_dir / STATS_FILE)
    heldout_texts = _read_json(out_dir / HELDOUT_FILE)
    train: dict[str, TokenBlocks] = {}
    heldout: dict[str, torch.Tensor] = {}
    tokens = out_dir / TOKENS_DIR
    for name, s in stats.items():
        train[name] = open_blocks(tokens, f"{name}.train", s["train_blocks"])
        heldout[name] = open_blocks(tokens, f"{name}.heldout", s["heldout_blocks"]).tensor()
        if name not in heldout_texts:
            raise DataError(f"{out_dir / HELDOUT_FILE}: no entry for domain {name!r}")
    return PreparedData(
        tokenizer=load_tokenizer(out_dir / TOKENIZER_DIR),
        train=train,
        heldout=heldout,
        heldout_texts=heldout_texts,
        stats=stats,
    )


def natural_weights(stats: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mixture weights in proportion to each domain's cleaned characters (after the cut to
    `max_chars` and the `max_documents` cap, before the token caps): the "natural
    proportions" of the text the runs can read. For built-in domains that size is what was
    generated or found, so they come out near uniform."""
    chars = {name: s["characters"] for name, s in stats.items()}
    total = sum(chars.values())
    if total <= 0:
        raise DataError("natural_weights: the domains have no characters")
    return {name: c / total for name, c in chars.items()}
