"""prepare_corpora: files, shapes, a clean held-out split, byte-for-byte determinism, token
shards read from disk a row at a time."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from parammix_core.config import DataConfig, DomainSpec
from parammix_core.data import (
    EOT,
    DataError,
    load_prepared,
    natural_weights,
    prepare_corpora,
    shards,
)
from parammix_core.data.shards import TokenBlocks
from parammix_core.train import sample_batch

SMALL = {
    "max_train_tokens": 20_000,
    "heldout_tokens": 1_024,
    "vocab_size": 512,
    "block_size": 64,
}
OUTPUTS = ("tokenizer/tokenizer.json", "heldout_texts.json", "stats.json")


def shard_blocks(out, stem):
    """A split's blocks read whole from its shard files, (N, T)."""
    files = sorted((out / "tokens").glob(f"{stem}-*.safetensors"))
    return torch.cat([load_file(f)["blocks"] for f in files])


def small_config(**overrides) -> DataConfig:
    return DataConfig(**{**SMALL, **overrides})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    messages: list[str] = []
    stats = prepare_corpora(small_config(), seed=7, out_dir=out, progress=messages.append)
    return out, stats, messages


def test_writes_files_with_shapes_and_dtypes(prepared):
    out, stats, messages = prepared
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert all(p.suffix == ".json" for p in (out / "tokenizer").iterdir())
    assert list(stats) == ["math", "code", "sft", "web"]
    assert json.loads((out / "stats.json").read_text()) == stats
    shards = sorted(p.name for p in (out / "tokens").iterdir())
    assert shards == sorted(
        f"{d}.{p}-00000.safetensors" for d in stats for p in ("train", "heldout")
    )
    assert not (out / ".buckets").exists()
    for d, s in stats.items():
        train, held = shard_blocks(out, f"{d}.train"), shard_blocks(out, f"{d}.heldout")
        assert train.dtype == held.dtype == torch.int32
        assert train.shape == (s["train_blocks"], 64)
        assert held.shape == (s["heldout_blocks"], 64)
        assert s["train_tokens"] == 20_000 and s["train_blocks"] == 20_000 // 64
        assert s["heldout_tokens"] >= 1_024 and s["heldout_blocks"] == s["heldout_tokens"] // 64
        assert int(train.min()) >= 0 and int(train.max()) < 512
    assert any(m.startswith("tokenizer:") for m in messages)


def test_heldout_blocks_are_the_heldout_documents(prepared):
    out, stats, _ = prepared
    data = load_prepared(out)
    assert data.domains == list(stats)
    tok = data.tokenizer
    for d in stats:
        texts = data.heldout_texts[d]
        assert len(texts) == stats[d]["heldout_documents"]
        stream = tok.decode(data.heldout[d].flatten().tolist())
        assert (EOT.join(texts) + EOT).startswith(stream)


def test_heldout_disjoint_from_train(prepared):
    out, stats, _ = prepared
    data = load_prepared(out)
    for d in stats:
        train_docs = set(
            data.tokenizer.decode(data.train[d].tensor().flatten().tolist()).split(EOT)
        )
        assert len(train_docs) > 10
        assert not train_docs & set(data.heldout_texts[d])


def test_deterministic_across_processes(prepared, tmp_path):
    out, _, _ = prepared
    code = (
        "import sys; from pathlib import Path; from parammix_core.config import DataConfig; "
        "from parammix_core.data import prepare_corpora; "
        f"prepare_corpora(DataConfig(**{SMALL!r}), seed=7, out_dir=Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    shards = sorted(p.name for p in (out / "tokens").iterdir())
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == shards
    for name in [*OUTPUTS, *(f"tokens/{s}" for s in shards)]:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_seed_changes_the_data(tmp_path):
    cfg = small_config(domains=[DomainSpec(name="m", builtin="math")])
    a = prepare_corpora(cfg, seed=1, out_dir=tmp_path / "a")
    b = prepare_corpora(cfg, seed=2, out_dir=tmp_path / "b")
    assert a["m"]["documents"] > 0 and b["m"]["documents"] > 0
    ta = shard_blocks(tmp_path / "a", "m.train")
    tb = shard_blocks(tmp_path / "b", "m.train")
    assert not torch.equal(ta, tb)


def test_natural_weights(prepared):
    _, stats, _ = prepared
    w = natural_weights(stats)
    total = sum(s["characters"] for s in stats.values())
    assert w == pytest.approx({d: s["characters"] / total for d, s in stats.items()})
    assert sum(w.values()) == pytest.approx(1.0)
    assert natural_weights({"a": {"characters": 3}, "b": {"characters": 1}}) == {
        "a": 0.75,
        "b": 0.25,
    }


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"body": t}) + "\n" for t in texts), encoding="utf-8")
    return str(path)


def test_user_corpus_with_existing_tokenizer(prepared, tmp_path):
    out, _, _ = prepared
    texts = [f"Document number {i} talks about topic {i % 7} at some length." for i in range(400)]
    spec = DomainSpec(name="mine", paths=[_jsonl(tmp_path / "c.jsonl", texts)], text_field="body")
    cfg = small_config(
        domains=[spec.model_copy(update={"max_documents": 300})],
        tokenizer=str(out / "tokenizer"),
        heldout_tokens=128,
    )
    stats = prepare_corpora(cfg, seed=0, out_dir=tmp_path / "out")["mine"]
    assert stats["documents"] == 300 and stats["dropped_duplicate"] == 0
    assert stats["train_documents"] + stats["heldout_documents"] == 300
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").read_bytes() == (
        out / "tokenizer" / "tokenizer.json"
    ).read_bytes()


def test_documents_cut_to_max_chars_are_reported_per_domain(prepared, tmp_path):
    """A book stored as one document loses all but its first max_chars: the log says so."""
    out, _, _ = prepared
    texts = [f"Document {i} is short but long enough to keep." for i in range(300)]
    texts += ["A long chapter line.\n" * 500, "Another long chapter.\n" * 400]
    spec = DomainSpec(name="books", paths=[_jsonl(tmp_path / "b.jsonl", texts)], text_field="body")
    cfg = small_config(domains=[spec], tokenizer=str(out / "tokenizer"), heldout_tokens=128)
    said: list[str] = []
    stats = prepare_corpora(cfg, seed=0, out_dir=tmp_path / "out", progress=said.append)
    assert stats["books"]["truncated"] == 2
    assert (
        "books: 302 of 302 documents kept (0 short, 0 duplicates); 2 cut to their first "
        f"data.max_chars = {cfg.max_chars:,}"
    ) in said


def test_domain_empty_after_cleaning(tmp_path):
    paths = [_jsonl(tmp_path / "t.jsonl", ["short", "also short"])]
    spec = DomainSpec(name="tiny", paths=paths, text_field="body")
    cfg = small_config(domains=[spec], tokenizer=None)
    with pytest.raises(DataError, match=r"domain 'tiny': no text left .*2 documents, 2 shorter"):
        prepare_corpora(cfg, seed=0, out_dir=tmp_path / "out")


def test_missing_or_bad_file_names_domain_and_file(tmp_path):
    spec = DomainSpec(name="gone", paths=[str(tmp_path / "missing.jsonl")])
    with pytest.raises(DataError, match=r"domain 'gone': .*missing\.jsonl: no such file"):
        prepare_corpora(small_config(domains=[spec]), seed=0, out_dir=tmp_path / "out")
    (tmp_path / "bad.jsonl").write_text('{"text": "' + "x" * 50 + '"}\n{oops\n')
    spec = DomainSpec(name="bad", paths=[str(tmp_path / "bad.jsonl")])
    with pytest.raises(DataError, match=r"domain 'bad': .*bad\.jsonl:2: invalid JSON"):
        prepare_corpora(small_config(domains=[spec]), seed=0, out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / ".buckets").exists()


def test_too_few_tokens_for_a_block(tmp_path):
    texts = [f"A short but valid document about things, number {i}." for i in range(6)]
    spec = DomainSpec(name="small", paths=[_jsonl(tmp_path / "s.jsonl", texts)], text_field="body")
    cfg = small_config(domains=[spec], vocab_size=300, block_size=256)
    with pytest.raises(DataError, match=r"domain 'small': the held-out split has \d+ tokens"):
        prepare_corpora(cfg, seed=0, out_dir=tmp_path / "out")


def test_load_prepared_names_bad_shard(prepared, tmp_path):
    out, _, _ = prepared
    shutil.copytree(out, tmp_path / "p")
    shard = tmp_path / "p" / "tokens" / "code.train-00000.safetensors"
    save_file({"blocks": load_file(shard)["blocks"].long()}, shard)
    with pytest.raises(DataError, match=r"code\.train-00000\.safetensors: tensor 'blocks' is I64"):
        load_prepared(tmp_path / "p")
    shard.unlink()
    with pytest.raises(DataError, match=r"code\.train-00000\.safetensors: missing"):
        load_prepared(tmp_path / "p")
    (tmp_path / "p" / "stats.json").unlink()
    with pytest.raises(DataError, match=r"stats.json: missing"):
        load_prepared(tmp_path / "p")


def test_load_prepared_refuses_a_lost_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 64 * 4 * 100)  # 100 blocks a shard
    cfg = small_config(domains=[DomainSpec(name="m", builtin="math")])
    prepare_corpora(cfg, seed=3, out_dir=tmp_path)
    (tmp_path / "tokens" / "m.train-00001.safetensors").unlink()
    with pytest.raises(DataError, match=r"m\.train-\*: 212 blocks .* in 3 shards, expected 312"):
        load_prepared(tmp_path)


def test_on_disk_blocks_equal_the_shards_bit_for_bit(prepared, tmp_path, monkeypatch):
    out, stats, _ = prepared
    monkeypatch.setattr(shards, "SHARD_BYTES", 64 * 4 * 100)  # 100 blocks a shard
    prepare_corpora(small_config(), seed=7, out_dir=tmp_path)
    assert len(list((tmp_path / "tokens").glob("math.train-*"))) == 4  # 312 blocks
    whole, split = load_prepared(out), load_prepared(tmp_path)
    for d in stats:
        blocks = split.train[d]
        expected = shard_blocks(out, f"{d}.train")  # one shard, read whole
        assert isinstance(blocks, TokenBlocks) and blocks.shape == expected.shape
        assert len(blocks) == expected.shape[0] and blocks.dtype == torch.int32
        assert torch.equal(blocks.tensor(), expected)
        assert torch.equal(whole.train[d].tensor(), expected)
        assert torch.equal(torch.stack([blocks[i] for i in range(len(blocks))]), expected)
        assert torch.equal(blocks[95:205], expected[95:205])  # across two shard boundaries
        assert torch.equal(blocks[-1], expected[-1]) and blocks[-3:].shape == (3, 64)
        assert torch.equal(split.heldout[d], whole.heldout[d])
    with pytest.raises(IndexError):
        split.train["math"][len(split.train["math"])]


def test_training_samples_from_on_disk_blocks(prepared):
    out, stats, _ = prepared
    data = load_prepared(out)
    gen = torch.Generator().manual_seed(0)
    weights = torch.full((len(stats),), 1 / len(stats), dtype=torch.float64)
    batch = sample_batch([data.train[d] for d in stats], weights, 8, gen)
    assert batch.shape == (8, 64) and batch.dtype == torch.int32
