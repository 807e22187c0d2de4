"""Caches that notice change: edit one corpus file and only what depends on it gets a new key
(and recomputes); touch nothing and everything is reused; add a domain on a user's checkpoint
and only the new expert trains (experts without replay: with it every expert reads every
corpus)."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from parammix_core import stages
from parammix_core.data import load_prepared
from parammix_core.stages.final import final_scores_ref
from parammix_core.stages.validate import validation_ref
from tests.parammix_core.bad_input import (
    build_pipeline_store,
    experiment,
    open_store,
    write_jsonl,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny pre-trained base with its tokenizer: a user's checkpoint folder."""
    exp, refs = build_pipeline_store(tmp_path_factory.mktemp("pipeline"))
    store = open_store(exp, tmp_path_factory.mktemp("cache"))
    out = tmp_path_factory.mktemp("checkpoint") / "base"
    shutil.copytree(store.local_dir(refs["base"]), out)
    load_prepared(store.local_dir(refs["data"])).tokenizer.save_pretrained(out)
    return out


def corpora(root: Path, names: str) -> dict[str, list[str]]:
    return {n: [str(write_jsonl(root / f"{n}.jsonl", seed=i))] for i, n in enumerate(names)}


def run(exp, store) -> dict:
    """The stages up to the experts, as a run calls them; each returns at once when its
    artifact is published."""
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = {d: stages.train_expert(exp, store, d, data, base) for d in exp.domains}
    return {"data": data, "base": base, **experts}


def created(store) -> dict[str, str]:
    return {m["key"]: m["created"] for m in store.artifacts()}


def append_document(path: Path) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "a new document " * 12}) + "\n")


def test_on_a_users_checkpoint_only_what_a_change_touches_recomputes(checkpoint, tmp_path):
    files = corpora(tmp_path, "ab")
    alone = {"model__checkpoint": str(checkpoint), "training__replay": 0.0}
    exp = experiment(files, tmp_path / "store", **alone)
    store = open_store(exp, tmp_path / "cache")
    first = run(exp, store)
    published = created(store)

    assert run(exp, store) == first  # nothing touched: every key the same, nothing redone
    assert created(store) == published

    append_document(Path(files["b"][0]))
    second = run(exp, store)
    assert second["data"] != first["data"] and second["b"] != first["b"]
    assert second["base"] == first["base"] and second["a"] == first["a"]  # reused, not retrained
    assert {k: created(store)[k] for k in published} == published

    (tmp_path / "c").mkdir()
    more = {**files, **corpora(tmp_path / "c", "c")}
    wider = experiment(more, tmp_path / "store", **alone)
    third = run(wider, store)
    assert third["a"] == second["a"] and third["b"] == second["b"]  # only c trains
    assert third["c"] not in {v for v in second.values()}
    assert {k: created(store)[k] for k in published} == published


def test_with_replay_an_edited_corpus_retrains_every_expert(checkpoint, tmp_path):
    files = corpora(tmp_path, "ab")
    exp = experiment(files, tmp_path / "store", model__checkpoint=str(checkpoint))
    assert exp.training.replay == 0.1  # the default: expert a reads b's rows too
    store = open_store(exp, tmp_path / "cache")
    first = run(exp, store)
    append_document(Path(files["b"][0]))
    second = run(exp, store)
    assert second["base"] == first["base"]
    assert second["a"] != first["a"] and second["b"] != first["b"]


def test_a_base_trained_here_depends_on_every_corpus(tmp_path):
    files = corpora(tmp_path, "ab")
    exp = experiment(files, tmp_path / "store")
    store = open_store(exp, tmp_path / "cache")
    first = run(exp, store)
    append_document(Path(files["b"][0]))
    second = run(exp, store)
    assert second["base"] != first["base"]
    assert second["a"] != first["a"] and second["b"] != first["b"]


def test_an_edit_that_keeps_size_and_mtime_is_seen_by_both_fingerprints(tmp_path):
    """`cp -p`, `rsync -t`, `touch -r` set an edited file's mtime back; its inode change time
    moves all the same (metadata used to reuse the stale data here)."""
    files = corpora(tmp_path, "ab")
    path = Path(files["b"][0])
    exp = experiment(files, tmp_path / "store")
    content = experiment(files, tmp_path / "store", data__fingerprint="content")
    before = stages.data_ref(exp), stages.data_ref(content)
    stat = path.stat()
    text = path.read_text()
    time.sleep(0.01)  # the ctime's clock ticks coarser than nanoseconds on some filesystems
    path.write_text(text.replace("alpha", "omega", 1))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same modification time
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert stages.data_ref(exp) != before[0]
    assert stages.data_ref(content) != before[1]
    assert stages.expert_ref(content, "a", before[1], before[1]) == stages.expert_ref(
        experiment(files, tmp_path / "s2", data__fingerprint="content"), "a", before[1], before[1]
    )


def test_editing_a_task_of_the_users_folder_gives_new_evaluation_keys(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "mine.yaml").write_text("task: mine\n")
    exp = experiment(
        corpora(tmp_path, "ab"), tmp_path / "store", evaluation__include_path=str(folder)
    )
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    key = stages.eval_ref(exp, [[0.5, 0.5]], data, base, [base, base])
    assert stages.eval_ref(exp, [[0.5, 0.5]], data, base, [base, base]) == key
    (folder / "mine.yaml").write_text("task: mine\nnum_fewshot: 1\n")
    assert stages.eval_ref(exp, [[0.5, 0.5]], data, base, [base, base]) != key


def test_corpora_on_a_private_s3_endpoint_are_read_with_the_stores_options(
    s3_server, tmp_path, monkeypatch
):
    """`s3://` corpus paths go through the store's storage_options (the endpoint) with the
    credentials from the environment, and their ETags are their fingerprints."""
    import s3fs

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only the config's storage_options name it
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = s3_server.bucket("corpora")
    fs = s3fs.S3FileSystem(**s3_server.storage_options(), skip_instance_cache=True)
    local = corpora(tmp_path, "ab")
    for name, (path,) in local.items():
        fs.put_file(path, f"{bucket}/{name}/part-0.jsonl")
    remote = {n: [f"s3://{bucket}/{n}/*.jsonl"] for n in local}
    exp = experiment(
        remote,
        f"s3://{bucket}/store",
        store__storage_options={"endpoint_url": s3_server.endpoint},
    )
    store = open_store(exp, tmp_path / "cache")
    data = stages.prepare_domains(exp, store)
    stats = store.load_json(data, "stats.json")
    assert set(stats) == {"a", "b"} and all(s["train_blocks"] > 0 for s in stats.values())
    same = experiment(local, tmp_path / "local-store")
    here = stages.prepare_domains(same, open_store(same, tmp_path / "cache2"))
    assert open_store(same, tmp_path / "c3").load_json(here, "stats.json") == stats

    with fs.open(f"{bucket}/b/part-0.jsonl", "ab") as f:
        f.write(json.dumps({"text": "one more document " * 10}).encode() + b"\n")
    assert stages.data_ref(exp) != data  # the ETag moved


def test_editing_a_tasks_data_file_gives_new_keys_to_every_stage_that_scores(tmp_path):
    """Data a task reads lives anywhere: named in the config (`data_files`) or in the folder's
    YAML. Rewriting it must never let an evaluation, a validation or a final score be reused."""
    data_dir, folder = tmp_path / "taskdata", tmp_path / "tasks"
    data_dir.mkdir()
    folder.mkdir()
    (data_dir / "mc.jsonl").write_text('{"q": "1+1", "label": 0}\n')
    (data_dir / "extra.jsonl").write_text('{"q": "2+2", "label": 0}\n')
    (folder / "mine.yaml").write_text(
        "task: mine\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: [{data_dir / 'mc.jsonl'}]\n"
    )
    exp = experiment(
        corpora(tmp_path, "ab"),
        tmp_path / "store",
        evaluation__include_path=str(folder),
        evaluation__tasks=[
            {"name": "mine", "group": "math", "metric": "acc"},
            {
                "name": "also_mine",
                "group": "code",
                "metric": "acc",
                "data_files": {"test": str(data_dir / "extra.jsonl")},
            },
        ],
    )
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)

    def keys() -> list[str]:
        return [
            stages.eval_ref(exp, [[0.5, 0.5]], data, base, [base, base]).key,
            validation_ref(exp, [[0.5, 0.5]], [base], data, base, [base, base]).key,
            final_scores_ref(exp, base, data).key,
        ]

    first = keys()
    assert keys() == first
    (data_dir / "mc.jsonl").write_text('{"q": "1+1", "label": 1}\n{"q": "3+3", "label": 0}\n')
    second = keys()
    assert all(a != b for a, b in zip(first, second, strict=True))
    (data_dir / "extra.jsonl").write_text('{"q": "2+2", "label": 1}\n{"q": "5+5", "label": 0}\n')
    assert all(a != b for a, b in zip(second, keys(), strict=True))


def test_new_weights_with_the_same_tokenizer_keep_the_prepared_data(checkpoint, tmp_path):
    """A newer pre-training checkpoint of the same model: a new base, the corpora not tokenized
    again (the data key covered the weights' files too). A changed tokenizer: new data."""
    mine = tmp_path / "ckpt"
    shutil.copytree(checkpoint, mine)
    files = corpora(tmp_path, "ab")
    exp = experiment(files, tmp_path / "store", model__checkpoint=str(mine))
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    weights = mine / "model.safetensors"
    os.utime(weights, ns=(0, weights.stat().st_mtime_ns + 10**9))  # new weights, same size
    assert stages.data_ref(exp) == data
    assert stages.base_ref(exp, data) != base
    base = stages.base_ref(exp, data)
    mtime = weights.stat().st_mtime_ns
    time.sleep(0.01)
    weights.write_bytes(weights.read_bytes()[::-1])  # other weights, same size...
    os.utime(weights, ns=(0, mtime))  # ...with the old mtime set back (cp -p, rsync -t)
    assert stages.base_ref(exp, data) != base
    tokenizer = mine / "tokenizer.json"
    os.utime(tokenizer, ns=(0, tokenizer.stat().st_mtime_ns + 10**9))
    assert stages.data_ref(exp) != data
