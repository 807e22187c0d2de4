"""Stage propose_mixtures (rounds of a search strategy), import_runs and the search inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from parammix_core import simplex, stages
from parammix_core.config import Experiment, apply_overrides, load_experiment
from parammix_core.evaluate.heldout import heldout_loss
from parammix_core.model import build_model
from parammix_core.runs import RunsError
from parammix_core.search import SearchError, get_strategy
from parammix_core.search.bayes import BayesStrategy
from parammix_core.search.mixmin import sequence_logprobs
from parammix_core.stages.imports import imported_rows
from parammix_core.stages.proposals import history, round_positions
from parammix_core.store import ArtifactRef, Store

ROOT = Path(__file__).resolve().parents[2]
BEST = np.array([0.7, 0.3])  # the synthetic utility's optimum


def micro(store: Path, *overrides: str) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    return apply_overrides(exp, [f"store.url={store}", *overrides], "configs/micro.yaml")


def fake_evaluate(exp: Experiment, store: Store, alphas: list[list[float]]) -> ArtifactRef:
    """An evaluation artifact whose group scores peak at BEST (no model needed)."""
    ref = ArtifactRef.for_spec("evals", "fake", {"alphas": alphas})
    if store.exists(ref):
        return ref
    x = np.asarray(alphas)
    score = 0.5 - ((x - BEST) ** 2).sum(axis=1)
    rows = {f"alpha.{d}": x[:, i] for i, d in enumerate(exp.domains)}
    rows.update({f"group.{g}": score for g in exp.evaluation.groups})
    out = store.staging(ref)
    pd.DataFrame(rows).to_parquet(out / "rows.parquet", index=False)
    return store.publish(ref, out)


def run_rounds(exp: Experiment, store: Store, imported=None) -> tuple[list, pd.DataFrame]:
    evals, refs = [], []
    for r in range(stages.n_rounds(exp)):
        ref = stages.propose(exp, store, r, evals, None, imported)
        refs.append(ref)
        evals += [fake_evaluate(exp, store, b) for b in stages.round_batches(exp, store, ref)]
    return refs, stages.load_proposals(store, refs)


def alphas(rows: pd.DataFrame, exp: Experiment) -> np.ndarray:
    return rows[[f"alpha.{d}" for d in exp.domains]].to_numpy()


def test_random_rounds_are_the_fixed_plan_and_its_batches(tmp_path: Path):
    exp = micro(tmp_path / "s")
    store = stages.open_store(exp)
    refs = [stages.propose(exp, store, r) for r in range(stages.n_rounds(exp))]
    rows = stages.load_proposals(store, refs)
    k, n = len(exp.domains), exp.search.n_mixtures
    before = np.vstack(  # the plan of the flow before strategies were wired in
        [np.eye(k), np.full((1, k), 1 / k), simplex.dirichlet(k, n - k - 1, 1.0, seed=exp.seed)]
    )
    assert np.array_equal(alphas(rows, exp), before)
    batches = [b for r in refs for b in stages.round_batches(exp, store, r)]
    assert batches == stages.mixture_batches(exp)  # so the same merge_and_evaluate keys
    assert rows["source"].tolist() == ["initial"] * (k + 1) + ["proposed"] * (n - k - 1)
    assert rows["round"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert rows["proposal"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert set(rows["strategy"]) == {"random"}
    # random never waits for scores: its rounds do not depend on them
    fake = ArtifactRef.for_spec("evals", "fake", {})
    assert stages.proposals_ref(exp, 1, [fake]) == stages.proposals_ref(exp, 1, [])


@pytest.mark.parametrize("strategy", ["surrogate", "bayes"])
def test_adaptive_rounds_follow_the_scores_inside_bounds_and_repeat(tmp_path: Path, strategy):
    settings = [
        f"search.strategy={strategy}",
        "search.n_mixtures=12",
        "search.strategies.surrogate.min_rows=4",
        "search.strategies.bayes.num_restarts=2",
        "search.strategies.bayes.raw_samples=32",
        "search.bounds={math: {min: 0.1, max: 0.9}}",
    ]
    exp = micro(tmp_path / "a", *settings)
    _, rows = run_rounds(exp, stages.open_store(exp))
    x = alphas(rows, exp)
    assert x.shape == (12, 2)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(x[:3], [[1, 0], [0, 1], [0.5, 0.5]])  # the initial design
    assert (x[3:, 0] >= 0.1 - 1e-9).all() and (x[3:, 0] <= 0.9 + 1e-9).all()  # proposals
    assert rows["round"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert set(rows["strategy"]) == {strategy}
    # the last round is proposed from the scores: closer to the optimum than the first draws
    last = np.abs(x[8:, 0] - BEST[0]).mean()
    assert last < np.abs(x[:4, 0] - BEST[0]).mean(), x
    # same config, fresh store: the same proposals
    _, again = run_rounds(exp, stages.open_store(micro(tmp_path / "b", *settings)))
    pd.testing.assert_frame_equal(rows, again)


def test_measured_costs_reach_the_strategy(tmp_path: Path, monkeypatch):
    exp = micro(
        tmp_path / "s",
        "search.strategy=bayes",
        "search.strategies.bayes.num_restarts=2",
        "search.strategies.bayes.raw_samples=32",
    )
    store = stages.open_store(exp)
    ref = fake_evaluate(exp, store, [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.3, 0.7]])
    rows = store.load_parquet(ref, "rows.parquet")
    rows["seconds"] = [2.0, 3.0, 4.0, 5.0]
    costly = ArtifactRef.for_spec("evals", "fake-costly", {})
    out = store.staging(costly)
    rows.to_parquet(out / "rows.parquet", index=False)
    store.publish(costly, out)
    seen, n = history(exp, store, [costly])
    assert n == 4
    np.testing.assert_array_equal(seen.cost, [2.0, 3.0, 4.0, 5.0])
    assert history(exp, store, [ref])[0].cost is None  # rows without seconds: no costs
    given = []
    propose = BayesStrategy._propose
    monkeypatch.setattr(
        BayesStrategy, "_propose", lambda self, h, n: given.append(h.cost) or propose(self, h, n)
    )
    stages.propose(exp, store, 1, [costly])
    np.testing.assert_array_equal(given[0], [2.0, 3.0, 4.0, 5.0])


def test_a_round_needs_every_earlier_evaluation(tmp_path: Path):
    exp = micro(tmp_path / "s", "search.strategy=surrogate")
    store = stages.open_store(exp)
    with pytest.raises(SearchError, match=r"round 1 proposes from the 4 mixture\(s\)"):
        stages.propose(exp, store, 1, [])
    with pytest.raises(SearchError, match=r"round 2 is outside 0\.\.1"):
        round_positions(exp, 2)


def write_runs(root: Path, exp: Experiment, ratios: list[list[float]], **extra) -> tuple:
    ids = [f"r{i}" for i in range(len(ratios))]
    r = pd.DataFrame(ratios, columns=exp.domains)
    r.insert(0, "run_id", ids)
    x = np.asarray(ratios)
    m = pd.DataFrame(
        {f"group.{g}": 0.5 - ((x - BEST) ** 2).sum(axis=1) for g in exp.evaluation.groups}
    )
    for name, values in extra.items():
        m[name] = values
    m.insert(0, "run_id", ids)
    r.to_csv(root / "ratios.csv", index=False)
    m.to_csv(root / "metrics.csv", index=False)
    return str(root / "ratios.csv"), str(root / "metrics.csv")


def test_imported_runs_join_the_history(tmp_path: Path):
    base = micro(
        tmp_path / "s", "search.strategy=surrogate", "search.strategies.surrogate.min_rows=4"
    )
    ratios, metrics = write_runs(tmp_path, base, [[0.6, 0.4], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    exp = apply_overrides(
        base, [f"search.import_runs={{ratios: {ratios}, metrics: {metrics}}}"], "test"
    )
    store = stages.open_store(exp)
    imported = stages.import_runs(exp, store)
    rows = stages.load_imported(store, imported)
    assert rows["run_id"].tolist() == ["r0", "r1", "r2", "r3"]
    assert set(rows["strategy"]) == {"imported"} and set(rows["round"]) == {-1}
    # with 4 imported rows the surrogate fits from round 0 on: its proposal differs
    with_runs = stages.propose(exp, store, 0, [], None, imported)
    without = stages.propose(base, store, 0, [], None, None)
    assert with_runs != without
    a = alphas(store.load_parquet(with_runs, "rows.parquet"), exp)[3]
    b = alphas(store.load_parquet(without, "rows.parquet"), exp)[3]
    assert not np.allclose(a, b)
    # an edited table is a new artifact
    write_runs(tmp_path, base, [[0.5, 0.5], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    assert stages.imports_ref(exp) != imported


def test_imported_runs_are_checked_against_the_experiment(tmp_path: Path):
    exp = micro(tmp_path / "s")
    ratios, metrics = write_runs(tmp_path, exp, [[0.5, 0.5], [0.9, 0.1]], mmlu=[0.3, 0.4])
    with pytest.raises(RunsError, match=r"column\(s\) \['mmlu'\] are not metrics"):
        imported_rows(exp, ratios, metrics)
    ratios, metrics = write_runs(tmp_path, exp, [[0.5, 0.5], [0.9, 0.1]], **{"loss.math": [3, 4]})
    assert imported_rows(exp, ratios, metrics)["loss.math"].tolist() == [3.0, 4.0]
    pd.read_csv(metrics).drop(columns=f"group.{exp.evaluation.groups[0]}").to_csv(
        metrics, index=False
    )
    with pytest.raises(
        RunsError, match=rf"missing column\(s\) \['group.{exp.evaluation.groups[0]}'\]"
    ):
        imported_rows(exp, ratios, metrics)
    pd.DataFrame({"run_id": ["r0", "r1"], "math": [0.5, 0.9], "web": [0.5, 0.1]}).to_csv(
        ratios, index=False
    )
    with pytest.raises(RunsError, match=r"weight columns \['math', 'web'\] differ"):
        imported_rows(exp, ratios, metrics)
    bad = apply_overrides(
        exp, [f"search.import_runs={{ratios: {tmp_path}/nope.csv, metrics: {metrics}}}"], "t"
    )
    with pytest.raises(RunsError, match=r"search.import_runs.ratios: no such file"):
        stages.imports_ref(bad)


def test_sequence_logprobs_agree_with_the_heldout_loss():
    cfg = micro(Path("unused")).model
    model = build_model(cfg, 97, 16, seed=0, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    blocks = torch.randint(0, 97, (6, 16), generator=torch.Generator().manual_seed(0))
    lp = sequence_logprobs(model, blocks, batch_size=4, device="cpu")  # (6,)
    assert lp.shape == (6,) and (lp < 0).all()
    loss, _ = heldout_loss(model, blocks, batch_size=4, device="cpu")
    assert -lp.sum() / (6 * 15) == pytest.approx(loss, rel=1e-5)


def test_mergemix_takes_a_learned_optimum_or_an_objective():
    s = get_strategy("mergemix", k=2, lo=np.array([0.2, 0.0]), optimum=np.array([0.1, 0.9]))
    np.testing.assert_allclose(s.optimum, [0.2, 0.8], atol=1e-9)  # projected into the bounds
    with pytest.raises(SearchError, match="objective of alpha or an optimum"):
        get_strategy("mergemix", k=2)
    with pytest.raises(SearchError, match=r"optimum has shape \(3,\); expected \(2,\)"):
        get_strategy("mergemix", k=2, optimum=np.ones(3) / 3)


def test_search_inputs_only_for_mixmin_and_mergemix(tmp_path: Path):
    exp = micro(tmp_path / "s")
    ref = ArtifactRef.for_spec("x", "y", {})
    with pytest.raises(SearchError, match="'random' needs no inputs"):
        stages.inputs_ref(exp, ref, ref, [ref, ref])
    mixmin = micro(tmp_path / "s", "search.strategy=mixmin")
    assert stages.needs_inputs(mixmin) and not stages.needs_inputs(exp)
    more = micro(tmp_path / "s", "search.strategy=mixmin", "search.target_sequences=4")
    assert stages.inputs_ref(mixmin, ref, ref, [ref]) != stages.inputs_ref(more, ref, ref, [ref])


def test_demix_prior_is_addressed_by_the_data_alone(tmp_path: Path):
    exp = micro(tmp_path / "s", "search.strategy=demix")
    data, other_data, base = (ArtifactRef.for_spec("x", n, {}) for n in ("d", "e", "b"))
    ref = stages.inputs_ref(exp, data, base, [base])
    assert ref == stages.inputs_ref(exp, data, data, [data, data])  # base, experts: unused
    assert ref != stages.inputs_ref(exp, other_data, base, [base])
    capped = micro(tmp_path / "s", "search.strategy=demix", "search.strategies.demix.top=8")
    assert stages.inputs_ref(capped, data, base, [base]) == ref  # settings act in the rounds


def test_what_a_round_is_addressed_by(tmp_path: Path):
    fake = [ArtifactRef.for_spec("evals", "fake", {"i": i}) for i in range(2)]
    adaptive = micro(tmp_path / "s", "search.strategy=surrogate")
    assert stages.proposals_ref(adaptive, 1, fake[:1]) != stages.proposals_ref(adaptive, 1, fake)
    weighted = micro(
        tmp_path / "s", "search.strategy=surrogate", "search.strategies.surrogate.top_k=2"
    )
    assert stages.proposals_ref(adaptive, 1, fake) != stages.proposals_ref(weighted, 1, fake)
    random = micro(tmp_path / "s")
    other = micro(
        tmp_path / "s",
        "search.group_weights={math: 2, code: 1, knowledge: 1, language: 1, reasoning: 1}",
    )
    assert stages.proposals_ref(random, 1) == stages.proposals_ref(other, 1)
    assert stages.proposals_ref(random, 0) != stages.proposals_ref(random, 1)
    assert stages.surrogate_ref(random, fake) != stages.surrogate_ref(random, fake, None, [fake[0]])


def test_random_draws_respect_the_bounds_the_initial_design_does_not(tmp_path: Path):
    exp = micro(tmp_path / "s", "search.bounds={math: {max: 0.3}}", "search.n_mixtures=40")
    x = stages.evaluation_mixtures(exp)
    np.testing.assert_array_equal(x[:3], [[1, 0], [0, 1], [0.5, 0.5]])
    assert (x[3:, 0] <= 0.3 + 1e-12).all()
    assert x[3:, 0].max() > 0.2  # the whole allowed range is drawn from
