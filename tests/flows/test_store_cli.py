"""`parammix store list|verify|gc` as a user runs it."""

import json
from pathlib import Path

import s3fs

from flows.cli import main
from parammix_core.store import ArtifactRef, Store


def _store_with_leftover(root: Path) -> tuple[Store, ArtifactRef, ArtifactRef]:
    store = Store(str(root), cache_dir=root.parent / "cache")
    ref = ArtifactRef.for_spec("expert", "math", {"v": 1})
    src = store.staging(ref)
    (src / "info.json").write_text(json.dumps({"a": 1}))
    store.publish(ref, src)
    crashed = ArtifactRef.for_spec("expert", "math", {"v": 2})
    leftover = root / crashed.path / "files-00000000deadbeef" / "model.safetensors"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"0" * 10)
    return store, ref, crashed


def test_store_commands(tmp_path: Path, capsys):
    store, ref, crashed = _store_with_leftover(tmp_path / "store")
    opts = ["--set", f"store.url={tmp_path / 'store'}"]

    assert main(["store", "list", *opts]) == 0
    out = capsys.readouterr().out
    assert ref.path in out and ref.key[:12] in out and "1 artifact(s)" in out

    assert main(["store", "gc", *opts, "--older-than", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{crashed.path}/files-00000000deadbeef" in out and "dry run, nothing deleted" in out
    assert (tmp_path / "store" / crashed.path).exists()

    assert main(["store", "gc", *opts, "--older-than", "0", "--delete"]) == 0
    assert "deleted 1 leftover(s)" in capsys.readouterr().out
    assert not (tmp_path / "store" / crashed.path).exists()

    assert main(["store", "verify", *opts]) == 0
    Path(store.file_path(ref, "info.json")).write_text('{"a": 2}')
    assert main(["store", "verify", *opts]) == 1
    assert f"BAD  {ref.path}: info.json: sha256 does not match" in capsys.readouterr().out


def test_store_errors_are_one_line(tmp_path: Path, capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()  # no client resolved by an earlier test's keys
    opts = ["--set", "store.url=s3://no-such-bucket-cli/x"]
    fast = "config_kwargs: {connect_timeout: 1, retries: {max_attempts: 1}}"
    opts += ["--set", f"store.storage_options={{endpoint_url: 'http://127.0.0.1:9', {fast}}}"]
    assert main(["store", "list", *opts]) == 2
    assert "s3://no-such-bucket-cli/x: no credentials found" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-printed-secret")
    s3fs.S3FileSystem.clear_instance_cache()  # the cached client resolved no credentials
    assert main(["store", "list", *opts]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the endpoint" in err and "never-printed-secret" not in err


def test_a_damaged_manifest_is_reported_by_every_store_command(tmp_path: Path, capsys):
    store, ref, _ = _store_with_leftover(tmp_path / "store")
    other = ArtifactRef.for_spec("expert", "code", {"v": 3})
    src = store.staging(other)
    (src / "info.json").write_text("{}")
    store.publish(other, src)
    (tmp_path / "store" / other.path / "MANIFEST.json").write_text("{not json")
    opts = ["--set", f"store.url={tmp_path / 'store'}"]

    assert main(["store", "list", *opts]) == 0
    out = capsys.readouterr().out
    assert f"DAMAGED  {other.path}: MANIFEST.json is not valid JSON" in out
    assert ref.path in out and "1 artifact(s)" in out and "1 damaged" in out

    assert main(["store", "verify", *opts]) == 1  # a finding, not a failure: it goes on
    out = capsys.readouterr().out
    assert f"BAD  {other.path}: MANIFEST.json is not valid JSON" in out
    assert "1 intact, 1 damaged" in out

    assert main(["store", "gc", *opts, "--older-than", "0", "--delete"]) == 0
    out = capsys.readouterr().out
    assert f"{other.path}  (left alone: {other.path}: MANIFEST.json is not valid JSON" in out
    assert (tmp_path / "store" / other.path / "MANIFEST.json").read_text() == "{not json"
