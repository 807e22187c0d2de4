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
        # DeMix's settings
        (
            {"search": {"strategies": {"demix": {"halvings": -1}}}},
            "search.strategies.demix.halvings: Input should be greater than or equal to 0",
        ),
        (
            {"search": {"strategies": {"demix": {"pool": 100, "top": 500}}}},
            "search.strategies.demix.top: top (500) must not exceed pool (100)",
        ),
        (
            {"search": {"strategies": {"demix": {"strength_max": 0.2}}}},
            "search.strategies.demix.strength_max: strength_max (0.2) must not be below "
            "strength_min (0.5)",
        ),
        (
            {"search": {"strategies": {"demix": {"max_usage": 0.5}}}},
            "search.strategies.demix.max_usage: Input should be greater than or equal to 1",
        ),
        (
            {"search": {"strategies": {"demix": {"temperature": 0}}}},
            "search.strategies.demix.temperature: Input should be greater than 0",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"budget": 0}}}},
            "search.strategies.multifidelity.budget: Input should be greater than 0",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"exponent_decay": 1.5}}}},
            "search.strategies.multifidelity.exponent_decay: Input should be less than or equal",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"num_restarts": 9, "raw_samples": 4}}}},
            "search.strategies.multifidelity: raw_samples must be at least num_restarts",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"fidelities": ["run", "run"]}}}},
            "search.strategies.multifidelity: fidelities must name merge and/or run once each",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"fidelities": ["longer"]}}}},
            "search.strategies.multifidelity.fidelities.0: Input should be 'merge' or 'run'",
        ),
        # a search target that is neither named nor a corpus
        (
            {"search": {"target": "benchmarks"}},
            "search.target.tasks|heldout: Input should be 'tasks' or 'heldout' (got 'benchmarks')",
        ),
        (
            {"search": {"target": {"paths": []}}},
            "search.target.corpus.paths: List should have at least 1 item",
        ),
        (
            {"search": {"target": {"paths": ["t.jsonl"], "field": "body"}}},
            "search.target.corpus.field: Extra inputs are not permitted",
        ),
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
        "demix-negative-halvings",
        "demix-top-above-pool",
        "demix-strengths-reversed",
        "demix-usage-below-1",
        "demix-zero-temperature",
        "zero-multifidelity-budget",
        "multifidelity-decay-above-1",
        "multifidelity-few-raw-samples",
        "multifidelity-fidelity-twice",
        "multifidelity-unknown-fidelity",
        "unknown-search-target",
        "target-corpus-without-paths",
        "target-corpus-unknown-key",
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
        ("training.expert.steps=[1", "the value: not valid YAML"),
    ],
    ids=["list-index-not-a-number", "list-index-out-of-range", "below-a-number", "bad-yaml"],
)
def test_override_of_a_path_that_does_not_exist(tmp_path, capsys, no_flow, override, expected):
    assert main(["run", "--set", f"store.url={tmp_path / 'store'}", "--set", override]) == 2
    assert f"error: --set {override!r}: {expected}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"search": {"n_mixtures": 10**12}}, "search.n_mixtures: Input should be less than or"),
        ({"search": {"n_candidates": 10**9}}, "search.n_candidates: Input should be less than"),
        ({"training": {"expert": {"steps": 10**10}}}, "training.expert.steps: Input should be"),
        ({"data": {"block_size": 1 << 30}}, "data.block_size: Input should be less than or equal"),
        ({"model": {"hidden_size": 10**6}}, "model.hidden_size: Input should be less than or"),
        ({"validation": {"reruns": 10**4}}, "validation.reruns: Input should be less than or"),
        ({"seed": 2**40}, "seed: Input should be less than or equal to 2147483647"),
        (
            {"data": {"domains": [{"name": "d" * 65, "builtin": "math"}]}},
            "data.domains.0.name: String should have at most 64 characters",
        ),
        (
            {"store": {"url": "nosuchscheme://bucket/prefix"}},
            "store.url: unknown URL scheme 'nosuchscheme'",
        ),
        (
            {"model": {"checkpoint": "s4://models/base"}},
            "model.checkpoint: unknown URL scheme 's4'",
        ),
        (
            {"data": {"domains": [{"name": "a", "paths": ["htps2://x/a.jsonl"]}]}},
            "data.domains.0.paths.0: unknown URL scheme 'htps2'",
        ),
        (
            {"store": {"storage_options": {f"k{i}": i for i in range(300)}}},
            "store.storage_options: more than 256 entries in all",
        ),
        (
            {"store": {"storage_options": {"a": {"b": {"c": {"d": {"e": 1}}}}}}},
            "store.storage_options: a.b.c.d: nested deeper than 4 levels",
        ),
        (
            {"store": {"storage_options": {"endpoint_url": "x" * 5000}}},
            "store.storage_options: endpoint_url: string longer than 4096 characters",
        ),
        (
            {"runtime": {"ray": {"runtime_env": {"env_vars": {str(i): "x" for i in range(300)}}}}},
            "runtime.ray.runtime_env: more than 256 entries in all",
        ),
        (
            {
                "data": {
                    "domains": [{"name": "a", "builtin": "math"}, {"name": "b", "builtin": "sft"}]
                },
                "search": {"n_mixtures": 3, "cv_folds": 2},
            },
            "search.n_mixtures=3 is too few for search.cv_folds=2",
        ),
    ],
    ids=[
        "n-mixtures-1e12",
        "n-candidates-1e9",
        "steps-1e10",
        "block-size-1g",
        "hidden-size-1e6",
        "reruns-1e4",
        "seed-2e40",
        "domain-name-too-long-for-a-file",
        "unknown-store-scheme",
        "unknown-checkpoint-scheme",
        "unknown-corpus-scheme",
        "storage-options-too-many",
        "storage-options-too-deep",
        "storage-options-huge-string",
        "runtime-env-too-many",
        "mixtures-too-few-for-the-folds",
    ],
)
def test_counts_names_and_free_form_mappings_are_bounded(data, expected):
    assert expected in _error(data)


def _bomb(levels: int, width: int) -> str:
    """A "billion laughs": each level holds `width` aliases of the one before."""
    lines = ["store:", "  storage_options:", "    l0: &l0 [lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("levels", "width", "expected"),
    [
        (9, 10, "not valid YAML: more than 64 aliases"),  # 4.8e8 leaves from 80 aliases
        (24, 2, "refused: the document expands to more than 100000 values"),  # 46 aliases
    ],
    ids=["many-aliases", "few-aliases-deep"],
)
def test_yaml_alias_bomb_is_refused_fast_and_small(
    tmp_path, capsys, no_flow, monkeypatch, levels, width, expected
):
    import resource

    from parammix_core.config.experiment import _ConfigLoader

    def never(self, node):
        raise AssertionError("the document was expanded")

    monkeypatch.setattr(_ConfigLoader, "construct_document", never)  # refused before it
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(levels, width))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["validate-config", str(path)]) == 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {expected}")
    assert main(["run", "--config", str(path)]) == 2
    assert expected in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [path]


def test_many_aliases_are_refused_and_a_few_allowed(tmp_path):
    few = tmp_path / "few.yaml"
    few.write_text(
        "training:\n  base: &t {steps: 40, batch_size: 8, warmup_steps: 2}\n  expert: *t\n"
    )
    exp = load_experiment(few)
    assert exp.training.expert.steps == exp.training.base.steps == 40
    many = tmp_path / "many.yaml"
    many.write_text("a: &a 1\nb: [" + ", ".join(["*a"] * 70) + "]\n")
    with pytest.raises(ConfigError, match=r"many\.yaml: not valid YAML: more than 64 aliases"):
        load_experiment(many)


def test_override_values_have_the_same_limits(capsys, no_flow):
    bomb = (
        "{a: &a [x, x, x, x, x, x, x, x, x, x], "
        + ", ".join(
            f"b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 10) + "]"
            for i in range(7)
        )
        + "}"
    )
    assert main(["show-config", "--set", f"store.storage_options={bomb}"]) == 2
    assert "the value: not valid YAML: more than 64 aliases" in capsys.readouterr().err


def test_non_utf8_config_is_a_config_error(tmp_path, capsys, no_flow):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    for argv in (["validate-config", str(path)], ["run", "--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"error: {path}: not UTF-8 text (byte offset 9)\n"
    assert not (tmp_path / ".parammix").exists()


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_config_file_is_refused(tmp_path, capsys, no_flow, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: the file is empty;")
    assert "leave out --config for the embedded default" in err
    assert list(tmp_path.iterdir()) == [path]  # no store made in the working directory
