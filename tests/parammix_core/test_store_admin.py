"""list / verify / gc on both backends: a local folder and a real S3 server."""

import json
import os
import time
from pathlib import Path

import pytest

from parammix_core.stages.exclusive import one_at_a_time
from parammix_core.store import ArtifactRef, Store, StoreError
from parammix_core.store_admin import collect, find_garbage, list_artifacts, verify_all

UPLOAD_A = "files-00000000000000aa"
UPLOAD_B = "files-00000000000000bb"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    server = request.getfixturevalue("s3_server")
    return Store(f"s3://{server.bucket('admin')}/s", server.storage_options(), cache_dir=tmp_path)


def _publish(store: Store, name: str, payload: dict, stage: str = "expert") -> ArtifactRef:
    ref = ArtifactRef.for_spec(stage, name, payload)
    src = store.staging(ref)
    (src / "data.json").write_text(json.dumps(payload))
    return store.publish(ref, src, info={"n": name})


def _write(store: Store, path: str, data: bytes) -> None:
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, data)


def test_list_names_stage_and_config_hash(store: Store):
    a = _publish(store, "a", {"x": 1})
    b = _publish(store, "b", {"x": 2}, stage="evals")
    rows, damaged = list_artifacts(store)
    assert [r["path"] for r in rows] == [b.path, a.path]
    assert [r["config_hash"] for r in rows] == [b.key[:12], a.key[:12]]
    assert [r["stage"] for r in rows] == ["evals", "expert"] and damaged == []
    assert rows[1]["bytes"] == len('{"x": 1}')


def test_verify_finds_the_damaged_artifact(store: Store):
    good = _publish(store, "good", {"x": 1})
    bad = _publish(store, "bad", {"x": 2})
    store.fs.pipe_file(store.file_path(bad, "data.json"), b'{"x": 3}')
    results = dict(verify_all(store))
    assert results[good.path] is None
    assert "data.json: sha256 does not match" in results[bad.path]


def test_a_manifest_that_is_not_json_is_reported_and_the_rest_checked(store: Store):
    good = _publish(store, "good", {"x": 1})
    bad = _publish(store, "bad", {"x": 2})
    store.fs.pipe_file(f"{store.root}/{bad.path}/MANIFEST.json", b"{not json")
    results = dict(verify_all(store))
    assert results == {good.path: None, bad.path: results[bad.path]}
    assert "MANIFEST.json is not valid JSON" in results[bad.path]
    rows, damaged = list_artifacts(store)
    assert [r["path"] for r in rows] == [good.path]
    assert [path for path, _ in damaged] == [bad.path]
    found = find_garbage(store, older_than=0)
    assert [(g.path, g.deletable) for g in found] == [(bad.path, False)]
    assert collect(store, found) == 0
    store.fs.invalidate_cache()
    assert store.fs.exists(store.file_path(good, "data.json"))
    assert store.fs.exists(f"{store.root}/{bad.path}/MANIFEST.json")


def test_gc_finds_only_leftovers_and_deletes_them(store: Store):
    kept = _publish(store, "kept", {"x": 1})
    # a crashed writer: an upload without a manifest
    crashed = ArtifactRef.for_spec("expert", "crashed", {"x": 2})
    _write(store, f"{store.root}/{crashed.path}/{UPLOAD_A}/data.json", b"12345")
    # a losing writer's upload beside a published artifact
    _write(store, f"{store.root}/{kept.path}/{UPLOAD_B}/data.json", b"123")
    assert find_garbage(store, older_than=3600) == []  # too fresh: maybe a write in progress
    garbage = find_garbage(store, older_than=0)
    assert {(g.path, g.bytes, g.deletable) for g in garbage} == {
        (f"{crashed.path}/{UPLOAD_A}", 5, True),
        (f"{kept.path}/{UPLOAD_B}", 3, True),
    }
    assert collect(store, garbage) == 8
    store.fs.invalidate_cache()
    assert find_garbage(store, older_than=0) == []
    assert store.load_json(kept, "data.json") == {"x": 1}
    assert [r["path"] for r in list_artifacts(store)[0]] == [kept.path]


def test_gc_leaves_alone_what_it_does_not_recognise(store: Store):
    kept = _publish(store, "kept", {"x": 1})
    crashed = ArtifactRef.for_spec("expert", "crashed", {"x": 2})
    unknown = {
        f"{crashed.path}/notes.txt": b"mine",  # not something a writer makes
        f"{kept.path}/files-not-an-upload/x": b"1",
        "expert/not-an-artifact-folder/files-00000000000000aa/x": b"22",
        "my-stage/a-0123456789abcdef01234567/files-00000000000000aa/x": b"333",  # no such stage
        "README.md": b"4444",
    }
    for path, data in unknown.items():
        _write(store, f"{store.root}/{path}", data)
    found = find_garbage(store, older_than=0)
    assert {(g.path, g.deletable) for g in found} == {
        (f"{crashed.path}/notes.txt", False),
        (f"{kept.path}/files-not-an-upload", False),
    }
    assert collect(store, found) == 0
    store.fs.invalidate_cache()
    for path, data in unknown.items():
        assert store.fs.cat_file(f"{store.root}/{path}") == data


def test_gc_collects_training_state_of_published_artifacts(tmp_path: Path):
    store = Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    done = _publish(store, "done", {"x": 1})
    running = ArtifactRef.for_spec("expert", "running", {"x": 2})
    for ref in (done, running):
        (store.work_dir(ref) / "step-0000010").mkdir()
        (store.work_dir(ref) / "step-0000010" / "state.json").write_text("{}")
    garbage = find_garbage(store, older_than=0)
    assert [g.path for g in garbage] == [f"_work/{done.path}"]  # the unfinished run keeps its
    assert collect(store, garbage) == 2
    assert not (tmp_path / "store" / "_work" / done.path).exists()
    assert (store.work_dir(running) / "step-0000010" / "state.json").is_file()


def test_gc_collects_the_lock_beside_published_training_state(tmp_path: Path):
    store = Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    done, gone = _publish(store, "done", {"x": 1}), _publish(store, "gone", {"x": 2})
    running = ArtifactRef.for_spec("expert", "running", {"x": 3})
    for ref in (done, gone, running):
        with one_at_a_time(store.work_dir(ref)):  # as a training leaves it: a `<folder>.lock`
            (store.work_dir(ref) / "state.json").write_text("{}")
    store.work_dir(gone).joinpath("state.json").unlink()  # an older gc took the folder only
    store.work_dir(gone).rmdir()
    work = tmp_path / "store" / "_work"
    garbage = find_garbage(store, older_than=0)
    assert sorted(g.path for g in garbage) == [f"_work/{done.path}", f"_work/{gone.path}"]
    collect(store, garbage)
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == [
        running.stage,
        running.path,
        f"{running.path}.lock",
        f"{running.path}/state.json",
    ]


def _user_folder(root: Path) -> dict[str, bytes]:
    """An ordinary folder (sources, a corpus, notes), two hours old."""
    files = {
        "src/main.py": b"print('hi')\n",
        "corpus/part-0.jsonl": b'{"text": "hello"}\n',
        "notes/todo.txt": b"buy milk\n",
        "expert/mine.txt": b"a folder named like a stage\n",
    }
    old = time.time() - 7200
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        os.utime(root / rel, (old, old))
    return files


def test_admin_commands_refuse_a_folder_that_is_not_a_store(tmp_path: Path):
    files = _user_folder(tmp_path / "home")
    store = Store(str(tmp_path / "home"), cache_dir=tmp_path / "cache")
    for action in (
        lambda: find_garbage(store, older_than=0),
        lambda: list_artifacts(store),
        lambda: verify_all(store),
        lambda: collect(store, []),
    ):
        with pytest.raises(StoreError, match=r"not a Param-Mix store \(no STORE_ID marker\)"):
            action()
    assert {
        p.relative_to(tmp_path / "home").as_posix(): p.read_bytes()
        for p in (tmp_path / "home").rglob("*")
        if p.is_file()
    } == files


def test_admin_commands_refuse_a_missing_store_and_create_nothing(tmp_path: Path):
    store = Store(str(tmp_path / "nowhere"), cache_dir=tmp_path / "cache")
    with pytest.raises(StoreError, match=r"no store here \(nothing at this location\)"):
        find_garbage(store, older_than=0)
    assert not (tmp_path / "nowhere").exists()
