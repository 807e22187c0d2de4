"""Stage search_inputs on a micro setup: each `search.target`, what its key covers, and the
held-out target computed exactly as before targets were configurable."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from parammix_core import stages
from parammix_core.config import Experiment, apply_overrides, load_experiment
from parammix_core.data import DataError, load_prepared
from parammix_core.model import load_model
from parammix_core.search import search_bounds, strategy_from_config
from parammix_core.search.mergemix import learn_merge_weights, merged_loss_objective
from parammix_core.search.mixmin import mixmin, sequence_logprobs
from parammix_core.stages.common import merge_states
from parammix_core.stages.search_inputs import strategy_inputs

ROOT = Path(__file__).resolve().parents[3]


def micro(store: str, *overrides: str) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    settings = [f"store.url={store}", "runtime.device=cpu", *overrides]
    return apply_overrides(exp, settings, "configs/micro.yaml")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    store_url = str(tmp_path_factory.mktemp("store"))
    exp = micro(store_url)
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    return store_url, store, data, base, experts


def inputs(setup, *overrides: str):
    store_url, store, data, base, experts = setup
    exp = micro(store_url, *overrides)
    return exp, stages.search_inputs(exp, store, data, base, experts)


def heldout_blocks(exp: Experiment, store, data) -> torch.Tensor:
    """Before `search.target`: the first target_sequences held-out blocks of every domain."""
    heldout = load_prepared(store.local_dir(data)).heldout
    n = exp.search.target_sequences
    return torch.cat([heldout[d][:n] for d in exp.domains]).long()


def test_heldout_target_reproduces_the_numbers_before_targets(setup):
    _, store, data, base, experts = setup
    exp, ref = inputs(setup, "search.strategy=mixmin", "search.target=heldout")
    blocks = heldout_blocks(exp, store, data)
    want = np.stack(
        [
            sequence_logprobs(
                load_model(str(store.local_dir(e)), exp.model, "cpu"), blocks, 32, "cpu"
            )
            for e in experts
        ]
    )
    got = strategy_inputs(exp, store, ref)
    np.testing.assert_array_equal(got["logprobs"], want)
    assert got["weights"] is None
    assert store.manifest(ref)["info"]["target"] == "heldout"

    exp, ref = inputs(
        setup,
        "search.strategy=mergemix",
        "search.target=heldout",
        "search.strategies.mergemix.steps=4",
    )
    model = load_model(str(store.local_dir(base)), exp.model, "cpu")
    base_state, states = merge_states(exp, store, base, experts, "cpu")
    batches = [blocks[i : i + 32] for i in range(0, len(blocks), 32)]  # evaluation.batch_size
    assert exp.training.replay == 0.1  # the experts': the mixture merges past them
    objective = merged_loss_objective(model, base_state, states, batches, replay=0.1)
    lo, hi = search_bounds(exp.domains, exp.search.bounds)
    want = learn_merge_weights(objective, 2, 4, 0.5, exp.seed, lo, hi)
    np.testing.assert_array_equal(store.load_json(ref, "mergemix.json")["optimum"], want)


def test_tasks_target_weights_every_group_equally_by_default(setup):
    store = setup[1]
    exp, ref = inputs(setup, "search.strategy=mixmin")
    assert exp.search.target == "tasks"
    got = strategy_inputs(exp, store, ref)
    n_docs = exp.evaluation.builtin_docs_per_task
    n = len(exp.evaluation.tasks) * n_docs  # the built-in suite: one task per group
    assert got["logprobs"].shape == (2, n) and (got["logprobs"] < 0).all()
    np.testing.assert_allclose(got["weights"], np.full(n, 1 / n), rtol=1e-12)
    strategy = strategy_from_config(exp.search, exp.domains, exp.seed, **got)
    w = mixmin(got["logprobs"], weights=got["weights"])  # over the replay 0.1 experts
    np.testing.assert_allclose(strategy.optimum, 0.9 * w + 0.05, atol=1e-12)
    info = store.manifest(ref)["info"]
    assert info["target"] == "tasks" and info["sequences"] == n

    _, ref = inputs(setup, "search.strategy=mergemix", "search.strategies.mergemix.steps=4")
    info = store.manifest(ref)["info"]
    assert info["target"] == "tasks" and info["dev_loss"] <= info["uniform_dev_loss"] + 1e-12


def test_a_corpus_drawn_from_one_domain_favours_its_expert(setup, tmp_path: Path):
    _, store, data, _, _ = setup
    texts = load_prepared(store.local_dir(data)).heldout_texts["math"]
    corpus = tmp_path / "target.jsonl"
    corpus.write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    target = f"search.target={{paths: [{corpus}], text_field: body}}"
    exp, ref = inputs(setup, "search.strategy=mixmin", "search.target_sequences=8", target)
    got = strategy_inputs(exp, store, ref)
    assert got["logprobs"].shape == (2, 8) and got["weights"] is None
    alpha = strategy_from_config(exp.search, exp.domains, exp.seed, **got).optimum
    assert alpha[exp.domains.index("math")] > 0.9


def test_the_key_covers_the_target(setup, tmp_path: Path):
    store_url, _, data, base, experts = setup

    def key(*overrides: str) -> str:
        exp = micro(store_url, "search.strategy=mixmin", *overrides)
        return stages.inputs_ref(exp, data, base, experts).key

    weights = "search.group_weights={math: 2, code: 1, knowledge: 1, language: 1, reasoning: 1}"
    assert key() != key("search.target=heldout")
    assert key() != key(weights)  # the tasks target weighs groups as the utility
    assert key("search.target=heldout") == key("search.target=heldout", weights)
    corpus = tmp_path / "c.txt"
    corpus.write_text("one two three")
    target = f"search.target={{paths: [{corpus}]}}"
    before = key(target)
    corpus.write_text("one two three four")
    assert key(target) != before  # the corpus's fingerprint
    missing = f"search.target={{paths: [{tmp_path / 'nope.jsonl'}]}}"
    with pytest.raises(DataError, match=r"search.target.paths: .*nope.jsonl: no such file"):
        key(missing)
