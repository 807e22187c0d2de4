"""The multi-fidelity search's stages on fake evaluations: rounds, budget, joined runs, choice."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from parammix_core import stages
from parammix_core.config import Experiment, apply_overrides, load_experiment
from parammix_core.stages import fidelity_choice as fc
from parammix_core.stages import multifidelity as mf
from parammix_core.stages import validate as validate_stage
from parammix_core.stages.mixed import final_run_ref, mixed_ref
from parammix_core.store import ArtifactRef, Store

ROOT = Path(__file__).resolve().parents[2]
REAL_PEAK = np.array([0.7, 0.3])  # where real runs score best
MERGE_PEAK = np.array([0.2, 0.8])  # where merges do: the cheap fidelity's bias


def micro(store: Path, *overrides: str) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    settings = [
        f"store.url={store}",
        "search.strategy=multifidelity",
        "search.strategies.multifidelity.per_round=2",
        "search.strategies.multifidelity.num_restarts=2",
        "search.strategies.multifidelity.raw_samples=32",
        *overrides,
    ]
    return apply_overrides(exp, settings, "configs/micro.yaml")


def publish(store: Store, name: str, rows: dict | None = None, **info) -> ArtifactRef:
    """A fake artifact: evaluation rows, or (experts) only a manifest with `info`."""
    ref = ArtifactRef.for_spec("evals", "fake", {"name": name})
    out = store.staging(ref)
    if rows is None:
        (out / "info.txt").write_text(name)
    else:
        pd.DataFrame(rows).to_parquet(out / "rows.parquet", index=False)
    return store.publish(ref, out, info=info)


def fake_data(exp: Experiment, store: Store) -> ArtifactRef:
    """Prepared data as the choice reads it: the domains' sizes (natural weights 0.25/0.75)."""
    ref = ArtifactRef.for_spec("data", "fake", {})
    out = store.staging(ref)
    sizes = dict(zip(exp.domains, [100, 300], strict=True))
    (out / "stats.json").write_text(json.dumps({d: {"characters": c} for d, c in sizes.items()}))
    return store.publish(ref, out)


def fake(exp: Experiment, store: Store, alphas, fidelity: float, seconds: float) -> ArtifactRef:
    """Evaluations of `alphas` at `fidelity`, scored by that fidelity's synthetic surface."""
    x = np.asarray(alphas, dtype=float)
    peak = REAL_PEAK if fidelity >= mf.RUN else MERGE_PEAK
    score = 0.5 - ((x - peak) ** 2).sum(axis=1)
    rows = {f"alpha.{d}": x[:, i] for i, d in enumerate(exp.domains)}
    rows.update({f"group.{g}": score for g in exp.evaluation.groups})
    rows.update(seconds=np.full(len(x), seconds))
    if fidelity != mf.MERGE:
        rows["fidelity"] = np.full(len(x), fidelity)
    return publish(store, f"{fidelity}-{x.tolist()}", rows)


def test_rounds_spend_the_budget_and_the_choice_follows_the_runs(tmp_path: Path):
    exp = micro(tmp_path / "s", "search.strategies.multifidelity.budget=3")
    store = stages.open_store(exp)
    experts = [publish(store, f"expert-{d}", seconds=100.0) for d in exp.domains]
    first = mf.propose_round(exp, store, 0, [], [], [], experts)
    merges_0, runs_0, _, done = mf.round_work(exp, store, first)
    assert merges_0[:3] == [[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]]]  # the initial design
    assert len(merges_0) == 3 + 2 and runs_0 == [] and not done  # and per_round draws
    merges = [fake(exp, store, b, mf.MERGE, 1.0) for b in merges_0]
    grid = np.linspace(0.05, 0.95, 7)
    merges.append(fake(exp, store, np.c_[grid, 1 - grid], mf.MERGE, 1.0))
    # round 1: a run costs 100 merges (the experts' seconds, none measured yet)
    second = mf.propose_round(exp, store, 1, merges, [], [], experts)
    merges_1, runs_1, _, done = mf.round_work(exp, store, second)
    assert len(merges_1) + len(runs_1) == 2 and not done
    assert store.manifest(second)["info"]["spent"] == pytest.approx(12 / 100)
    runs = [fake(exp, store, [[0.9, 0.1], [0.5, 0.5], [0.3, 0.7]], mf.RUN, 100.0)]
    # three runs of 100 s and twelve merges of 1 s: 3.12 real-run equivalents >= 3, done
    third = mf.propose_round(exp, store, 2, merges, runs, [], experts)
    assert mf.round_work(exp, store, third) == ([], [], [], True)
    assert store.manifest(third)["info"]["spent"] == pytest.approx(3.12)
    # three runs have six orderings: too few for 19 shuffles to show anything at 0.05
    few = stages.load_choice(store, fc.choose(exp, store, fake_data(exp, store), [*merges, *runs]))
    assert few.verdict.startswith(
        "No mixture is distinguishable from uniform at this budget: the GP cannot be told from "
        "shuffles of 3 real runs: they have 6 orderings, too few for one-sided 0.05 (real runs "
        "held out in 3 groups: R² "
    ), few.verdict
    # the choice: the GP's best at fidelity 1, near the runs' peak, not the merges'; with
    # three more runs, enough for held-out runs to be predicted better than 19 shuffles
    runs.append(fake(exp, store, [[0.7, 0.3], [0.1, 0.9], [0.2, 0.8]], mf.RUN, 100.0))
    ref = fc.choose(exp, store, fake_data(exp, store), [*merges, *runs])
    choice = stages.load_choice(store, ref)
    alpha = np.array([choice.alpha[d] for d in exp.domains])
    assert np.abs(alpha - REAL_PEAK).sum() < 0.2, alpha
    assert choice.baselines["natural"]["alpha"] == {"math": 0.25, "sft": 0.75}
    assert choice.predicted_utility > choice.baselines["uniform"]["predicted_utility"]
    # each group's share of the predicted margin over uniform, summing to the margin
    margin = choice.predicted_utility - choice.baselines["uniform"]["predicted_utility"]
    assert set(choice.contributions) == set(exp.evaluation.groups)
    assert sum(choice.contributions.values()) == pytest.approx(margin, rel=1e-9)
    # how sure: the gain over each baseline at fidelity 1 with the GP's 90 % interval
    true = {
        b: 0.5 - ((np.array(b_alpha) - REAL_PEAK) ** 2).sum()
        for b, b_alpha in (("uniform", [0.5, 0.5]), ("natural", [0.25, 0.75]))
    }
    best = 0.5 - ((alpha - REAL_PEAK) ** 2).sum()
    for b, iv in choice.intervals.items():
        assert iv["level"] == 0.9 and iv["replicates"] == 0
        assert iv["low"] < iv["gain"] < iv["high"]
        assert iv["gain"] == pytest.approx(best - true[b], abs=0.03), b
    assert choice.intervals["natural"]["low"] > 0  # 0.21 below the peak: beyond the noise
    assert choice.verdict.startswith(
        "Predicted utility gain of the chosen mixture (90% interval): uniform "
    )
    assert re.search(
        r"the interval is the GP's posterior of the gain widened by its held-out errors \(real "
        r"runs held out in 5 groups: R² \+0\.\d\d over 6, errors \d\.\d\d times the GP's "
        r"standard deviation; better than all 19 shuffles of their utilities, p 0\.05\)\.$",
        choice.verdict,
    ), choice.verdict
    # the check the verdict rests on, as numbers beside it
    assert choice.held_out["n"] == 6 and choice.held_out["folds"] == 5
    assert choice.held_out["shuffled"] == 19 and choice.held_out["reached"] == 0
    assert choice.held_out["p"] == pytest.approx(0.05) and choice.held_out["r2"] > 0


def test_a_choice_among_runs_that_do_not_differ_says_so(tmp_path: Path, monkeypatch):
    import parammix_core.search.multifidelity as strategy

    fits = []
    fit = strategy.fit_levels_gp
    monkeypatch.setattr(strategy, "fit_levels_gp", lambda *a: fits.append(1) or fit(*a))
    exp = micro(tmp_path / "s", "search.strategies.multifidelity.fidelities=[run]")
    store = stages.open_store(exp)
    grid = np.linspace(0.05, 0.95, 10)
    x = np.c_[grid, 1 - grid]
    rows = {f"alpha.{d}": x[:, i] for i, d in enumerate(exp.domains)}
    flat = {
        f"group.{g}": np.full(len(x), 0.5 + 0.01 * i) for i, g in enumerate(exp.evaluation.groups)
    }
    rows.update(flat)  # each group flat, at its own level
    rows.update(seconds=np.full(len(x), 100.0), fidelity=np.full(len(x), mf.RUN))
    runs = [publish(store, "flat runs", rows)]
    choice = stages.load_choice(store, fc.choose(exp, store, fake_data(exp, store), runs))
    uniform = choice.intervals["uniform"]
    assert uniform["gain"] == pytest.approx(0.0, abs=1e-6) and uniform["low"] < 0 < uniform["high"]
    assert choice.verdict.startswith(
        "No mixture is distinguishable from uniform at this budget: the GP does not predict "
        "held-out real runs better than their mean (real runs held out in 5 groups: R² +0.00 "
        "over 10, errors "
    )
    assert (
        "(search.strategies.multifidelity.budget, 4 real-run equivalents now) or longer runs may "
        "help; whether more evaluation documents would, the validation's split of the real runs' "
        "noise says. Chosen by the GP at fidelity 1 (real runs)"
    ) in choice.verdict
    checked = {k: v for k, v in choice.held_out.items() if k != "scale"}
    assert checked == {"n": 10, "folds": 5, "r2": 0.0, "shuffled": 0, "reached": 0, "p": 1.0}
    # one GP for choosing and the gains, one per held-out group, one per capability group
    assert len(fits) == 1 + 5 + len(exp.evaluation.groups)
    # noise the GP happens to predict (held-out R² above zero) loses to a shuffle of it
    noise = 0.5 + np.random.default_rng(0).normal(0.0, 0.01, len(x))
    rows.update({f"group.{g}": noise for g in exp.evaluation.groups})
    runs = [publish(store, "noisy runs", rows)]
    choice = stages.load_choice(store, fc.choose(exp, store, fake_data(exp, store), runs))
    assert re.match(
        r"No mixture is distinguishable from uniform at this budget: the GP predicts held-out "
        r"real runs no better than shuffles of their utilities among their mixtures \(real runs "
        r"held out in 5 groups: R² \+0\.\d\d over 10, errors \d\.\d\d times the GP's standard "
        r"deviation; 1 of \d+ shuffles predicted as well, p ≥ 0\.10 against one-sided 0\.05\)\. ",
        choice.verdict,
    ), choice.verdict


def test_the_choice_rule_changes_the_choice_and_no_round(tmp_path: Path):
    """A rerun with choice: mean reuses every round and evaluation, and chooses anew."""
    exp = micro(tmp_path / "s")  # choice: lower_bound, the default
    mean = micro(tmp_path / "s", "search.strategies.multifidelity.choice=mean")
    experts = [ArtifactRef.for_spec("expert", d, {"d": d}) for d in exp.domains]
    evals = [ArtifactRef.for_spec("evals", "fake", {"n": 1})]
    data = ArtifactRef.for_spec("data", "fake", {})
    assert exp.search.strategies.multifidelity.choice == "lower_bound"
    assert mf.round_ref(exp, 2, evals, [], [], experts) == mf.round_ref(
        mean, 2, evals, [], [], experts
    )
    assert fc.choice_ref(exp, data, evals) != fc.choice_ref(mean, data, evals)
    tighter = micro(tmp_path / "s", "search.strategies.multifidelity.per_round=3")
    assert mf.round_ref(exp, 2, evals, [], [], experts) != mf.round_ref(
        tighter, 2, evals, [], [], experts
    )


def late_round(tmp_path: Path, *overrides: str) -> tuple[Experiment, Store, ArtifactRef]:
    """Round 5 (exponent 1e-5: a real run costs the acquisition almost nothing) after 9 merges
    of 1 s, with two joined runs of 100 s and experts of 100 s."""
    exp = micro(tmp_path / "s", "search.strategies.multifidelity.exponent_decay=0.1", *overrides)
    store = stages.open_store(exp)
    experts = [publish(store, f"expert-{d}", seconds=100.0) for d in exp.domains]
    grid = np.linspace(0.0, 1.0, 9)
    merges = [fake(exp, store, np.c_[grid, 1 - grid], mf.MERGE, 1.0)]
    joined = [fake(exp, store, [[0.5, 0.5], [0.2, 0.8]], mf.RUN, 100.0)]
    return exp, store, mf.propose_round(exp, store, 5, merges, [], joined, experts)


def test_a_late_round_buys_real_runs_and_joined_runs_are_free(tmp_path: Path):
    exp, store, late = late_round(tmp_path)
    _, runs, _, done = mf.round_work(exp, store, late)
    assert len(runs) >= 1 and not done
    assert store.manifest(late)["info"]["spent"] == pytest.approx(9 / 100)  # joined: free
    data = stages.data_ref(exp)
    assert mf.joined_runs(exp, store, data, stages.base_ref(exp, data)) == []


def test_a_round_buys_no_real_run_past_what_is_left_of_the_budget(tmp_path: Path):
    # 0.5 real-run equivalents leave 41 s after the merges' 9 s, less than a run's 100 s
    exp, store, late = late_round(tmp_path, "search.strategies.multifidelity.budget=0.5")
    merges, runs, _, done = mf.round_work(exp, store, late)
    assert runs == [] and len(merges) == 2 and not done


def test_real_runs_alone_train_the_initial_design_and_choose_among_runs(tmp_path: Path):
    exp = micro(
        tmp_path / "s",
        "search.strategies.multifidelity.fidelities=[run]",
        "search.strategies.multifidelity.budget=5",
    )
    store = stages.open_store(exp)
    experts = [publish(store, f"expert-{d}", seconds=100.0) for d in exp.domains]
    first = mf.propose_round(exp, store, 0, [], [], [], experts)
    merges, alphas, _, done = mf.round_work(exp, store, first)
    assert merges == [] and not done
    assert alphas[:3] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]  # the initial design
    assert len(alphas) == 4  # and one draw: four rows for the report's two-fold CV
    runs = [fake(exp, store, alphas, mf.RUN, 100.0)]
    second = mf.propose_round(exp, store, 1, [], runs, [], experts)
    merges, alphas, _, _ = mf.round_work(exp, store, second)
    assert merges == [] and len(alphas) == 2  # per_round real runs, never a merge
    # four runs of 100 s: 4 real-run equivalents, the budget (5) not yet spent
    assert store.manifest(second)["info"]["spent"] == pytest.approx(4.0)
    grid = np.linspace(0.05, 0.95, 7)
    runs.append(fake(exp, store, np.c_[grid, 1 - grid], mf.RUN, 100.0))
    choice = stages.load_choice(store, fc.choose(exp, store, fake_data(exp, store), runs))
    alpha = np.array([choice.alpha[d] for d in exp.domains])
    assert np.abs(alpha - REAL_PEAK).sum() < 0.2, alpha
    assert "GP at fidelity 1 (real runs) from 11 real run(s) and 0 merge(s)" in choice.verdict


def test_merges_alone_never_train_and_choose_at_the_merges_peak(tmp_path: Path):
    exp = micro(tmp_path / "s", "search.strategies.multifidelity.fidelities=[merge]")
    store = stages.open_store(exp)
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    validation_run = publish_at(store, mixed_ref(exp, [0.5, 0.5], exp.seed, data, base))
    assert store.exists(validation_run)
    assert mf.joined_runs(exp, store, data, base) == []  # a real run is not a merge
    experts = [publish(store, f"expert-{d}", seconds=100.0) for d in exp.domains]
    grid = np.linspace(0.05, 0.95, 9)
    merges = [fake(exp, store, np.c_[grid, 1 - grid], mf.MERGE, 1.0)]
    late = mf.propose_round(exp, store, 5, merges, [], [], experts)
    proposed, runs, long_runs, _ = mf.round_work(exp, store, late)
    assert runs == long_runs == [] and len(proposed) == 2
    choice = stages.load_choice(store, fc.choose(exp, store, fake_data(exp, store), merges))
    alpha = np.array([choice.alpha[d] for d in exp.domains])
    assert np.abs(alpha - MERGE_PEAK).sum() < 0.2, alpha
    assert "GP at fidelity 0 (merges)" in choice.verdict


LONG = ("search.strategies.multifidelity.fidelities=[long, merge, run]", "final.train.steps=36")


def test_long_runs_are_the_top_fidelity_and_each_kind_goes_to_its_stage(tmp_path: Path):
    exp = micro(
        tmp_path / "s",
        *LONG,
        "search.strategies.multifidelity.exponent_decay=0.1",
        "search.strategies.multifidelity.budget=100",
    )
    assert exp.search.strategies.multifidelity.fidelities == ["merge", "run", "long"]
    assert mf.budgets(exp) == {"merge": 0.0, "run": 1.0, "long": 3.0}  # 36 / 12 steps
    assert mf.levels(exp) == pytest.approx((0.0, 1 / 3, 1.0))
    store = stages.open_store(exp)
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    assert mf.run_budget(exp, mixed_ref(exp, [0.5, 0.5], 0, data, base)) == 1.0
    assert mf.run_budget(exp, final_run_ref(exp, [0.5, 0.5], 0, data, base)) == 3.0
    # final training's uniform and natural runs on the seed join; its other seeds do not
    data = fake_data(exp, store)
    finals = [
        publish_at(store, final_run_ref(exp, alpha, seed, data, base))
        for alpha, seed in (([0.5, 0.5], exp.seed), ([0.25, 0.75], exp.seed), ([0.5, 0.5], 7))
    ]
    validation = publish_at(store, mixed_ref(exp, [0.5, 0.5], exp.seed, data, base))
    assert mf.joined_runs(exp, store, data, base) == [validation, *finals[:2]]
    # a validation draw trained at the final budget (`validation.budget: final`) joins as a
    # long run; uniform, a validation mixture and a baseline, joins once
    draw = validate_stage.validation_mixtures(exp)[1]
    drawn = publish_at(store, final_run_ref(exp, draw, exp.seed, data, base))
    assert mf.joined_runs(exp, store, data, base) == [validation, finals[0], drawn, finals[1]]
    experts = [publish(store, f"expert-{d}", seconds=100.0) for d in exp.domains]
    grid = np.linspace(0.0, 1.0, 9)
    merges = [fake(exp, store, np.c_[grid, 1 - grid], mf.MERGE, 1.0)]
    runs = [
        fake(exp, store, [[0.5, 0.5], [0.2, 0.8]], mf.RUN, 100.0),
        fake(exp, store, [[0.9, 0.1]], 3.0, 300.0),
    ]
    seen, _ = mf.history(exp, store, [*merges, *runs])
    assert seen.fidelities.tolist() == pytest.approx([0.0] * 9 + [1 / 3] * 2 + [1.0])
    late = mf.propose_round(exp, store, 6, merges, runs, [], experts)  # exponent ~1e-6
    proposed = store.load_parquet(late, "rows.parquet")["fidelity"]
    assert len(proposed) == 2 and all(np.isclose(mf.levels(exp), f).any() for f in proposed)
    # a round's rows go to merge_and_evaluate, train_mixed and final_run by their level
    ref = ArtifactRef.for_spec("proposals", "fake-round", {})
    out = store.staging(ref)
    round_rows = {"fidelity": [0.0, 1 / 3, 1.0, 1 / 3], "alpha.math": [0.1, 0.2, 0.3, 0.4]}
    round_rows["alpha.sft"] = [1 - a for a in round_rows["alpha.math"]]
    pd.DataFrame(round_rows).to_parquet(out / "rows.parquet", index=False)
    ref = store.publish(ref, out, info={"done": False})
    assert mf.round_work(exp, store, ref) == (
        [[[0.1, 0.9]]],
        [[0.2, 0.8], [0.4, 0.6]],
        [[0.3, 0.7]],
        False,
    )
    choice = stages.load_choice(
        store, fc.choose(exp, store, fake_data(exp, store), [*merges, *runs])
    )
    assert (
        "Chosen by the GP at fidelity 1 (long real runs) from 1 long run(s), 2 real run(s) and "
        "9 merge(s)" in choice.verdict
    )


def test_long_runs_need_a_final_budget_above_the_experts(tmp_path: Path):
    with pytest.raises(ValueError) as err:
        micro(tmp_path / "s", LONG[0])  # micro's final runs train 12 steps, as its experts do
    assert (
        "search.strategies.multifidelity.fidelities: long runs train final.train.steps (12), "
        "which must exceed training.expert.steps (12)" in str(err.value)
    )


def publish_at(store: Store, ref: ArtifactRef) -> ArtifactRef:
    """An artifact published under `ref` (what a stage would have written)."""
    out = store.staging(ref)
    (out / "info.txt").write_text(ref.key)
    return store.publish(ref, out)
