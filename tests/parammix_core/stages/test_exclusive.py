"""Two runs of one config on one machine: the second waits while the first builds into a local
folder (data shards in the shared cache, training checkpoints), then uses what it left."""

import threading
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from parammix_core import stages
from parammix_core.stages.data import build_dir
from parammix_core.stages.launch import holding
from tests.parammix_core.bad_input import corpus_of, experiment, open_store, snapshot

WAIT = 3.0  # seconds a blocked stage is watched for: it must not finish while the lock is held


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target() -> None:
        try:
            out["ref"] = fn(*args)
        except BaseException as err:  # reported by the test, not lost in the thread
            out["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def test_a_second_preparation_waits_for_the_first_and_publishes_the_same_bytes(tmp_path: Path):
    corpus = corpus_of(tmp_path)
    first = experiment(corpus, tmp_path / "first")
    second = experiment(corpus, tmp_path / "second")
    cache = tmp_path / "cache"  # two stores, one machine's cache: one build folder
    store_a, store_b = open_store(first, cache), open_store(second, cache)
    ref = stages.data_ref(first)
    folder = build_dir(store_a, ref)
    folder.parent.mkdir(parents=True)

    with FileLock(f"{folder}.lock"):  # another process is building this artifact
        thread, out = in_thread(stages.prepare_domains, second, store_b)
        thread.join(WAIT)
        assert thread.is_alive() and not out  # waiting, not building beside it
        assert not folder.exists() and not store_b.exists(ref)
    thread.join(120)
    assert out == {"ref": ref}
    assert stages.prepare_domains(first, store_a) == ref
    assert snapshot(store_a.local_dir(ref)) == snapshot(store_b.local_dir(ref))
    assert not folder.exists()


def test_a_second_training_of_the_same_artifact_waits_for_the_first(tmp_path: Path):
    exp = experiment(corpus_of(tmp_path), tmp_path / "store")
    store = open_store(exp, tmp_path / "cache")
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    ref = stages.expert_ref(exp, "a", data, base)
    work = store.work_dir(ref)

    with FileLock(f"{work}.lock"):  # another flow is training this expert
        thread, out = in_thread(stages.train_expert, exp, store, "a", data, base)
        thread.join(WAIT)
        assert thread.is_alive() and not out
        assert list(work.iterdir()) == [] and not store.exists(ref)
    thread.join(120)
    assert out == {"ref": ref} and store.exists(ref)


def test_a_launched_rank_trains_under_its_parents_lock(tmp_path: Path, monkeypatch):
    folder = tmp_path / "work"
    with holding(folder), pytest.raises(Timeout):  # no launcher: this process takes the lock
        FileLock(f"{folder}.lock").acquire(timeout=0.2)

    def rank() -> None:
        with holding(folder):
            pass

    monkeypatch.setenv("WORLD_SIZE", "2")  # inside a launched rank
    with FileLock(f"{folder}.lock"):  # its parent holds the lock while the ranks train
        thread, out = in_thread(rank)
        thread.join(WAIT)  # taking the lock here would wait for the parent, i.e. for ever
        assert not thread.is_alive() and out == {"ref": None}
