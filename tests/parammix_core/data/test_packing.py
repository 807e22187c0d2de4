"""Target corpora packed as the domain corpora are: eos after each document, fixed blocks."""

import pytest
import torch

from parammix_core.data import DataError
from parammix_core.data.packing import pack_texts


class CharTokenizer:
    """One id per character (its code point), eos 0."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        assert not add_special_tokens
        return {"input_ids": [ord(c) for c in text]}


def test_documents_are_joined_by_eos_and_cut_into_blocks():
    blocks = pack_texts(["abc", "de", "fghij"], CharTokenizer(), block_size=4, max_blocks=10)
    a, b, c, d, e, f, g, h, i, j = (ord(x) for x in "abcdefghij")
    want = torch.tensor([[a, b, c, 0], [d, e, 0, f], [g, h, i, j]])  # the last eos is dropped
    assert torch.equal(blocks, want)


def test_reading_stops_at_max_blocks():
    def texts():
        yield "abcdefgh"
        raise AssertionError("read past the blocks asked for")

    blocks = pack_texts(texts(), CharTokenizer(), block_size=3, max_blocks=2)
    assert blocks.shape == (2, 3)


def test_fewer_tokens_than_a_block_are_refused():
    with pytest.raises(DataError, match="3 tokens in all, fewer than one block of 8"):
        pack_texts(["ab"], CharTokenizer(), block_size=8, max_blocks=2)
