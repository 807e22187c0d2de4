"""Bad config values beyond test_config.py: each fails at load, through `parse_experiment`,
with the field's path; counts, names and free-form mappings are bounded. Bad config files and
overrides met through the `parammix` command line are in test_bad_input_config_cli.py."""

import math

import pytest

from parammix_core.config import ConfigError, parse_experiment

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
            "search.strategies.bayes.n_inital: no such field; did you mean 'n_init'?",
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
            {
                "search": {
                    "strategy": "multifidelity",
                    "interval": {"level": 0.95},
                    "strategies": {"multifidelity": {"shuffles": 19}},
                }
            },
            "search: strategies.multifidelity.shuffles: 19 shuffles cannot show the GP beats "
            "them at one-sided 0.025 (interval.level 0.95); need at least 39",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"fidelities": ["run", "run"]}}}},
            "search.strategies.multifidelity: fidelities must name merge, run and/or long once "
            "each",
        ),
        (
            {"search": {"strategies": {"multifidelity": {"fidelities": ["longer"]}}}},
            "search.strategies.multifidelity.fidelities.0: Input should be 'merge', 'run' or "
            "'long'",
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
            "search.target.corpus.field: no such field",
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
        "multifidelity-too-few-shuffles",
        "multifidelity-fidelity-twice",
        "multifidelity-unknown-fidelity",
        "unknown-search-target",
        "target-corpus-without-paths",
        "target-corpus-unknown-key",
    ],
)
def test_bad_value_names_the_field(data, expected):
    assert expected in _error(data)


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
