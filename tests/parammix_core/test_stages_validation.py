"""validate_proxy and final_training on a micro setup: real runs, scores, checkpoints."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from transformers import AutoModelForCausalLM, AutoTokenizer

from parammix_core import simplex, stages
from parammix_core.config import Experiment, load_experiment
from parammix_core.data import load_prepared
from parammix_core.evaluate import heldout_loss
from parammix_core.merge import linear_merge
from parammix_core.model import load_model
from parammix_core.report import validation as report_validation
from parammix_core.stages import final, mixed, validate
from parammix_core.stages.experts import expert_weights
from parammix_core.stages.validation_table import load_validation
from parammix_core.train import sample_batch, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    store_url = str(tmp_path_factory.mktemp("store"))
    exp = exp.model_copy(
        update={
            "store": exp.store.model_copy(update={"url": store_url}),
            "validation": exp.validation.model_copy(
                update={"metrics": "loss", "reruns": 1, "rescaled": True}
            ),
            "runtime": exp.runtime.model_copy(update={"device": "cpu"}),
        }
    )
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    probe = stages.interference_probe(exp, store, data, base, experts)
    return exp, store, data, base, experts, probe


def test_validation_mixtures_and_plan():
    exp = Experiment()
    mixtures = validate.validation_mixtures(exp, [0.1, 0.2, 0.3, 0.4])
    assert len(mixtures) == exp.validation.n_mixtures + 1
    np.testing.assert_allclose(mixtures[0], [0.25] * 4)
    assert mixtures[-1] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    for m in mixtures:
        assert sum(m) == pytest.approx(1.0) and max(m) < 1
    plan = validate.run_plan(exp, len(mixtures))
    assert plan[: len(mixtures)] == [(i, exp.seed) for i in range(len(mixtures))]
    reruns = plan[len(mixtures) :]
    assert [i for i, _ in reruns] == list(range(1, exp.validation.reruns + 1))
    assert all(seed != exp.seed for _, seed in reruns)
    # as many reruns as mixtures: each once more, the draws first, then uniform, then the choice
    everything = Experiment.model_validate({"validation": {"reruns": 13}})
    reruns = validate.run_plan(everything, len(mixtures))[len(mixtures) :]
    assert [i for i, _ in reruns] == [*range(1, 12), 0, 12]
    assert {seed for _, seed in reruns} == {exp.seed + validate.RERUN_SEED}


def test_sampler_draws_domains_in_proportion_alpha():
    # domain k's blocks hold only token k, so a row's first token names its domain
    blocks = [torch.full((50, 4), k) for k in range(3)]
    alpha = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    rows = torch.cat([sample_batch(blocks, alpha, 64, gen)[:, 0] for _ in range(100)])
    counts = np.bincount(rows.numpy(), minlength=3)  # 6400 draws
    assert stats.chisquare(counts, alpha.numpy() * counts.sum()).pvalue > 0.01
    # the same counts are far from a uniform mixture: the test can fail
    assert stats.chisquare(counts, np.full(3, counts.sum() / 3)).pvalue < 1e-6


def test_mixed_run_at_an_experts_mixture_is_the_expert(setup):
    exp, store, data, base, experts, _ = setup
    weights = expert_weights(exp, exp.domains[0])  # its domain and a replay of 0.1 of both
    np.testing.assert_allclose(weights, [0.95, 0.05], rtol=0, atol=1e-15)
    ref = mixed.train_mixed(exp, store, weights, exp.seed, data, base)
    run = store.load_tensors(ref, "model.safetensors")
    expert = store.load_tensors(experts[0], "model.safetensors")
    assert run.keys() == expert.keys()
    for name, tensor in run.items():
        assert torch.equal(tensor, expert[name]), name


def test_validate_proxy_scores_runs_like_merges(setup):
    exp, store, data, base, experts, probe = setup
    mixtures = validate.validation_mixtures(exp)
    plan = validate.run_plan(exp, len(mixtures))
    runs = [mixed.train_mixed(exp, store, mixtures[i], s, data, base) for i, s in plan]
    ref = validate.validate_proxy(exp, store, mixtures, runs, data, base, experts, probe)
    rows = store.load_parquet(ref, "rows.parquet")
    counts = rows["kind"].value_counts().to_dict()
    n = len(mixtures)
    assert counts == {"expert": 2, "merge": n, "mix": n, "rerun": 1, "corrected": n, "rescaled": n}
    # triangle inequality: the merged update is never longer than the experts' weighted mean
    assert (rows.loc[rows["kind"] == "rescaled", "stretch"] >= 1 - 1e-6).all()
    # a real run's row is its held-out loss, scored independently here
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(runs[1])), exp.model, "cpu")
    row = rows[(rows["kind"] == "mix") & (rows["mixture"] == 1)].iloc[0]
    for d in exp.domains:
        loss, _ = heldout_loss(model, prepared.heldout[d], 32, "cpu")
        assert row[f"loss.{d}"] == pytest.approx(loss, rel=1e-5)
    # the merge at a corner is the expert, recorded at the mixture it trained on
    expert = load_model(str(store.local_dir(experts[1])), exp.model, "cpu")
    corner = rows[(rows["kind"] == "expert") & (rows["mixture"] == 1)].iloc[0]
    loss, _ = heldout_loss(expert, prepared.heldout[exp.domains[0]], 32, "cpu")
    assert corner[f"loss.{exp.domains[0]}"] == pytest.approx(loss, rel=1e-5)
    assert [corner[f"alpha.{d}"] for d in exp.domains] == pytest.approx([0.05, 0.95], abs=1e-15)
    # a mixture's merge row is the merge at (alpha - 0.1 / 2) / 0.9, past the simplex or not
    merge = rows[(rows["kind"] == "merge") & (rows["mixture"] == 1)].iloc[0]
    alpha = np.array([merge[f"alpha.{d}"] for d in exp.domains])
    states = [store.load_tensors(r, "model.safetensors") for r in (base, *experts)]
    merged = linear_merge(states[0], states[1:], (alpha - 0.05) / 0.9)
    model.load_state_dict(merged, strict=False)
    loss, _ = heldout_loss(model, prepared.heldout[exp.domains[1]], 32, "cpu")
    assert merge[f"loss.{exp.domains[1]}"] == pytest.approx(loss, rel=1e-5)
    info = load_validation(store, ref)
    assert set(info["analysis"]) == {"mean_loss", *(f"loss.{d}" for d in exp.domains)}
    assert info["analysis"]["mean_loss"]["n"] == n
    fit = info["step_scale_fit"]
    assert len(fit["loo_scale"]) == n and fit["theory_scale"] > 0
    mix = rows[rows["kind"] == "mix"]
    # the fitted scale is the least-squares projection of the measured gaps
    assert fit["scale"] == pytest.approx(mix["gap_dot"].sum() / mix["dir_sq"].sum())
    assert (store.local_dir(ref) / "validation.png").stat().st_size > 1000


def test_every_mixture_trained_twice_is_ranked_by_the_mean_of_its_runs(setup):
    exp, store, data, base, experts, _ = setup
    mixtures = validate.validation_mixtures(exp, [0.7, 0.3])
    n = len(mixtures)
    update = {"reruns": n, "rescaled": False}
    twice = exp.model_copy(update={"validation": exp.validation.model_copy(update=update)})
    plan = validate.run_plan(twice, n)
    assert sorted(i for i, seed in plan if seed != exp.seed) == list(range(n))
    runs = [mixed.train_mixed(twice, store, mixtures[i], s, data, base) for i, s in plan]
    ref = validate.validate_proxy(twice, store, mixtures, runs, data, base, experts)
    rows = store.load_parquet(ref, "rows.parquet")
    loss = rows[[f"loss.{d}" for d in exp.domains]].mean(axis=1)
    first = loss[rows["kind"] == "mix"].to_numpy()
    again = loss[rows["kind"] == "rerun"].set_axis(rows.loc[rows["kind"] == "rerun", "mixture"])
    again = again.sort_index().to_numpy()
    means = (first + again + np.mean(first - again)) / 2  # the rerun on the first runs' seed
    info = load_validation(store, ref)
    a = info["analysis"]["mean_loss"]
    assert a["runs_per_mixture"] == 2.0 and a["ceiling"]["truth_runs"] == 2.0
    assert a["chosen"]["runs"] == [2, 2]
    # the means' gain, not the first runs' (-0.0063 against -0.0087 here)
    assert a["chosen"]["real_gain"] == pytest.approx(means[0] - means[-1])  # lower loss: gain
    assert a["chosen"]["real_gain_sd"] == pytest.approx(a["ceiling"]["noise_sd"])
    assert "(the mean of 2 runs of each, ±" in report_validation.validation_verdict(info)


def test_validation_splits_each_tasks_run_noise_into_its_documents_and_the_runs_shift(setup):
    exp, store, data, base, experts, _ = setup
    mixtures = validate.validation_mixtures(exp)
    n = len(mixtures)
    update = {"reruns": n, "rescaled": False, "metrics": "all"}
    twice = exp.model_copy(update={"validation": exp.validation.model_copy(update=update)})
    plan = validate.run_plan(twice, n)
    runs = [mixed.train_mixed(twice, store, mixtures[i], s, data, base) for i, s in plan]
    ref = validate.validate_proxy(twice, store, mixtures, runs, data, base, experts)
    rows = store.load_parquet(ref, "rows.parquet")
    docs = store.load_parquet(ref, validate.RUN_DOCS)
    assert sorted(docs["kind"].value_counts().items()) == [("mix", n), ("rerun", n)]
    tasks = [t.name for t in exp.evaluation.tasks]
    info = load_validation(store, ref)
    assert set(info["task_noise"]) == set(tasks)
    for task in tasks:
        cols = [c for c in docs.columns if c.rsplit(".", 1)[0] == task]
        assert len(cols) == exp.evaluation.builtin_docs_per_task
        scores = {}
        for kind in ("mix", "rerun"):
            # each run's per-document scores average to the task score its row holds
            mine = docs[docs["kind"] == kind].set_index("mixture")[cols].mean(axis=1)
            row = rows[rows["kind"] == kind].set_index("mixture")[f"task.{task}"]
            assert mine.sort_index().to_numpy() == pytest.approx(row.sort_index().to_numpy())
            scores[kind] = row.sort_index().to_numpy()
        diff = scores["mix"] - scores["rerun"]
        measured = info["task_noise"][task]
        assert measured["docs"] == len(cols)
        assert measured["noise_sd"] == pytest.approx(np.std(diff, ddof=1) / np.sqrt(2))
        assert 0 <= measured["doubled_sd"] <= measured["noise_sd"]
    # the utility's noise is the analysis' (equal weights, one task per group here), and its
    # documents' part adds the tasks' independent variances with the utility's coefficients
    utility = info["utility_noise"]
    assert utility["noise_sd"] == pytest.approx(info["analysis"]["utility"]["ceiling"]["noise_sd"])
    share = 1 / len(tasks)
    documents = [info["task_noise"][t]["documents_sd"] for t in tasks]
    assert utility["documents_sd"] == pytest.approx(share * np.sqrt(np.sum(np.square(documents))))
    section = report_validation.validation_section(info)
    assert "Where the real runs' noise comes from" in section
    assert all(f"| {task} |" in section for task in [*tasks, "utility"])


def test_validation_at_the_final_budget_trains_final_trainings_runs(setup):
    exp, store, data, base, experts, _ = setup
    at_final = exp.validation.model_copy(update={"budget": "final", "rescaled": False})
    final_exp = exp.model_copy(update={"validation": at_final})
    stats = store.load_json(data, "stats.json")
    chosen = {d: a for d, a in zip(exp.domains, [0.7, 0.3], strict=True)}
    mixtures = validate.validation_mixtures(final_exp, list(chosen.values()))
    plan = validate.run_plan(final_exp, len(mixtures))
    assert mixed.validation_train(final_exp) == exp.final.train
    # uniform's and the chosen mixture's runs on the experiment's seed are final training's
    seed = final.final_seeds(exp)[0]
    finals = final.final_mixtures(exp, chosen, stats)
    runs = [mixed.final_run(final_exp, store, mixtures[i], s, data, base) for i, s in plan]
    assert runs[0] == mixed.final_run_ref(exp, finals["uniform"], seed, data, base)
    assert runs[len(mixtures) - 1] == mixed.final_run_ref(exp, finals["chosen"], seed, data, base)
    ref = validate.validate_proxy(final_exp, store, mixtures, runs, data, base, experts)
    rows = store.load_parquet(ref, "rows.parquet")
    # the rows score the final-budget runs, not runs of the experts' budget
    prepared = load_prepared(store.local_dir(data))
    short = mixed.train_mixed(exp, store, mixtures[1], exp.seed, data, base)
    row = rows[(rows["kind"] == "mix") & (rows["mixture"] == 1)].iloc[0]
    d = exp.domains[0]
    losses = {}
    for name, run in (("final", runs[1]), ("experts", short)):
        model = load_model(str(store.local_dir(run)), exp.model, "cpu")
        losses[name], _ = heldout_loss(model, prepared.heldout[d], 32, "cpu")
    assert row[f"loss.{d}"] == pytest.approx(losses["final"], rel=1e-5)
    assert abs(losses["final"] - losses["experts"]) > 1e-3
    info = load_validation(store, ref)
    assert info["budget"] == {"name": "final", "steps": exp.final.train.steps}
    section = report_validation.validation_section(info)
    assert (
        f"trained for real from the base at the final budget of {exp.final.train.steps} steps"
        in (section)
    )
    assert f"Trained for real at the final budget of {exp.final.train.steps} steps" in section


def test_final_run_checkpoint_reloads_with_identical_logits(setup):
    exp, store, data, base, _, _ = setup
    exp = exp.model_copy(
        update={"validation": exp.validation.model_copy(update={"metrics": "all"})}
    )
    alpha = [0.3, 0.7]
    ref = mixed.final_run(exp, store, alpha, exp.seed, data, base)
    folder = store.local_dir(ref)
    reloaded = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    # the same run again in memory (training is deterministic given the seed)
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(base)), exp.model, "cpu")
    train(
        model,
        prepared.train,
        alpha,
        exp.final.train,
        exp.seed,
        folder.parent / "again",
        torch.device("cpu"),
    )
    ids = torch.tensor([tokenizer("def add(a, b): return a + b")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)
    scores = final.score_final_run(exp, store, ref, data)
    info = store.load_json(scores, "scores.json")
    assert info["alpha"] == pytest.approx(alpha) and info["run"] == ref.key
    assert set(info["metrics"]) >= {f"group.{g}" for g in exp.evaluation.groups}
    for d in exp.domains:  # the stored checkpoint is what was scored
        loss, _ = heldout_loss(model, prepared.heldout[d], exp.evaluation.batch_size, "cpu")
        assert info["metrics"][f"loss.{d}"] == pytest.approx(loss, rel=1e-6), d
    runs = {"chosen": [ref], "uniform": [ref]}
    summary_ref = final.final_training(exp, store, runs, {"chosen": [scores], "uniform": [scores]})
    table = store.load_parquet(summary_ref, "comparison.parquet")
    assert isinstance(table, pd.DataFrame) and (table["gain vs uniform"] == 0).all()


def test_an_edited_evaluation_rescores_final_runs_without_retraining_them(setup):
    exp, _, data, base, _, _ = setup
    assert len(exp.evaluation.tasks) > 1
    fewer = exp.evaluation.model_copy(update={"tasks": exp.evaluation.tasks[:1]})
    edited = exp.model_copy(update={"evaluation": fewer})
    alpha = [0.3, 0.7]
    run = mixed.final_run_ref(exp, alpha, exp.seed, data, base)
    assert mixed.final_run_ref(edited, alpha, exp.seed, data, base) == run
    assert final.final_scores_ref(edited, run, data) != final.final_scores_ref(exp, run, data)
    steps = exp.final.train.steps + 1
    longer = exp.final.model_copy(
        update={"train": exp.final.train.model_copy(update={"steps": steps})}
    )
    retrained = exp.model_copy(update={"final": longer})
    assert mixed.final_run_ref(retrained, alpha, exp.seed, data, base) != run


def test_final_mixtures_include_the_baselines():
    exp = Experiment()
    stats_ = {d: {"characters": c} for d, c in zip(exp.domains, [1, 1, 2, 4], strict=True)}
    chosen = dict(zip(exp.domains, [0.1, 0.2, 0.3, 0.4], strict=True))
    out = final.final_mixtures(exp, chosen, stats_)
    assert out["natural"] == pytest.approx([0.125, 0.125, 0.25, 0.5])
    assert out["uniform"] == pytest.approx([0.25] * 4)
    assert out["chosen"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(simplex.SimplexError, match="no weight"):
        final.final_mixtures(exp, {"math": 1.0}, stats_)


def test_validation_and_final_settings_leave_upstream_keys_alone():
    exp = Experiment()
    other = exp.model_copy(
        update={
            "validation": exp.validation.model_copy(update={"n_mixtures": 5, "reruns": 0}),
            "final": exp.final.model_copy(update={"seeds": 3}),
        }
    )

    def keys(e: Experiment) -> list[str]:
        data = stages.data_ref(e)
        base = stages.base_ref(e, data)
        return [data.key, base.key, stages.expert_ref(e, "math", data, base).key]

    assert keys(exp) == keys(other)
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    alpha = [0.25] * 4
    slower = exp.model_copy(deep=True)
    slower.training.expert.lr = 5e-4
    assert mixed.mixed_ref(exp, alpha, 0, data, base) != mixed.mixed_ref(
        slower, alpha, 0, data, base
    )
    assert mixed.mixed_ref(exp, alpha, 0, data, base) != mixed.mixed_ref(exp, alpha, 1, data, base)
