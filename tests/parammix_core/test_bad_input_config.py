"""Bad configs beyond test_config.py: each fails at load with the file and the field's path,
through `parse_experiment`, a YAML file, or the `parammix` command line (exit code 2, and a
`run` that creates no store and starts no flow)."""

import math
import sys
import types
from pathlib import Path

import pytest

from flows.cli import main
from parammix_core.config import ConfigError, load_experiment, parse_experiment

GROUPS = ("math", "code", "knowledge", "language", "reasoning")


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(data, "exp.yaml")
    message = str(info.value)
    assert message.startswith("exp.yaml: 1 invalid field(s)\n")
    return message


def _weights(**changed: float) -> dict:
    return {"search": {"group_weights": {g: changed.get(g, 1.0) for g in GROUPS}}}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # unknown keys, deep down
        (
            {"search": {"strategies": {"bayes": {"n_inital": 4}}}},
            "search.strategies.bayes.n_inital: Extra inputs are not permitted",
        ),
        # wrong types
        ({"data": {"domains": "math"}}, "data.domains: Input should be a valid list (got 'math')"),
        (
            {"search": {"bounds": {"math": 0.5}}},
            "search.bounds.math: Input should be a valid dictionary or instance of Bounds",
        ),
        (
            {"data": {"block_size": 12.5}},
            "data.block_size: Input should be a valid integer, got a number with a fractional",
        ),
        (
            {"training": {"expert": {"lr": True}}},
            "training.expert.lr: expected a number, not a boolean (got True)",
        ),
        (
            {"training": {"base": {"batch_size": False}}},
            "training.base.batch_size: expected a number, not a boolean (got False)",
        ),
        # mixture and utility weights: negative, NaN, infinite
        (_weights(code=-1.0), "search.group_weights.code: Input should be greater than 0"),
        (_weights(math=math.nan), "search.group_weights.math: Input should be a finite number"),
        (_weights(language=math.inf), "search.group_weights.language: Input should be a finite"),
        (
            {"search": {"bounds": {"web": {"min": -0.1}}}},
            "search.bounds.web.min: Input should be greater than or equal to 0",
        ),
        (
            {"search": {"bounds": {"sft": {"max": math.inf}}}},
            "search.bounds.sft.max: Input should be a finite number",
        ),
        # bounds that leave no mixture summing to 1
        (
            {"search": {"bounds": {d: {"max": 0.2} for d in ("math", "code", "sft", "web")}}},
            "search.bounds: the domain maximums sum to 0.8 < 1",
        ),
        # steps <= 0 wherever there are steps
        ({"training": {"base": {"steps": -5}}}, "training.base.steps: Input should be greater"),
        (
            {"search": {"strategies": {"mixmin": {"steps": 0}}}},
            "search.strategies.mixmin.steps: Input should be greater than 0",
        ),
        (
            {"training": {"expert": {"checkpoint_every": 0}}},
            "training.expert.checkpoint_every: Input should be greater than 0",
        ),
        # no benchmark at all
        ({"evaluation": {"tasks": []}}, "evaluation.tasks: List should have at least 1 item"),
    ],
    ids=[
        "unknown-nested-key",
        "list-expected",
        "mapping-expected",
        "fractional-int",
        "bool-as-float",
        "bool-as-int",
        "negative-group-weight",
        "nan-group-weight",
        "infinite-group-weight",
        "negative-bound",
        "infinite-bound",
        "maximums-below-1",
        "negative-steps",
        "zero-strategy-steps",
        "zero-checkpoint-every",
        "no-tasks",
    ],
)
def test_bad_value_names_the_field(data, expected):
    assert expected in _error(data)


def test_duplicate_yaml_key_names_file_key_and_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "search:\n  bounds:\n    math: {min: 0.1}\n    code: {min: 0.1}\n    math: {min: 0.5}\n"
    )
    with pytest.raises(ConfigError, match=r"exp\.yaml: not valid YAML: duplicate key 'math'"):
        load_experiment(path)
    top = tmp_path / "top.yaml"
    top.write_text("training: {expert: {steps: 5}}\nseed: 1\ntraining: {base: {steps: 9}}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'training'\n.*line 3"):
        load_experiment(top)


# --- the command line: what a user sees --------------------------------------------------


@pytest.fixture
def no_flow(monkeypatch):
    """`parammix run` must fail before it imports or starts the flow."""

    def refuse(*args, **kwargs):
        raise AssertionError("the flow was started")

    monkeypatch.setitem(sys.modules, "flows.param_mix", types.SimpleNamespace(with_workers=refuse))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.expert.stepz=5", "training.expert.stepz: Extra inputs are not permitted"),
        ("training.expert.steps=yes", "training.expert.steps: expected a number, not a boolean"),
        ("training.base.steps=0", "training.base.steps: Input should be greater than 0 (got 0)"),
        ("data.domains.1.name=math", "data.domains: duplicate domain names: ['math']"),
        ("data.domains=[]", "data.domains: List should have at least 1 item"),
        ("search.group_weights={music: 1.0}", "search.group_weights: unknown groups ['music']"),
        ("search.bounds={poetry: {min: 0.2}}", "search.bounds: unknown domains ['poetry']"),
    ],
    ids=[
        "unknown-key",
        "bool-steps",
        "zero-steps",
        "duplicate-domain",
        "zero-experts",
        "unknown-group",
        "unknown-domain",
    ],
)
def test_run_with_a_bad_override_exits_2_and_creates_nothing(
    tmp_path, capsys, no_flow, override, expected
):
    store = tmp_path / "store"
    argv = ["run", "--set", f"store.url={store}", "--set", override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: <embedded default> with --set: 1 invalid field(s)\n")
    assert expected in err
    assert list(tmp_path.iterdir()) == []  # no store, no staging, nothing


def test_run_with_a_bad_config_file_exits_2_and_creates_nothing(tmp_path, capsys, no_flow):
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"store: {{url: {tmp_path / 'store'}}}\n"
        "data:\n  domains:\n    - {name: m, builtin: math}\n    - {name: c, builtin: code}\n"
        "search:\n  group_weights: {math: 1.0, code: 1.0, knowledge: .nan, language: 1.0,"
        " reasoning: 1.0}\n"
    )
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: 1 invalid field(s)" in err
    assert "search.group_weights.knowledge: Input should be a finite number" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_validate_config_reports_every_bad_field_with_the_file(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "data:\n  domains:\n    - {name: a, builtin: math}\n    - {name: a, builtin: code}\n"
        "  block_size: big\nmodel: {checkpoint: 7}\n"
    )
    assert main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: 3 invalid field(s)" in err
    assert "data.domains: duplicate domain names: ['a']" in err
    assert "data.block_size: Input should be a valid integer, unable to parse string" in err
    assert "model.checkpoint: Input should be a valid string (got 7)" in err


def test_validate_config_with_a_duplicate_key(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 1\nseed: 2\n")
    assert main(["validate-config", str(path)]) == 2
    assert f"error: {path}: not valid YAML: duplicate key 'seed'" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys, no_flow):
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert f"error: {tmp_path / 'nope.yaml'}: no such config file" in capsys.readouterr().err
    assert list(Path(tmp_path).iterdir()) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.domains.x.name=foo", "the config has no field 'data.domains.x.name'"),
        ("data.domains.9.name=foo", "the config has no field 'data.domains.9.name'"),
        ("seed.offset=1", "the config has no field 'seed.offset'"),
        ("training.expert.steps=[1", "the value is not valid YAML"),
    ],
    ids=["list-index-not-a-number", "list-index-out-of-range", "below-a-number", "bad-yaml"],
)
def test_override_of_a_path_that_does_not_exist(tmp_path, capsys, no_flow, override, expected):
    assert main(["run", "--set", f"store.url={tmp_path / 'store'}", "--set", override]) == 2
    assert f"error: --set {override!r}: {expected}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
