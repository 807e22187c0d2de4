"""A preparation stopped mid-tokenisation resumes after its last complete shard, and ends with
the same bytes as one that never stopped."""

import json

import pytest

from parammix_core.config import DataConfig, DomainSpec
from parammix_core.data import prepare_corpora, shards
from parammix_core.data.resume import RESUME_DIR

SMALL = {"max_train_tokens": 20_000, "heldout_tokens": 1_024, "vocab_size": 512, "block_size": 64}
DOMAINS = [DomainSpec(name="m", builtin="math"), DomainSpec(name="c", builtin="code")]


class Stopped(Exception):
    """Stands in for a killed process."""


def config() -> DataConfig:
    return DataConfig(domains=DOMAINS, **SMALL)


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 64 * 4 * 100)  # 100 blocks a shard


@pytest.fixture
def reference(tmp_path, small_shards):
    out = tmp_path / "reference"
    prepare_corpora(config(), seed=5, out_dir=out)
    return out


def stop_at(monkeypatch, stem: str, shard: int) -> None:
    """Stop the run while it writes `stem`'s shard `shard`, leaving that file cut short."""
    flush = shards.BlockWriter._flush

    def flush_or_stop(self):
        if self.stem == stem and self.shards == shard:
            (self.folder / shards.shard_name(stem, shard)).write_bytes(b"\x10\x00\x00")
            raise Stopped
        flush(self)

    monkeypatch.setattr(shards.BlockWriter, "_flush", flush_or_stop)


def files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def stamps(folder, stem):
    return {p.name: p.stat().st_mtime_ns for p in (folder / "tokens").glob(f"{stem}-*")}


def test_resumes_after_the_last_complete_shard(tmp_path, reference, monkeypatch):
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        stop_at(patch, "c.train", 2)
        with pytest.raises(Stopped):
            prepare_corpora(config(), seed=5, out_dir=out)
    journal = json.loads((out / RESUME_DIR / "c.train.json").read_text())
    assert (journal["shards"], journal["blocks"], journal["done"]) == (2, 200, False)
    assert journal["tokens"] == 200 * 64 and 0 < journal["skip"] <= journal["tokens"]
    assert json.loads((out / RESUME_DIR / "m.train.json").read_text())["done"] is True
    before = {**stamps(out, "m.train"), **stamps(out, "c.train")}
    assert len(before) == 4 + 3  # m whole, c's two shards and the one cut short

    said: list[str] = []
    stats = prepare_corpora(config(), seed=5, out_dir=out, progress=said.append)
    assert files(out) == files(reference)  # same bytes; no journal, bucket or stray shard left
    assert stats == json.loads((reference / "stats.json").read_text())
    after = {**stamps(out, "m.train"), **stamps(out, "c.train")}
    kept = [name for name in before if name != "c.train-00002.safetensors"]
    assert {n: after[n] for n in kept} == {n: before[n] for n in kept}  # not written again
    assert "m: resuming after 4 training shard(s) on disk (20,000 tokens" in "\n".join(said)
    assert "c: resuming after 2 training shard(s) on disk (12,800 tokens" in "\n".join(said)


def test_an_untrustworthy_journal_starts_the_split_again(tmp_path, reference, monkeypatch):
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        stop_at(patch, "m.train", 3)
        with pytest.raises(Stopped):
            prepare_corpora(config(), seed=5, out_dir=out)
    journal = out / RESUME_DIR / "m.train.json"
    other = {**json.loads(journal.read_text()), "tokenizer": "0" * 64}
    journal.write_text(json.dumps(other))
    said: list[str] = []
    prepare_corpora(config(), seed=5, out_dir=out, progress=said.append)
    assert files(out) == files(reference)
    assert not any("resuming" in line for line in said)


def test_a_damaged_shard_before_the_journal_point_starts_the_split_again(
    tmp_path, reference, monkeypatch
):
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        stop_at(patch, "m.train", 3)
        with pytest.raises(Stopped):
            prepare_corpora(config(), seed=5, out_dir=out)
    shard = out / "tokens" / shards.shard_name("m.train", 1)
    shard.write_bytes(shard.read_bytes()[:-64])
    said: list[str] = []
    prepare_corpora(config(), seed=5, out_dir=out, progress=said.append)
    assert files(out) == files(reference)
    assert not any("resuming" in line for line in said)
