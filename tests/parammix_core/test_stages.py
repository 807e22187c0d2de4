"""The hashing contract: which config changes make which artifacts new (marin style)."""

import numpy as np

from parammix_core import stages
from parammix_core.config import Experiment, parse_experiment


def refs(exp: Experiment) -> dict[str, str]:
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    experts = [stages.expert_ref(exp, d, data, base) for d in exp.domains]
    evals = [stages.eval_ref(exp, b, data, base, experts) for b in stages.mixture_batches(exp)]
    probe = stages.probe_ref(exp, data, base, experts)
    surrogates = stages.surrogate_ref(exp, evals, probe)
    choice = stages.choice_ref(exp, surrogates, data)
    return {
        "data": data.key,
        "base": base.key,
        "experts": "".join(e.key for e in experts),
        "evals": "".join(e.key for e in evals),
        "probe": probe.key,
        "surrogates": surrogates.key,
        "choice": choice.key,
        "report": stages.report_ref(exp, surrogates, choice, probe).key,
    }


def changed(**overrides) -> set[str]:
    """Names of the stages whose key changes when these dotted fields are overridden."""
    data = Experiment().model_dump(mode="json")
    for path, value in overrides.items():
        node = data
        *head, last = path.split("__")
        for k in head:
            node = node[k]
        node[last] = value
    before, after = refs(Experiment()), refs(parse_experiment(data))
    return {k for k in before if before[k] != after[k]}


ALL = {"data", "base", "experts", "evals", "probe", "surrogates", "choice", "report"}


def test_same_config_same_keys():
    assert refs(Experiment()) == refs(Experiment())


def test_runtime_store_and_name_change_nothing_but_the_report_title():
    assert changed(runtime__max_workers=7, runtime__torch_threads=2, runtime__device="cpu") == set()
    assert changed(store__url="s3://bucket/elsewhere", store__verify="size") == set()
    assert changed(name="renamed") == {"report"}


def test_each_slice_invalidates_only_downstream():
    assert changed(seed=1) == ALL
    assert changed(data__vocab_size=1024) == ALL
    assert changed(training__base__steps=500) == ALL - {"data"}
    assert changed(training__expert__lr=5e-4) == ALL - {"data", "base"}
    assert changed(training__precision="bf16") == ALL - {"data"}  # weights differ
    assert changed(training__engine="deepspeed") == ALL - {"data"}
    assert changed(evaluation__batch_size=8) == {"evals", "surrogates", "choice", "report"}
    assert changed(probe__batch_size=4) == {"probe", "surrogates", "choice", "report"}
    assert changed(search__cv_folds=4) == {"surrogates", "choice", "report"}
    assert changed(search__top_k=8) == {"choice", "report"}
    assert changed(search__n_mixtures=64) == {"evals", "surrogates", "choice", "report"}


def test_experts_are_keyed_by_domain():
    exp = Experiment()
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    keys = {stages.expert_ref(exp, d, data, base).key for d in exp.domains}
    assert len(keys) == len(exp.domains)


def test_evaluation_plan_covers_vertices_and_uniform():
    exp = Experiment()
    mixtures = stages.evaluation_mixtures(exp)
    k = len(exp.domains)
    assert mixtures.shape == (exp.search.n_mixtures, k)
    assert (mixtures[:k] == np.eye(k)).all()
    assert abs(mixtures[k] - 1 / k).max() < 1e-12
    batches = stages.mixture_batches(exp)
    assert sum(len(b) for b in batches) == exp.search.n_mixtures
    assert all(len(b) <= exp.search.batch_size for b in batches)
