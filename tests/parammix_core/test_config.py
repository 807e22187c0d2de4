import re
from pathlib import Path

import pytest
import yaml

from parammix_core.config import ConfigError, Experiment, load_experiment, parse_experiment
from parammix_core.config.overrides import apply_overrides

ROOT = Path(__file__).resolve().parents[2]


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(data, "exp.yaml")
    return str(info.value)


def _fields(node: object, prefix: str = "") -> set[str]:
    """Every dotted field path of a YAML tree (list items by index)."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    return {f for k, v in items for f in {f"{prefix}{k}", *_fields(v, f"{prefix}{k}.")}}


def test_default_yaml_is_the_embedded_default():
    path = ROOT / "configs" / "default.yaml"
    assert load_experiment(path) == Experiment()
    # every field written out, so a user reading the file sees every setting the run uses
    written = _fields(yaml.safe_load(path.read_text()))
    assert written == _fields(yaml.safe_load(Experiment().to_yaml()))


# the default until 2026-12-07, which every earlier measurement of the default ran
SHORT_EXPERTS = ["training.expert.steps=120", "validation.budget=experts"]


def test_short_experts_yaml_is_the_default_of_earlier_measurements():
    """Only the experts' steps and the validation's budget differ from today's default."""
    measured = apply_overrides(Experiment(), SHORT_EXPERTS, "--set")
    preset = load_experiment(ROOT / "configs" / "short-experts.yaml")
    assert preset.model_copy(update={"name": measured.name}) == measured
    assert (preset.training.expert.steps, preset.validation.budget) == (120, "experts")
    assert (Experiment().training.expert.steps, Experiment().validation.budget) == (360, "final")


def test_larger_cpu_yaml_is_the_measured_command():
    """benchmarks/RESULTS.md measured the larger model as the default of the time plus these
    `--set`s; the preset must build the same experiment (the name is in no artifact's key)."""
    measured = apply_overrides(
        Experiment(),
        [
            *SHORT_EXPERTS,
            "model.hidden_size=192",
            "model.num_layers=4",
            "model.intermediate_size=512",
            "training.precision=bf16",
        ],
        "--set",
    )
    preset = load_experiment(ROOT / "configs" / "larger-cpu.yaml")
    assert preset.model_copy(update={"name": measured.name}) == measured
    assert preset.name == "larger-cpu"


def test_yaml_round_trip():
    exp = Experiment()
    assert parse_experiment(yaml.safe_load(exp.to_yaml())) == exp


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"trainng": {}}, "trainng: no such field; did you mean 'training'?"),
        (
            {"data": {"domains": [{"name": "m", "builtin": "math", "colour": 1}]}},
            "data.domains.0.colour: no such field; the fields here are name, builtin, paths, "
            "text_field, max_documents",
        ),
        ({"training": {"expert": {"steps": 0}}}, "training.expert.steps: Input should be greater"),
        ({"training": {"expert": {"lr": "fast"}}}, "training.expert.lr: Input should be a valid"),
        ({"training": {"expert": {"lr": float("nan")}}}, "training.expert.lr"),
        (
            {
                "data": {
                    "domains": [{"name": "a", "builtin": "math"}, {"name": "a", "builtin": "code"}]
                }
            },
            "duplicate domain names: ['a']",
        ),
        ({"data": {"domains": []}}, "data.domains: List should have at least 1 item"),
        ({"data": {"domains": [{"name": "a"}]}}, "set exactly one of 'builtin' or 'paths'"),
        (
            {"search": {"bounds": {"poetry": {"min": 0.1}}}},
            "search.bounds: unknown domains ['poetry']",
        ),
        (
            {"search": {"bounds": {"math": {"min": 0.7}, "code": {"min": 0.6}}}},
            "minimums sum to 1.3 > 1",
        ),
        ({"search": {"group_weights": {"music": 1.0}}}, "unknown groups ['music']"),
        ({"search": {"group_weights": {"math": 2.0}}}, "no weight for groups ['code', 'knowledge'"),
        ({"search": {"bounds": {"math": {"min": 0.5, "max": 0.2}}}}, "min must not exceed max"),
        (
            {"validation": {"budget": "long"}},
            "validation.budget: Input should be 'experts' or 'final'",
        ),
        ({"model": {"hidden_size": 100, "num_heads": 3}}, "divisible by num_heads"),
        ({"training": {"expert": {"warmup_steps": 500}}}, "warmup_steps must be smaller"),
        (
            {"evaluation": {"tasks": [{"name": "x", "group": "g"}, {"name": "x", "group": "h"}]}},
            "duplicate task names",
        ),
        ({"search": {"n_mixtures": 3}}, "cover the vertices"),
    ],
)
def test_bad_values_name_the_field(data: dict, expected: str):
    message = _error(data)
    assert message.startswith("exp.yaml:")
    assert expected in message
    assert "<root>" not in message  # a check across fields names its fields itself


def test_load_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=re.escape("no such config file")):
        load_experiment(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=re.escape("bad.yaml: not valid YAML")):
        load_experiment(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match=re.escape("top level must be a mapping")):
        load_experiment(scalar)


def test_every_shipped_config_loads():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_experiment(path)
