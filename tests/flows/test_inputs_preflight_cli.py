"""Corpora, checkpoint and tokenizer that the first stages could not read are refused by
`parammix validate-config` and by `parammix run` before its server starts: exit 2, one
`error: preflight: ...` line naming the field and the path, nothing written."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from tests.parammix_core.bad_input import snapshot, write_jsonl


@pytest.fixture
def no_flow(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the flow was started")

    monkeypatch.setitem(sys.modules, "flows.param_mix", types.SimpleNamespace(param_mix=refuse))


def checkpoint(root: Path, *files: str) -> Path:
    folder = root / "ckpt"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}")
    return folder


def config(root: Path, **sections) -> Path:
    corpus = str(write_jsonl(root / "a.jsonl"))
    data = {"domains": [{"name": "a", "paths": [corpus]}, {"name": "b", "paths": [corpus]}]}
    body = {"data": data, "store": {"url": str(root / "store")}, **sections}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def refuses(path: Path, root: Path, capsys, *says: str) -> None:
    before = snapshot(root)
    for argv in (["validate-config", str(path)], ["run", "--config", str(path)]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: preflight: "), out + err
        assert "Traceback" not in out + err
        for want in says:
            assert want in errors[0], errors[0]
    assert snapshot(root) == before  # no store, no cache, nothing beside


def test_a_corpus_path_that_matches_nothing(tmp_path, capsys, no_flow):
    path = config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["data"]["domains"][1]["paths"] = [str(tmp_path / "missing" / "*.jsonl")]
    path.write_text(yaml.safe_dump(data))
    refuses(path, tmp_path, capsys, "domain 'b'", str(tmp_path / "missing" / "*.jsonl"))


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ((), "has no config.json, so it is not a Hugging Face checkpoint"),
        (("config.json", "pytorch_model.bin"), "only pickled weights ['pytorch_model.bin']"),
        (("config.json", "model.safetensors"), "holds no tokenizer"),
    ],
    ids=["no-config", "pickled-weights", "no-tokenizer"],
)
def test_a_checkpoint_the_base_stage_could_not_load(tmp_path, capsys, no_flow, files, says):
    folder = checkpoint(tmp_path, *files)
    path = config(tmp_path, model={"checkpoint": str(folder)})
    refuses(path, tmp_path, capsys, "model.checkpoint: ", str(folder), says)


def test_a_missing_checkpoint_folder(tmp_path, capsys, no_flow):
    path = config(tmp_path, model={"checkpoint": str(tmp_path / "nowhere")})
    refuses(path, tmp_path, capsys, "model.checkpoint: no such folder", "nowhere")


def test_a_tokenizer_folder_without_a_tokenizer(tmp_path, capsys, no_flow):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "README.md").write_text("not a tokenizer")
    folder = checkpoint(tmp_path, "config.json", "model.safetensors")  # needs data.tokenizer
    path = config(tmp_path, model={"checkpoint": str(folder)})
    data = yaml.safe_load(path.read_text())
    data["data"]["tokenizer"] = str(tmp_path / "tok")
    path.write_text(yaml.safe_dump(data))
    refuses(path, tmp_path, capsys, "data.tokenizer: ", "holds no tokenizer")


def test_every_unreadable_input_is_named_at_once(tmp_path, capsys, no_flow):
    path = config(tmp_path, model={"checkpoint": str(tmp_path / "nowhere")})
    data = yaml.safe_load(path.read_text())
    for i, domain in enumerate(data["data"]["domains"]):
        domain["paths"] = [str(tmp_path / f"missing{i}" / "*.jsonl")]
    path.write_text(yaml.safe_dump(data))
    refuses(path, tmp_path, capsys, "3 inputs cannot be read:")
    assert main(["validate-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: preflight: 3 inputs cannot be read:"
    assert lines[1].startswith(f"  domain 'a': {tmp_path / 'missing0' / '*.jsonl'}")
    assert lines[2].startswith(f"  domain 'b': {tmp_path / 'missing1' / '*.jsonl'}")
    assert lines[3].startswith("  model.checkpoint: no such folder")


def test_an_unexpected_error_listing_a_corpus_is_named_and_hides_nothing_else(
    tmp_path, capsys, no_flow, monkeypatch
):
    """An audit (2026-12-07): an S3 corpus without credentials gave `preflight:
    NoCredentialsError: Unable to locate credentials`, naming no domain, and the config's other
    problems went unsaid."""
    from parammix_core.stages import preflight

    listed = preflight.domain_files

    def no_credentials(exp, name):
        if name == "b":
            raise RuntimeError("Unable to locate credentials")
        return listed(exp, name)

    monkeypatch.setattr(preflight, "domain_files", no_credentials)
    path = config(tmp_path, model={"checkpoint": str(tmp_path / "nowhere")})
    assert main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: preflight: 2 inputs cannot be read:\n  domain 'b' (")
    assert (
        "): RuntimeError: Unable to locate credentials\n  model.checkpoint: no such folder" in err
    )
    assert "Traceback" not in err


def test_a_config_bad_in_its_tasks_and_its_inputs_has_both_named(tmp_path, capsys, no_flow):
    """An audit (2026-12-07): a bad task hid the missing corpus until the task was fixed."""
    path = config(tmp_path, evaluation={"tasks": [{"name": "no_such_task_xyz", "group": "g"}]})
    data = yaml.safe_load(path.read_text())
    data["data"]["domains"][1]["paths"] = [str(tmp_path / "missing" / "*.jsonl")]
    path.write_text(yaml.safe_dump(data))
    for argv in (["validate-config", str(path)], ["run", "--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: 1 invalid evaluation field(s)\n"), err
        assert "no_such_task_xyz" in err and "\npreflight: domain 'b': " in err
        assert sum(line.startswith("error:") for line in err.splitlines()) == 1
