"""The store on both backends: a local folder and a real S3 server (SeaweedFS)."""

import json
import re
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parammix_core.store import MANIFEST, ArtifactRef, Store, StoreError


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


def _artifact(store: Store, ref: ArtifactRef) -> Path:
    src = store.staging(ref)
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, src / "model.safetensors")
    (src / "info.json").write_text(json.dumps({"a": 1}))
    (src / "sub").mkdir()
    (src / "sub" / "notes.json").write_text("[1, 2]")
    return src


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


def test_credentials_from_the_environment(s3_server, s3_bucket, tmp_path, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = Store(
        f"s3://{s3_bucket}/env", {"endpoint_url": s3_server.endpoint}, cache_dir=tmp_path / "c"
    )
    ref = ArtifactRef.for_spec("t", "env", {"v": 13})
    store.publish(ref, _artifact(store, ref))
    assert store.load_json(ref, "info.json") == {"a": 1}


def _listing(store: Store) -> dict[str, int]:
    return {p: store.fs.size(p) for p in store.fs.find(store.root)}


def test_wrong_credentials_are_a_clear_error(s3_server, s3_bucket, tmp_path):
    good = Store(f"s3://{s3_bucket}/s", s3_server.storage_options(), cache_dir=tmp_path / "c")
    ref = ArtifactRef.for_spec("t", "creds", {"v": 14})
    good.publish(ref, _artifact(good, ref))
    before = _listing(good)
    secret = "definitely-wrong-secret-4242"
    bad = Store(
        f"s3://{s3_bucket}/s",
        {**s3_server.storage_options(), "secret": secret, "skip_instance_cache": True},
        cache_dir=tmp_path / "c2",
    )
    with pytest.raises(StoreError, match=r"access denied on read .*check the credentials") as err:
        _ = bad.id
    assert secret not in str(err.value) and s3_server.secret_key not in str(err.value)
    assert _listing(good) == before


def test_missing_bucket_is_a_clear_error(s3_server, tmp_path):
    store = Store("s3://no-such-bucket-pm/s", s3_server.storage_options(), cache_dir=tmp_path)
    with pytest.raises(StoreError, match=r"s3://no-such-bucket-pm/s: the bucket does not exist"):
        _ = store.id


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    options = {
        "endpoint_url": "http://127.0.0.1:9",
        "key": "k",
        "secret": "s-not-logged",
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    store = Store("s3://bucket-x/s", options, cache_dir=tmp_path)
    with pytest.raises(StoreError, match=r"cannot reach the endpoint") as err:
        _ = store.id
    assert "s-not-logged" not in str(err.value)


def test_read_only_credentials_cannot_publish(s3_server, s3_bucket, tmp_path):
    writer = Store(f"s3://{s3_bucket}/s", s3_server.storage_options(), cache_dir=tmp_path / "w")
    done = ArtifactRef.for_spec("t", "ro", {"v": 15})
    writer.publish(done, _artifact(writer, done))
    before = _listing(writer)
    reader = Store(
        f"s3://{s3_bucket}/s", s3_server.storage_options(readonly=True), cache_dir=tmp_path / "r"
    )
    assert reader.load_json(done, "info.json") == {"a": 1}  # reading is allowed
    ref = ArtifactRef.for_spec("t", "ro", {"v": 16})
    with pytest.raises(StoreError, match=r"access denied on write"):
        reader.publish(ref, _artifact(reader, ref))
    assert _listing(writer) == before


def test_opening_a_store_creates_nothing(tmp_path: Path):
    store = Store(str(tmp_path / "new"), cache_dir=tmp_path / "cache")
    assert store.manifest(ArtifactRef.for_spec("t", "x", {"v": 1})) is None
    assert list(store.artifacts()) == []
    assert not (tmp_path / "new").exists()
    ref = ArtifactRef.for_spec("t", "x", {"v": 1})
    store.publish(ref, _artifact(store, ref))  # the first write makes it a store
    assert re.fullmatch(r"[0-9a-f]{32}", (tmp_path / "new" / "STORE_ID").read_text())


def test_a_folder_that_is_not_a_store_is_never_written(tmp_path: Path):
    home = tmp_path / "home"
    (home / "src").mkdir(parents=True)
    (home / "src" / "main.py").write_text("print('hi')\n")
    store = Store(str(home), cache_dir=tmp_path / "cache")
    ref = ArtifactRef.for_spec("t", "x", {"v": 1})
    src = _artifact(store, ref)
    message = r"store .*home: the folder is not empty and is not a Param-Mix store .*holds src"
    for write in (lambda: store.publish(ref, src), lambda: store.work_dir(ref), lambda: store.id):
        with pytest.raises(StoreError, match=message):
            write()
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == [
        "src",
        "src/main.py",
    ]


def test_a_store_from_before_the_marker_is_adopted(tmp_path: Path):
    store = Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    ref = ArtifactRef.for_spec("expert", "math", {"v": 1})
    store.publish(ref, _artifact(store, ref))
    (tmp_path / "store" / "STORE_ID").unlink()  # only the pipeline's own stage folders
    reopened = Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    assert re.fullmatch(r"[0-9a-f]{32}", reopened.id)
    assert reopened.load_json(ref, "info.json") == {"a": 1}


def _tampered(store: Store, ref: ArtifactRef, rel: str, data: bytes) -> None:
    """Publish `ref`, then rewrite its manifest to list `rel` with `data`'s size and hash."""
    import hashlib

    store.publish(ref, _artifact(store, ref))
    path = f"{store.root}/{ref.path}/MANIFEST.json"
    manifest = json.loads(store.fs.cat_file(path))
    digest = hashlib.sha256(data).hexdigest()
    manifest["files"] = {rel: {"size": len(data), "sha256": digest}}
    store.fs.pipe_file(path, json.dumps(manifest).encode())
    store.fs.pipe_file(f"{store.root}/{ref.path}/{manifest['upload']}/{rel}", data)


@pytest.mark.parametrize(
    "rel",
    [
        "../../../../escaped.txt",
        "/tmp/escaped.txt",
        "C:/escaped.txt",
        "sub/../../escaped.txt",
        "sub\\..\\escaped.txt",
        "./info.json",
        "a//b.json",
    ],
)
def test_a_manifest_cannot_name_a_file_outside_the_artifact(tmp_path: Path, rel: str):
    """A remote manifest naming `../../x` (with a matching size and hash) is refused before
    anything is read or written; nothing lands outside the cache."""
    store = Store("memory://parammix-traversal/store", cache_dir=tmp_path / "a" / "b" / "cache")
    ref = ArtifactRef.for_spec("t", f"evil{abs(hash(rel))}", {"v": rel})
    _tampered(store, ref, rel, b"owned\n")
    before = sorted(p.as_posix() for p in tmp_path.rglob("*"))
    for read in (
        lambda: store.local_dir(ref),
        lambda: store.load_json(ref, "info.json"),
        lambda: store.check(ref),
        lambda: store.exists(ref),
    ):
        with pytest.raises(StoreError, match=r"MANIFEST.json lists an unsafe file name"):
            read()
    after = sorted(p.as_posix() for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and "staging" not in p] == []
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_symbolic_link_out_of_a_local_store_is_refused(tmp_path: Path):
    store = Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    ref = ArtifactRef.for_spec("t", "link", {"v": 1})
    store.publish(ref, _artifact(store, ref))
    secret = tmp_path / "secret.json"
    secret.write_text('{"a": 1}')  # same size and bytes as the artifact's info.json
    target = Path(store.file_path(ref, "info.json"))
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(StoreError, match=r"resolves outside its artifact folder"):
        store.load_json(ref, "info.json")


def test_reading_a_path_that_is_not_a_file_name_is_refused(store: Store):
    ref = ArtifactRef.for_spec("t", "names", {"v": 1})
    store.publish(ref, _artifact(store, ref))
    with pytest.raises(StoreError, match=r"not a file name inside the artifact"):
        store.load_json(ref, "../../MANIFEST.json")


def test_an_address_cannot_leave_the_store():
    for bad in ({"stage": "..", "name": "x"}, {"stage": "t", "name": "../x"}, {"stage": "a/b"}):
        with pytest.raises(ValueError):
            ArtifactRef(**{"stage": "t", "name": "x", "key": "0" * 64, **bad})
    with pytest.raises(ValueError):
        ArtifactRef(stage="t", name="x", key="../" * 8)
