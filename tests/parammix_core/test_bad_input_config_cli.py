"""Bad config files and overrides: each fails at load with the file and the field's path,
through a YAML file or the `parammix` command line (exit code 2, and a `run` that creates no
store and starts no flow); duplicate keys, alias bombs, bad encodings and empty files too."""

import sys
import types
from pathlib import Path

import pytest

from flows.cli import main
from parammix_core.config import ConfigError, load_experiment


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

    monkeypatch.setitem(sys.modules, "flows.param_mix", types.SimpleNamespace(param_mix=refuse))


def test_a_preset_name_is_a_config_and_a_wrong_one_lists_the_presets(tmp_path, capsys, monkeypatch):
    """Deployments took `config=micro`, the CLI refused it (audit 38)."""
    monkeypatch.chdir(tmp_path)
    assert main(["show-config", "--config", "micro"]) == 0
    assert capsys.readouterr().out.startswith("name: micro\n")
    assert main(["show-config", "--config", "mikro"]) == 2
    assert "error: config 'mikro': no such preset; presets are [" in capsys.readouterr().err
    (tmp_path / "micro").write_text("name: mine\n")  # a file of that name here wins
    assert main(["show-config", "--config", "micro"]) == 0
    assert capsys.readouterr().out.startswith("name: mine\n")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.expert.stepz=5", "training.expert.stepz: no such field; did you mean 'steps'?"),
        ("training.expert.steps=true", "training.expert.steps: expected a number, not a boolean"),
        ("training.base.steps=0", "training.base.steps: Input should be greater than 0 (got 0)"),
        ("data.domains.1.name=math", "data.domains: duplicate domain names: ['math']"),
        ("data.domains=[]", "data.domains: List should have at least 1 item"),
        ("search.group_weights={music: 1.0}", "search.group_weights: unknown groups ['music']"),
        ("search.bounds={poetry: {min: 0.2}}", "search.bounds: unknown domains ['poetry']"),
        ("training.replay=1", "training.replay: Input should be less than 1 (got 1)"),
        ("data.dedup=yes", "data.dedup: expected true or false (got 'yes')"),
        ("data.dedup=1", "data.dedup: expected true or false (got 1)"),
        ("seed=", "seed: Input should be a valid integer (got null: the value is empty)"),
        ("seed=1:00", "seed: Input should be a valid integer, unable to parse string"),
        ("trainin.expert.steps=5", "trainin: no such field; did you mean 'training'?"),
    ],
    ids=[
        "unknown-key",
        "bool-steps",
        "zero-steps",
        "duplicate-domain",
        "zero-experts",
        "unknown-group",
        "unknown-domain",
        "replay-all",
        "yes-is-not-a-flag",
        "one-is-not-a-flag",
        "empty-value",
        "sexagesimal",
        "mistyped-section",
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


def test_yaml_is_read_as_yaml_1_2_with_merge_keys(tmp_path):
    """PyYAML's YAML 1.1 read `017` as 15 and refused `1e3` as a count (audit 38)."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "seed: 017\nsearch: {n_mixtures: 1e3}\nname: 2026-12-07\n"
        "training:\n  base: &t {steps: 40, batch_size: 8}\n  expert: {<<: *t, steps: 0x10}\n"
    )
    exp = load_experiment(path)
    assert (exp.seed, exp.search.n_mixtures, exp.name) == (17, 1000, "2026-12-07")
    assert (exp.training.expert.steps, exp.training.expert.batch_size) == (16, 8)


def test_overrides_trim_the_key_and_cut_a_long_value(capsys, no_flow):
    assert main(["show-config", "--set", " seed = 5"]) == 0
    assert "\nseed: 5\n" in capsys.readouterr().out
    assert main(["show-config", "--set", "seed=" + "9" * 5000]) == 2
    err = capsys.readouterr().err
    assert "refused: a number of 5000 digits (line 1); too large" in err
    assert len(err) < 300 and "sys.set_int_max_str_digits" not in err


@pytest.mark.parametrize(
    ("override", "missing"),
    [
        ("validation.enabled=false", "validation.enabled"),
        ("search.strategy=multifidelity", "a search.strategy other than multifidelity"),
    ],
)
def test_calibrate_without_its_real_runs_names_what_it_needs(
    tmp_path, capsys, no_flow, override, missing
):
    argv = ["run", "--set", f"store.url={tmp_path / 's'}", "--set", "search.utility.calibrate=true"]
    assert main([*argv, "--set", override]) == 2
    err = capsys.readouterr().err
    assert f"search.utility.calibrate needs {missing}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


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


def _bomb(levels: int, width: int) -> str:
    """A "billion laughs": each level holds `width` aliases of the one before."""
    lines = ["store:", "  storage_options:", "    l0: &l0 [lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("levels", "width", "expected"),
    [
        (9, 10, "refused: more than 64 aliases"),  # 4.8e8 leaves from 80 aliases
        (24, 2, "refused: the document expands to more than 100000 values"),  # 46 aliases
    ],
    ids=["many-aliases", "few-aliases-deep"],
)
def test_yaml_alias_bomb_is_refused_fast_and_small(
    tmp_path, capsys, no_flow, monkeypatch, levels, width, expected
):
    import resource

    from parammix_core.config.yaml_loader import _ConfigLoader

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
    with pytest.raises(ConfigError, match=r"many\.yaml: refused: more than 64 aliases \(line 2\)"):
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
    assert "the value: refused: more than 64 aliases" in capsys.readouterr().err


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
