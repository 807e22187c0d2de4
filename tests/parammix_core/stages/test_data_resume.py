"""prepare_domains stopped mid-tokenisation: the next run resumes from the shards left in the
artifact's build folder, publishes the same bytes as an unbroken run, and removes that folder."""

import pytest

from parammix_core import stages
from parammix_core.data import shards
from parammix_core.stages.data import build_dir
from tests.parammix_core.bad_input import corpus_of, experiment, open_store, snapshot


class Stopped(Exception):
    """Stands in for a killed worker."""


def published_files(store, ref) -> dict[str, str]:
    return snapshot(store.local_dir(ref))


def test_a_stopped_preparation_resumes_and_publishes_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 32 * 4 * 10)  # 10 blocks a shard
    corpus = corpus_of(tmp_path)
    unbroken = experiment(corpus, tmp_path / "unbroken")
    reference = open_store(unbroken, tmp_path / "cache-unbroken")
    expected = published_files(reference, stages.prepare_domains(unbroken, reference))

    exp = experiment(corpus, tmp_path / "store")
    store = open_store(exp, tmp_path / "cache")
    flush = shards.BlockWriter._flush

    def flush_or_stop(self):
        if self.stem == "b.train" and self.shards == 3:
            raise Stopped
        flush(self)

    with monkeypatch.context() as patch:
        patch.setattr(shards.BlockWriter, "_flush", flush_or_stop)
        with pytest.raises(Stopped):
            stages.prepare_domains(exp, store)
    work = build_dir(store, stages.data_ref(exp))
    assert sorted(p.name for p in (work / "tokens").glob("b.train-*")) == [
        shards.shard_name("b.train", i) for i in range(3)
    ]

    said: list[str] = []
    ref = stages.prepare_domains(exp, store, lambda _i, _n, msg: said.append(msg))
    assert "b: resuming after 3 training shard(s) on disk (960 tokens" in "\n".join(said)
    assert published_files(store, ref) == expected
    assert not any(".resume" in name or ".buckets" in name for name in expected)
    assert not work.exists()
