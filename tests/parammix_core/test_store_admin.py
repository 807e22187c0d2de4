"""list / verify / gc on both backends: a local folder and a real S3 server."""

import json
from pathlib import Path

import pytest

from parammix_core.store import ArtifactRef, Store
from parammix_core.store_admin import collect, find_garbage, list_artifacts, verify_all


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    server = request.getfixturevalue("s3_server")
    return Store(f"s3://{server.bucket('admin')}/s", server.storage_options(), cache_dir=tmp_path)


def _publish(store: Store, name: str, payload: dict) -> ArtifactRef:
    ref = ArtifactRef.for_spec("stage", name, payload)
    src = store.staging(ref)
    (src / "data.json").write_text(json.dumps(payload))
    return store.publish(ref, src, info={"n": name})


def _write(store: Store, path: str, data: bytes) -> None:
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, data)


def test_list_names_stage_and_config_hash(store: Store):
    a = _publish(store, "a", {"x": 1})
    b = _publish(store, "b", {"x": 2})
    rows = list_artifacts(store)
    assert [r["path"] for r in rows] == [a.path, b.path]
    assert [r["config_hash"] for r in rows] == [a.key[:12], b.key[:12]]
    assert {r["stage"] for r in rows} == {"stage"} and rows[0]["bytes"] == len('{"x": 1}')


def test_verify_finds_the_damaged_artifact(store: Store):
    good = _publish(store, "good", {"x": 1})
    bad = _publish(store, "bad", {"x": 2})
    store.fs.pipe_file(store.file_path(bad, "data.json"), b'{"x": 3}')
    results = dict(verify_all(store))
    assert results[good.path] is None
    assert "data.json: sha256 does not match" in results[bad.path]


def test_gc_finds_only_leftovers_and_deletes_them(store: Store):
    kept = _publish(store, "kept", {"x": 1})
    # a crashed writer: files without a manifest
    crashed = ArtifactRef.for_spec("stage", "crashed", {"x": 2})
    _write(store, f"{store.root}/{crashed.path}/files-dead/data.json", b"12345")
    # a losing writer's upload beside a published artifact
    _write(store, f"{store.root}/{kept.path}/files-loser/data.json", b"123")
    assert find_garbage(store, older_than=3600) == []  # too fresh: maybe a write in progress
    garbage = find_garbage(store, older_than=0)
    assert {(g.path, g.bytes) for g in garbage} == {
        (crashed.path, 5),
        (f"{kept.path}/files-loser", 3),
    }
    assert collect(store, garbage) == 8
    store.fs.invalidate_cache()
    assert find_garbage(store, older_than=0) == []
    assert store.load_json(kept, "data.json") == {"x": 1}
    assert [r["path"] for r in list_artifacts(store)] == [kept.path]


def test_gc_collects_training_state_of_published_artifacts(tmp_path: Path):
    store = Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    done = _publish(store, "done", {"x": 1})
    running = ArtifactRef.for_spec("stage", "running", {"x": 2})
    for ref in (done, running):
        (store.work_dir(ref) / "step-0000010").mkdir()
        (store.work_dir(ref) / "step-0000010" / "state.json").write_text("{}")
    garbage = find_garbage(store, older_than=0)
    assert [g.path for g in garbage] == [f"_work/{done.path}"]  # the unfinished run keeps its
