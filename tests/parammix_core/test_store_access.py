"""Where the store refuses to go: wrong, read-only or missing credentials, a missing bucket,
an unreachable endpoint; a folder that is not a store; a manifest, a link or an address
naming a file outside its artifact. Nothing is written and no secret is shown."""

import json
import re
from pathlib import Path

import pytest

from parammix_core.store import ArtifactRef, Store, StoreError
from tests.parammix_core.artifacts import _artifact


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


def test_a_folder_with_stage_names_but_user_files_is_not_a_store(tmp_path: Path):
    """`data/` and `report/` are stage names; a user's files inside them are not artifacts."""
    project = tmp_path / "project"
    for rel in ("data/my_corpus.jsonl", "report/q3.md"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("mine\n")
    store = Store(str(project), cache_dir=tmp_path / "cache")
    ref = ArtifactRef.for_spec("report", "x", {"v": 1})
    message = r"not a Param-Mix store \(no STORE_ID; it holds data/my_corpus.jsonl, report/q3.md\)"
    for write in (lambda: store.publish(ref, _artifact(store, ref)), lambda: store.id):
        with pytest.raises(StoreError, match=message):
            write()
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*")) == [
        "data",
        "data/my_corpus.jsonl",
        "report",
        "report/q3.md",
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


def test_an_address_cannot_leave_the_store():
    for bad in ({"stage": "..", "name": "x"}, {"stage": "t", "name": "../x"}, {"stage": "a/b"}):
        with pytest.raises(ValueError):
            ArtifactRef(**{"stage": "t", "name": "x", "key": "0" * 64, **bad})
    with pytest.raises(ValueError):
        ArtifactRef(stage="t", name="x", key="../" * 8)
