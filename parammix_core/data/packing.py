"""Documents packed into token blocks the way the domain corpora are: each document tokenised
whole with one eos appended, the documents concatenated and cut into blocks of `block_size`
(the remainder dropped). Used for a target corpus of your own (`search.target`), read as a
stream so only `max_blocks` blocks of it are ever tokenised."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import PreTrainedTokenizerBase

from parammix_core.data.errors import DataError


def pack_texts(
    texts: Iterable[str], tokenizer: PreTrainedTokenizerBase, block_size: int, max_blocks: int
) -> torch.Tensor:
    """The first (at most) `max_blocks` blocks of `texts`, shape (N, block_size) int64.

    Raises:
        DataError: when the texts hold fewer than one block of tokens.
    """
    limit = block_size * max_blocks
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.append(tokenizer.eos_token_id)
        if len(ids) >= limit:
            break
    n = min(len(ids) // block_size, max_blocks)
    if n == 0:
        raise DataError(f"{len(ids)} tokens in all, fewer than one block of {block_size}")
    return torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)
