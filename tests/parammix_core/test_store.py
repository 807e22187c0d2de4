import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parammix_core.store import MANIFEST, ArtifactRef, Store, StoreError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "store"), cache_dir=tmp_path / "cache")


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
    dest = Path(store.root) / ref.path
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    assert not store.exists(ref)
    with pytest.raises(StoreError, match=re.escape("not in the store")):
        store.load_tensors(ref, "model.safetensors")


@pytest.mark.parametrize("verify", ["sha256", "size"])
def test_tampered_file_is_refused(tmp_path: Path, verify: str):
    store = Store(str(tmp_path / "s"), verify=verify, cache_dir=tmp_path / "c")
    ref = ArtifactRef.for_spec("t", "x", {"v": 3})
    store.publish(ref, _artifact(store, ref))
    path = Path(store.root) / ref.path / "info.json"
    path.write_text(json.dumps({"a": 2}))  # same size, other content
    if verify == "sha256":
        with pytest.raises(StoreError, match=re.escape("info.json: sha256 does not match")):
            store.load_json(ref, "info.json")
    else:
        assert store.load_json(ref, "info.json") == {"a": 2}
    path.write_text("{}")
    with pytest.raises(StoreError, match=r"info.json: size 2 does not match the manifest \(8\)"):
        store.load_json(ref, "info.json")


def test_missing_file_and_foreign_manifest(store: Store):
    ref = ArtifactRef.for_spec("t", "x", {"v": 4})
    store.publish(ref, _artifact(store, ref))
    (Path(store.root) / ref.path / "sub" / "notes.json").unlink()
    with pytest.raises(
        StoreError, match=re.escape("sub/notes.json: listed in the manifest but missing")
    ):
        store.check(ref)
    other = ArtifactRef.for_spec("t", "x", {"v": 5})
    (Path(store.root) / other.path).mkdir(parents=True)
    manifest = (Path(store.root) / ref.path / MANIFEST).read_text()
    (Path(store.root) / other.path / MANIFEST).write_text(manifest)
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


def test_store_identity_survives_reopening_but_not_wiping(tmp_path: Path):
    first = Store(str(tmp_path / "s")).id
    assert Store(str(tmp_path / "s")).id == first
    (tmp_path / "s" / "STORE_ID").unlink()
    assert Store(str(tmp_path / "s")).id != first


def test_remote_filesystem_round_trip(tmp_path: Path):
    """A non-local fsspec backend: artifacts are downloaded and verified in the cache."""
    store = Store("memory://parammix-test/store", cache_dir=tmp_path / "cache")
    ref = ArtifactRef.for_spec("t", "remote", {"v": 9})
    store.publish(ref, _artifact(store, ref))
    assert store.uri(ref).startswith("memory://")
    assert store.load_json(ref, "info.json") == {"a": 1}
    local = store.local_dir(ref)
    assert local.is_relative_to(tmp_path / "cache")
    store.fs.pipe_file(f"{store.root}/{ref.path}/info.json", b'{"a": 3}')
    with pytest.raises(StoreError, match=re.escape("sha256 does not match")):
        store.load_json(ref, "info.json")
