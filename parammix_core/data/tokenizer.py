"""The tokenizer: a byte-level BPE trained here, or an existing HF fast tokenizer.

Byte-level BPE never meets an unknown character and decodes back to the exact input, which
the code domain (indentation, tabs) needs. One special token, "<|endoftext|>", separates
documents and serves as bos/eos/pad/unk. The trainer sees the same number of characters from
every domain, so the vocabulary does not favour the biggest corpus.
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from parammix_core.data.errors import DataError

EOT = "<|endoftext|>"
# Characters per domain the BPE trainer sees: enough for a few thousand merges, and it keeps
# training at a few seconds however large the corpora are.
SAMPLE_CHARS_PER_DOMAIN = 400_000


def balanced_sample(
    texts_by_domain: dict[str, list[str]], seed: int, chars_per_domain: int
) -> list[str]:
    """Documents drawn at random from each domain until each gives the same number of
    characters: min(chars_per_domain, the smallest domain's total)."""
    budget = min(chars_per_domain, *(sum(map(len, t)) for t in texts_by_domain.values()))
    sample: list[str] = []
    for name, texts in texts_by_domain.items():
        order = list(range(len(texts)))
        random.Random(f"{seed}:{name}").shuffle(order)
        taken = 0
        for i in order:
            if taken >= budget:
                break
            piece = texts[i][: budget - taken]
            sample.append(piece)
            taken += len(piece)
    return sample


def train_tokenizer(
    texts_by_domain: dict[str, list[str]], vocab_size: int, seed: int
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on a balanced sample of every domain (deterministic)."""
    empty = [name for name, texts in texts_by_domain.items() if not any(texts)]
    if not texts_by_domain or empty:
        raise DataError(f"cannot train a tokenizer: no text for domains {empty or 'any'}")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise DataError(
            f"vocab_size {vocab_size} is below the byte alphabet plus {EOT} ({len(alphabet) + 1})"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=alphabet,
        min_frequency=2,
        show_progress=False,
    )
    sample = balanced_sample(texts_by_domain, seed, SAMPLE_CHARS_PER_DOMAIN)
    tok.train_from_iterator(sample, trainer=trainer, length=len(sample))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        unk_token=EOT,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """An existing HF tokenizer; it must be fast (Rust) and define an eos token.

    A missing pad token is set to eos, because packed batches need one and eos is the
    document separator anyway.
    """
    local = Path(path)
    if (local.is_absolute() or str(path).startswith(".")) and not local.exists():
        raise DataError(f"{path}: cannot load a tokenizer: no such directory")  # not "Repo id ..."
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot load a tokenizer: {err}") from err
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise DataError(f"{path}: {type(tok).__name__} is not a fast tokenizer")
    if tok.eos_token_id is None:
        raise DataError(f"{path}: the tokenizer has no eos token")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
