"""Tokenizer: byte-level round trip, one eos, balanced and deterministic training."""

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from parammix_core.data import EOT, DataError, builtin_texts, load_tokenizer, train_tokenizer
from parammix_core.data.tokenizer import balanced_sample


@pytest.fixture(scope="module")
def corpora():
    return {n: builtin_texts(n, seed=0, target_chars=40_000) for n in ("math", "code", "sft")}


@pytest.fixture(scope="module")
def tok(corpora):
    return train_tokenizer(corpora, vocab_size=512, seed=0)


def test_special_tokens(tok):
    eos = tok.convert_tokens_to_ids(EOT)
    assert tok.eos_token == tok.bos_token == tok.pad_token == tok.unk_token == EOT
    assert tok.eos_token_id == eos == 0
    assert tok.encode(f"a{EOT}b", add_special_tokens=False).count(eos) == 1
    assert len(tok) == 512


def test_round_trip(tok):
    texts = [
        "Question: What is 37 + 45?\nAnswer: 37 + 45 = 82. The answer is 82.",
        "def f(x):\n\tif x:\n        return  x  # two  spaces\n\n\n    pass\n",
        "  leading spaces, trailing spaces   ",
        "Unseen words: zyzzyva quixotic {[()]} ~`^|\\",
    ]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
    assert tok.encode("hello", add_special_tokens=True) == tok.encode(
        "hello", add_special_tokens=False
    )


def test_training_is_deterministic(corpora, tok):
    again = train_tokenizer(corpora, vocab_size=512, seed=0)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_balanced_sample_gives_each_domain_the_same_characters():
    texts = {"big": ["x" * 100] * 50, "small": ["y" * 30] * 10}
    sample = balanced_sample(texts, seed=0, chars_per_domain=10_000)
    assert sum(len(s) for s in sample if s[0] == "x") == 300
    assert sum(len(s) for s in sample if s[0] == "y") == 300
    capped = balanced_sample(texts, seed=0, chars_per_domain=120)
    assert [len(s) for s in capped] == [100, 20, 30, 30, 30, 30]


def test_train_errors(corpora):
    with pytest.raises(DataError, match=r"no text for domains \['empty'\]"):
        train_tokenizer({**corpora, "empty": []}, vocab_size=512, seed=0)
    with pytest.raises(DataError, match="vocab_size 100 is below"):
        train_tokenizer(corpora, vocab_size=100, seed=0)


def test_save_and_load(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json"]
    loaded = load_tokenizer(tmp_path)
    assert loaded.eos_token_id == tok.eos_token_id
    text = "class A:\n    x = 1\n"
    assert loaded.encode(text, add_special_tokens=False) == tok.encode(
        text, add_special_tokens=False
    )


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path / "nowhere")
    bare = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    PreTrainedTokenizerFast(tokenizer_object=bare).save_pretrained(tmp_path / "no_eos")
    with pytest.raises(DataError, match="no eos token"):
        load_tokenizer(tmp_path / "no_eos")
