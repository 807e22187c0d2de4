"""The store on both backends: a local folder and a real S3 server (SeaweedFS): publishing,
reading and verifying artifacts, and writers racing to publish one. What the store refuses
(credentials, endpoints, foreign folders, names outside an artifact) is in
test_store_access.py."""

import json
import re
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parammix_core.store import MANIFEST, ArtifactRef, Store, StoreError
from tests.parammix_core.artifacts import _artifact


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    """open(verify="sha256", cache="cache", **kw) -> a Store on this test's backend."""

    def open_store(verify: str = "sha256", cache: str = "cache", **kwargs) -> Store:
        if request.param == "local":
            return Store(str(tmp_path / "store"), verify=verify, cache_dir=tmp_path / cache)
        server = request.getfixturevalue("s3_server")
        bucket = request.node.stash.setdefault(BUCKET, server.bucket("store"))
        options = {**server.storage_options(), **kwargs}
        return Store(f"s3://{bucket}/store", options, verify, tmp_path / cache)

    return open_store


BUCKET = pytest.StashKey[str]()


@pytest.fixture
def store(backend) -> Store:
    return backend()


def test_ref_is_a_content_hash():
    a = ArtifactRef.for_spec("expert", "math", {"lr": 1e-3, "steps": 10})
    assert a == ArtifactRef.for_spec("expert", "math", {"steps": 10, "lr": 1e-3})
    assert a != ArtifactRef.for_spec("expert", "math", {"lr": 1e-3, "steps": 11})
    assert a != ArtifactRef.for_spec("expert", "code", {"lr": 1e-3, "steps": 10})
    assert len(a.key) == 64 and a.path.startswith("expert/math-")


def test_round_trip(store: Store):
    ref = ArtifactRef.for_spec("t", "x", {"v": 1})
    assert not store.exists(ref)
    store.publish(ref, _artifact(store, ref), info={"hello": "world"})
    assert store.exists(ref)
    assert torch.equal(
        store.load_tensors(ref, "model.safetensors")["w"], torch.arange(6.0).reshape(2, 3)
    )
    assert store.load_json(ref, "info.json") == {"a": 1}
    assert store.load_json(ref, "sub/notes.json") == [1, 2]
    assert store.manifest(ref)["info"] == {"hello": "world"}
    assert [m["key"] for m in store.artifacts()] == [ref.key]


def test_unmanifested_artifact_is_not_trusted(store: Store):
    ref = ArtifactRef.for_spec("t", "x", {"v": 2})
    src = _artifact(store, ref)
    dest = f"{store.root}/{ref.path}/model.safetensors"
    store.fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(dest, (src / "model.safetensors").read_bytes())
    assert not store.exists(ref)
    assert list(store.artifacts()) == []
    with pytest.raises(StoreError, match=re.escape("not in the store")):
        store.load_tensors(ref, "model.safetensors")


@pytest.mark.parametrize("verify", ["sha256", "size"])
def test_tampered_file_is_refused(backend, verify: str):
    store = backend(verify=verify)
    ref = ArtifactRef.for_spec("t", "x", {"v": 3})
    store.publish(ref, _artifact(store, ref))
    path = store.file_path(ref, "info.json")
    store.fs.pipe_file(path, json.dumps({"a": 2}).encode())  # same size, other content
    if verify == "sha256":
        with pytest.raises(StoreError, match=re.escape("info.json: sha256 does not match")):
            store.load_json(ref, "info.json")
    else:
        assert store.load_json(ref, "info.json") == {"a": 2}
    store.fs.pipe_file(path, b"{}")
    fresh = backend(verify=verify, cache="fresh-cache")
    with pytest.raises(StoreError, match=r"info.json: size 2 does not match the manifest \(8\)"):
        fresh.load_json(ref, "info.json")


def test_missing_file_and_foreign_manifest(store: Store):
    ref = ArtifactRef.for_spec("t", "x", {"v": 4})
    store.publish(ref, _artifact(store, ref))
    store.fs.rm(store.file_path(ref, "sub/notes.json"))
    with pytest.raises(
        StoreError, match=re.escape("sub/notes.json: listed in the manifest but missing")
    ):
        store.check(ref)
    other = ArtifactRef.for_spec("t", "x", {"v": 5})
    manifest = store.fs.cat_file(f"{store.root}/{ref.path}/{MANIFEST}")
    store.fs.makedirs(f"{store.root}/{other.path}", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/{other.path}/{MANIFEST}", manifest)
    with pytest.raises(StoreError, match=re.escape("manifest is for key")):
        store.exists(other)


def test_refuses_to_load_pickles(store: Store, tmp_path: Path):
    ref = ArtifactRef.for_spec("t", "p", {"v": 6})
    src = store.staging(ref)
    torch.save({"w": torch.ones(2)}, src / "model.bin")
    store.publish(ref, src)
    with pytest.raises(
        StoreError, match=re.escape("refusing to load; only .safetensors, .json, .parquet")
    ):
        store.load_tensors(ref, "model.bin")


def test_corrupt_safetensors_is_a_clear_error(store: Store):
    ref = ArtifactRef.for_spec("t", "c", {"v": 7})
    src = store.staging(ref)
    (src / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    store.publish(ref, src)
    with pytest.raises(
        StoreError, match=re.escape("model.safetensors: not a valid safetensors file")
    ):
        store.load_tensors(ref, "model.safetensors")


def test_a_staging_folder_is_removed_once_published_or_refused(store: Store):
    """Every model a run builds is staged in the cache: none may stay there."""
    ref = ArtifactRef.for_spec("t", "s", {"v": 8})
    published = _artifact(store, ref)
    store.publish(ref, published)
    again = _artifact(store, ref)
    store.publish(ref, again)  # already published: nothing uploaded
    empty = store.staging(ArtifactRef.for_spec("t", "s", {"v": 9}))
    with pytest.raises(StoreError, match="nothing to publish"):
        store.publish(ArtifactRef.for_spec("t", "s", {"v": 9}), empty)
    assert not published.exists() and not again.exists() and not empty.exists()
    assert list((store.cache_dir / "staging").iterdir()) == []
    assert store.load_json(ref, "info.json") == {"a": 1}


def test_publish_never_overwrites(store: Store):
    ref = ArtifactRef.for_spec("t", "x", {"v": 8})
    store.publish(ref, _artifact(store, ref))
    other = store.staging(ref)
    (other / "info.json").write_text(json.dumps({"a": 99}))
    store.publish(ref, other)
    assert store.load_json(ref, "info.json") == {"a": 1}
    assert "model.safetensors" in store.manifest(ref)["files"]


def test_store_identity_survives_reopening_but_not_wiping(backend):
    first = backend().id
    assert backend().id == first
    store = backend()
    store.fs.rm(f"{store.root}/STORE_ID")
    assert backend().id != first


def test_remote_filesystem_round_trip(tmp_path: Path):
    """Any fsspec backend: artifacts are downloaded and verified in the cache."""
    store = Store("memory://parammix-test/store", cache_dir=tmp_path / "cache")
    ref = ArtifactRef.for_spec("t", "remote", {"v": 9})
    store.publish(ref, _artifact(store, ref))
    assert store.uri(ref).startswith("memory://")
    store.fs.pipe_file(store.file_path(ref, "info.json"), b'{"a": 3}')
    with pytest.raises(StoreError, match=re.escape("sha256 does not match")):
        store.load_json(ref, "info.json")
    assert not (tmp_path / "cache" / "artifacts" / ref.path).exists()  # nothing half-cached


def test_damaged_cached_copy_is_fetched_again(s3_server, s3_bucket: str, tmp_path: Path):
    store = Store(f"s3://{s3_bucket}/s", s3_server.storage_options(), cache_dir=tmp_path / "c")
    ref = ArtifactRef.for_spec("t", "cached", {"v": 10})
    store.publish(ref, _artifact(store, ref))
    local = store.local_dir(ref)
    assert local.is_relative_to(tmp_path / "c")
    (local / "info.json").write_text('{"a": 7}')  # same size, other bytes
    assert store.load_json(ref, "info.json") == {"a": 1}


def test_large_files_upload_in_parts(s3_server, s3_bucket: str, tmp_path: Path):
    store = Store(
        f"s3://{s3_bucket}/s",
        s3_server.storage_options(),
        cache_dir=tmp_path / "c",
        part_size=5 << 20,
    )
    ref = ArtifactRef.for_spec("t", "big", {"v": 11})
    src = store.staging(ref)
    big = torch.arange(3 << 20, dtype=torch.float32)  # 12 MiB: three 5 MiB parts
    save_file({"w": big}, src / "model.safetensors")
    store.publish(ref, src)
    etag = store.fs.info(store.file_path(ref, "model.safetensors"))["ETag"].strip('"')
    assert etag.endswith("-3"), etag  # a multipart upload's ETag counts its parts
    assert torch.equal(store.load_tensors(ref, "model.safetensors")["w"], big)


def test_conditional_create_never_overwrites(store: Store):
    path = f"{store.root}/cond/one.json"
    store._create(path, b"first")
    with pytest.raises(FileExistsError):
        store._create(path, b"second")
    assert store.fs.cat_file(path) == b"first"


def test_racing_writers_publish_exactly_one_artifact(backend):
    """Both writers see no manifest, upload, then race on the manifest: one wins, intact."""
    barrier = threading.Barrier(2)

    class RacingStore(Store):
        def _put(self, local: Path, dest: str) -> None:
            if local.name == "info.json":
                barrier.wait(timeout=30)
            super()._put(local, dest)

    stores = [backend(), backend(cache="cache-b")]
    racers = [RacingStore.__new__(RacingStore) for _ in stores]
    for racer, s in zip(racers, stores, strict=True):
        racer.__dict__.update(s.__dict__)
    ref = ArtifactRef.for_spec("t", "race", {"v": 12})
    sources = []
    for i, racer in enumerate(racers):
        src = racer.staging(ref)
        (src / "info.json").write_text(json.dumps({"writer": i}))
        sources.append(src)
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            racers[i].publish(ref, sources[i])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    store = backend(cache="cache-check")
    assert store.load_json(ref, "info.json")["writer"] in (0, 1)
    store.fs.invalidate_cache()
    files = store.fs.find(f"{store.root}/{ref.path}")
    uploads = {p.split("/files-")[1].split("/")[0] for p in files if "/files-" in p}
    assert len(uploads) == 1  # the loser removed its upload (objects; S3 has no folders)
    assert [m["key"] for m in store.artifacts()] == [ref.key]


def test_reading_a_path_that_is_not_a_file_name_is_refused(store: Store):
    ref = ArtifactRef.for_spec("t", "names", {"v": 1})
    store.publish(ref, _artifact(store, ref))
    with pytest.raises(StoreError, match=r"not a file name inside the artifact"):
        store.load_json(ref, "../../MANIFEST.json")
