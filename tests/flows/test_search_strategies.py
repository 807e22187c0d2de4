"""The flow's evaluation fan-out driven by each search strategy, on the micro config.

One store for the module: data, base and experts are trained once and shared by every strategy
(their keys do not depend on the strategy), so each run adds only its proposals and merges.
"""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.param_mix import param_mix
from parammix_core import stages
from parammix_core.config import Experiment, apply_overrides, load_experiment
from parammix_core.data import natural_weights
from parammix_core.search.mixmin import mixmin
from parammix_core.stages import mixed
from parammix_core.stages import multifidelity as mf
from parammix_core.store import ArtifactRef

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ["random", "surrogate", "demix", "bayes", "mixmin", "mergemix"]
FAST = [  # micro budgets: no validation, final training or probe; cheap strategy settings
    "validation.enabled=false",
    "final.enabled=false",
    "probe.enabled=false",
    "search.strategies.surrogate.min_rows=4",
    "search.strategies.bayes.num_restarts=2",
    "search.strategies.bayes.raw_samples=32",
    "search.strategies.mergemix.steps=20",
    # demix: iteration 0 is round 0 (3 initial + 1 prior draw), round 1 draws from the
    # predictor's top; usage caps at 1.2 x the natural proportions bind with two domains
    "search.strategies.demix.initial=4",
    "search.strategies.demix.pool=2000",
    "search.strategies.demix.top=32",
    "search.strategies.demix.max_usage=1.2",
    "search.target_sequences=8",
]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("search") / "store"


def micro(store: Path, strategy: str, *overrides: str) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    settings = [*FAST, f"search.strategy={strategy}", f"store.url={store}", *overrides]
    return apply_overrides(exp, settings, "configs/micro.yaml")


def one_fidelity(store: Path, fidelity: str, *overrides: str) -> Experiment:
    """BO on one fidelity: round 0's initial design and a draw, then one proposal, then done."""
    settings = ["budget=100", "per_round=1", "max_rounds=2", "num_restarts=2", "raw_samples=32"]
    return micro(
        store,
        "multifidelity",
        f"search.strategies.multifidelity.fidelities=[{fidelity}]",
        *(f"search.strategies.multifidelity.{s}" for s in settings),
        *overrides,
    )


def imports(root: Path, exp: Experiment) -> list[str]:
    """Three runs made elsewhere, as CSV files, and the override that imports them."""
    ids = ["ext-a", "ext-b", "ext-c"]
    pd.DataFrame({"run_id": ids, "math": [0.6, 0.8, 0.3], "sft": [0.4, 0.2, 0.7]}).to_csv(
        root / "ratios.csv", index=False
    )
    scores = {f"group.{g}": [0.30, 0.31, 0.32] for g in exp.evaluation.groups}
    pd.DataFrame({"run_id": ids, **scores}).to_csv(root / "metrics.csv", index=False)
    return [f"search.import_runs={{ratios: {root}/ratios.csv, metrics: {root}/metrics.csv}}"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_drives_the_fan_out(prefect_api, store_dir: Path, tmp_path: Path, strategy):
    plain = micro(store_dir, strategy)
    exp = (
        micro(store_dir, strategy, *imports(tmp_path, plain)) if strategy == "surrogate" else plain
    )
    refs = param_mix(exp, return_state=True).result()
    store = stages.open_store(exp)
    rows = store.load_parquet(refs["surrogates"], "rows.parquet")
    k, n = len(exp.domains), exp.search.n_mixtures

    merged = rows[rows["strategy"] != "imported"]
    assert len(merged) == n
    assert set(merged["strategy"]) == {strategy}
    assert merged["round"].tolist() == [0] * 4 + [1] * 4
    assert merged["proposal"].tolist() == [0, 1, 2, 3] * 2
    assert merged["source"].tolist() == ["initial"] * (k + 1) + ["proposed"] * (n - k - 1)
    x = merged[[f"alpha.{d}" for d in exp.domains]].to_numpy()
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-9)
    assert (x >= -1e-12).all()
    for g in exp.evaluation.groups:  # every proposal has its scores beside it
        assert merged[f"group.{g}"].between(-20, 0, inclusive="neither").all()  # minus bits/byte
    proposals = [m for m in store.artifacts() if m["stage"] == "proposals"]
    assert sum(m["info"]["strategy"] == strategy for m in proposals) == 2  # one per round

    data, base = refs["data"], refs["base"]
    experts = [refs[f"expert.{d}"] for d in exp.domains]
    if strategy == "random":  # exactly the fixed plan, in the fixed plan's batches and keys
        np.testing.assert_array_equal(x, stages.evaluation_mixtures(exp))
        for batch in stages.mixture_batches(exp):
            assert store.exists(stages.eval_ref(exp, batch, data, base, experts))
    if strategy == "surrogate":
        outside = rows[rows["strategy"] == "imported"]
        assert outside["run_id"].tolist() == ["ext-a", "ext-b", "ext-c"]
        fitted = store.load_json(refs["surrogates"], "cv.json")
        assert f"group.{exp.evaluation.groups[0]}" in fitted
        assert not any(t.startswith("loss.") for t in fitted)  # the imports have no losses
    if strategy in ("mixmin", "mergemix"):  # the first proposal is the strategy's optimum
        inputs = stages.inputs_ref(exp, data, base, experts)
        if strategy == "mixmin":
            tensors = store.load_tensors(inputs, "logprobs.safetensors")
            logprobs, weights = tensors["logprobs"].numpy(), tensors["weights"].numpy()
            n_docs = len(exp.evaluation.tasks) * exp.evaluation.builtin_docs_per_task
            assert logprobs.shape == (k, n_docs)  # the default target: the tasks' documents
            # replay 0.1 experts mixed at w stand for the data mixture 0.9 w + 0.1 / K
            w = mixmin(logprobs, weights=weights)
            np.testing.assert_allclose(x[k + 1], 0.9 * w + 0.1 / k, atol=1e-9)
        else:
            learned = store.load_json(inputs, "mergemix.json")
            np.testing.assert_allclose(x[k + 1], learned["optimum"], atol=1e-9)
            assert store.manifest(inputs)["info"]["dev_loss"] <= (
                store.manifest(inputs)["info"]["uniform_dev_loss"] + 1e-9
            )

    if strategy == "demix":  # DeMix samples around the natural proportions, under usage caps
        inputs = stages.inputs_ref(exp, data, base, experts)
        prior = store.load_json(inputs, "prior.json")["prior"]
        natural = natural_weights(store.load_json(data, "stats.json"))
        assert prior == pytest.approx({d: natural[d] for d in exp.domains}, abs=1e-12)
        caps = 1.2 * np.array([prior[d] for d in exp.domains])
        assert (x[k + 1 :] <= caps + 1e-9).all(), (x[k + 1 :], caps)

    keys = {m["key"] for m in store.artifacts()}
    again = param_mix(exp, return_state=True).result()
    assert again == refs
    assert {m["key"] for m in store.artifacts()} == keys  # a rerun publishes nothing new


@pytest.mark.slow
def test_multifidelity_interleaves_merges_and_real_runs(prefect_api, store_dir: Path):
    exp = micro(
        store_dir,
        "multifidelity",
        # on the micro model a merge's evaluation costs about a real run's 12 steps, so the
        # budget is generous and max_rounds ends the search; costs ignored: deterministic
        "search.strategies.multifidelity.budget=100",
        "search.strategies.multifidelity.per_round=3",
        "search.strategies.multifidelity.max_rounds=2",
        "search.strategies.multifidelity.cost_exponent=0",
        "search.strategies.multifidelity.num_restarts=2",
        "search.strategies.multifidelity.raw_samples=32",
    )
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    uniform = mixed.train_mixed(exp, store, [0.5, 0.5], exp.seed, data, base)  # validation's
    refs = param_mix(exp, return_state=True).result()
    experts = [refs[f"expert.{d}"] for d in exp.domains]

    rounds = sorted(
        (m for m in store.artifacts() if m["stage"] == "proposals" and "spent" in m["info"]),
        key=lambda m: m["info"]["round"],
    )
    info = [m["info"] for m in rounds]
    assert [i["done"] for i in info] == [False] * (len(info) - 1) + [True]
    assert len(info) == 3 and info[-1]["spent"] > 0  # rounds 0 and 1, then max_rounds
    assert all(a["spent"] < b["spent"] for a, b in itertools.pairwise(info)), info
    scored = [m for m in store.artifacts() if m["stage"] == "runevals"]
    scored_refs = [ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"]) for m in scored]
    rows = pd.concat([store.load_parquet(r, "rows.parquet") for r in scored_refs])
    assert (rows["fidelity"] == 1.0).all() and set(rows["device"]) == {"cpu"}
    assert (rows["seconds"] > 0).all()
    joined = mf.run_eval_ref(exp, uniform, data, base, experts)  # the validation run joined
    assert store.exists(joined)
    train_seconds = store.manifest(uniform)["info"]["seconds"]
    assert store.load_parquet(joined, "rows.parquet")["seconds"][0] > train_seconds
    assert len(scored) >= 2  # the joined run and at least one the search trained

    choice = stages.load_choice(store, refs["choice"])
    assert sum(choice.alpha.values()) == pytest.approx(1.0)
    assert "GP at fidelity 1 (real runs)" in choice.verdict
    keys = {m["key"] for m in store.artifacts()}
    assert param_mix(exp, return_state=True).result() == refs
    assert {m["key"] for m in store.artifacts()} == keys  # a rerun publishes nothing new


@pytest.mark.slow
def test_bo_on_real_runs_alone_trains_and_reports_without_merges(prefect_api, tmp_path: Path):
    # a store of its own: the module's holds a validation run that would join
    exp = one_fidelity(tmp_path / "store", "run")
    refs = param_mix(exp, return_state=True).result()
    store = stages.open_store(exp)
    scored = [m for m in store.artifacts() if m["stage"] == "runevals"]
    # round 0: the initial design (vertices, uniform) and a draw; round 1: one run
    assert len(scored) == 4 + 1
    choice = stages.load_choice(store, refs["choice"])
    assert "from 5 real run(s) and 0 merge(s)" in choice.verdict
    surrogates = stages.load_surrogates(store, refs["surrogates"])  # fitted on the runs' rows
    assert {len(oof) for oof in surrogates.oof.values()} == {5}
    assert "5 real run(s) and 0 merge(s)" in store.read_text(refs["report"], "report.md")
    # what the run ends with: how sure the GP is, from runs it had not seen, and each group's
    # share of the margin over uniform
    lines = stages.summary(store, refs)
    assert "real runs held out in 5 groups" in lines[0] and " over 5, errors " in lines[0]
    shares = [line for line in lines if "margin share" in line]
    assert len(shares) == len(exp.evaluation.groups)


@pytest.mark.slow
def test_long_runs_alone_train_at_the_final_budget_and_final_training_reuses_one(
    prefect_api, tmp_path: Path
):
    exp = one_fidelity(tmp_path / "store", "long", "final.train.steps=24")
    refs = param_mix(exp, return_state=True).result()
    store = stages.open_store(exp)
    scored = [m for m in store.artifacts() if m["stage"] == "runevals"]
    assert len(scored) == 4 + 1  # round 0: vertices, uniform and a draw; round 1: one run
    rows = pd.concat(
        store.load_parquet(
            ArtifactRef(stage=m["stage"], name=m["name"], key=m["key"]), "rows.parquet"
        )
        for m in scored
    )
    assert (rows["fidelity"] == 2.0).all()  # 24 final steps over 12 expert steps
    trained = {m["key"] for m in store.artifacts() if m["stage"] == "final" and m["name"] == "run"}
    assert set(rows["run"]) <= trained  # final runs, not mixed ones
    assert not any(m["stage"] == "mixed" for m in store.artifacts())
    uniform = mixed.final_run_ref(exp, [0.5, 0.5], exp.seed, refs["data"], refs["base"])
    assert uniform.key in set(rows["run"])  # the search's long run of uniform ...
    report = store.read_text(refs["report"], "report.md")
    assert "from 5 long run(s), 0 real run(s) and 0 merge(s)" in report
    # ... is final training's uniform run on its first seed: trained once, not 5 + 3 x 2
    assert len(trained) <= 5 + 3 * 2 - 1
