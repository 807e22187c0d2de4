"""The whole flow on the micro config, in a Prefect test harness: run twice, second run cached."""

import re
import time
from pathlib import Path

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from flows.param_mix import param_mix
from parammix_core import proxy_validation, simplex, stages
from parammix_core.config import Experiment, load_experiment
from parammix_core.search import scale_from_spec
from parammix_core.stages import final, mixed, validate
from parammix_core.stages.validation_table import load_validation

ROOT = Path(__file__).resolve().parents[2]
TRAINING_TASKS = ("prepare_domains", "base_model", "train_expert[", "train_mixed[", "final_run[")


def micro(store: Path) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    return exp.model_copy(update={"store": exp.store.model_copy(update={"url": str(store)})})


def task_states(flow_run_id, count: int) -> dict[str, str]:
    """Task run name -> state. Task runs and their states reach the server as events, late on
    a loaded machine: wait (up to a minute) until `count` runs are there, all final."""
    with get_client(sync_client=True) as client:
        for _ in range(300):
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(runs) >= count and all(r.state is not None and r.state.is_final() for r in runs):
                break
            time.sleep(0.2)
    return {r.name: r.state.name for r in runs}


@pytest.mark.slow
def test_flow_end_to_end_then_cached(prefect_api, tmp_path: Path, monkeypatch):
    exp = micro(tmp_path / "store")
    first = param_mix(exp, return_state=True)
    refs = first.result()
    store = stages.open_store(exp)

    rows = store.load_parquet(refs["surrogates"], "rows.parquet")
    assert len(rows) == exp.search.n_mixtures
    for group in exp.evaluation.groups:
        assert rows[f"group.{group}"].between(-20, 0, inclusive="neither").all()  # minus bits/byte
        assert (rows[f"group.{group}.stderr"] > 0).all()
    for domain in exp.domains:
        assert (rows[f"loss.{domain}"] > 0).all()
    choice = stages.load_choice(store, refs["choice"])
    simplex.from_mapping(choice.alpha, exp.domains)
    for baseline in ("uniform", "natural"):  # how sure the choice is, and said so
        iv = choice.intervals[baseline]
        assert iv["replicates"] == exp.search.interval.replicates and iv["low"] <= iv["high"]
        gain = choice.predicted_utility - choice.baselines[baseline]["predicted_utility"]
        assert iv["gain"] == pytest.approx(gain)
    assert choice.verdict.startswith(
        "Predicted utility gain of the chosen mixture on the merges (90% interval)"
    )
    assert rows["predicted_delta_norm"].ge(0).all()
    # zero at the experts' own mixtures; a vertex lies past its replay 0.1 expert: with K = 2
    # the one pair's weight is -0.9 * 0.05 * 1 - 0.05^2 there, 0.25 - 0.9 * 0.05 - 0.05^2 at
    # uniform (`outer_weights`), so the predicted gaps stand in that ratio
    k = len(exp.domains)
    gaps = rows["predicted_delta_norm"].to_numpy()
    assert k == 2 and exp.training.replay == 0.1
    np.testing.assert_allclose(gaps[:k] / gaps[k], 0.0475 / 0.2025, rtol=1e-6)
    report = Path(stages.report_path(store, refs["report"]))
    text = report.read_text()
    assert "Chosen mixture" in text and "Interference probe" in text
    assert (report.parent / "interference.png").stat().st_size > 1000
    assert "Proxy validation" in text and "Final mid-training" in text
    assert (report.parent / "validation.png").stat().st_size > 1000
    final = store.load_json(refs["final"], "final.json")
    assert set(final["alphas"]) == {"chosen", "uniform", "natural"}
    loaded = AutoModelForCausalLM.from_pretrained(final["model_uri"])  # as docs/validation.md
    assert len(AutoTokenizer.from_pretrained(final["model_uri"])) == loaded.config.vocab_size
    assert f"`{final['model_uri']}`" in text
    published = {m["key"]: m["created"] for m in store.artifacts()}

    monkeypatch.setenv("PARAMMIX_FAIL_ONCE", "train_expert[math]")  # a drill on a cached run
    second = param_mix(exp, return_state=True)
    assert second.result() == refs
    assert {m["key"]: m["created"] for m in store.artifacts()} == published
    first_count = len(task_states(first.state_details.flow_run_id, 0))
    states = task_states(second.state_details.flow_run_id, first_count)  # the same DAG
    stage_runs = {
        n: s for n, s in states.items() if not n.startswith(("plan_mixtures", "preflight"))
    }
    assert stage_runs and set(stage_runs.values()) == {"Cached"}, stage_runs
    names = set(states)
    assert exp.validation.budget == "final"  # the default: the validation's runs are final runs
    assert {"final_run[uniform]", "final_run[chosen]", "final_run[draw 1, rerun]"} <= names
    assert {
        f"{task}[{m}, seed {s}]"
        for task in ("final_run", "score_final_run")
        for m in ("chosen", "uniform", "natural")
        for s in (0, 1)
    } <= names

    # every run, the cached one too, ends with its answer: a flow-run summary and log lines
    for state in (first, second):
        summary = run_artifacts(state.state_details.flow_run_id)["micro-summary"]
        assert summary.task_run_id is None and summary.description
        expected = stages.summary(store, refs)
        assert [f"- {line.strip()}" for line in expected] == summary.data.splitlines()[2:]
        assert any(line.startswith("validation: On the ") for line in expected)
        assert expected[-1] == f"report: {report}"
    logs = run_logs(second.state_details.flow_run_id, until="PARAMMIX_FAIL_ONCE")
    assert any("train_expert[math] is already in the store" in m and "no fault" in m for m in logs)

    # another metric for one task: every trained run is scored again, none is trained again
    first_task = exp.evaluation.tasks[0].model_copy(update={"metric": "p_gold"})
    tasks = [first_task, *exp.evaluation.tasks[1:]]
    edited = exp.model_copy(
        update={"evaluation": exp.evaluation.model_copy(update={"tasks": tasks})}
    )
    monkeypatch.delenv("PARAMMIX_FAIL_ONCE")
    third = param_mix(edited, return_state=True)
    assert third.result()["final"] != refs["final"]
    states = task_states(third.state_details.flow_run_id, first_count)
    trained = {n: s for n, s in states.items() if n.startswith(TRAINING_TASKS)}
    kinds = {t.rstrip("[") for t in TRAINING_TASKS} - {"train_mixed"}  # validation: final runs
    assert {n.split("[")[0] for n in trained} == kinds
    assert set(trained.values()) == {"Cached"}, trained
    rescored = {n: s for n, s in states.items() if n.startswith("score_final_run[")}
    assert len(rescored) == 6 and set(rescored.values()) == {"Completed"}, rescored
    artifacts = run_artifacts(first.state_details.flow_run_id)
    assert "micro-validation-validation" not in artifacts
    for key in ("micro-report", "micro-proxy-validation"):  # keyed by the experiment's name
        body = artifacts[key].data
        assert "](data:image/png;base64," in body and not re.search(r"\]\([^)]*\.png\)", body)
    assert all(a.description for a in artifacts.values()), [
        k for k, a in artifacts.items() if not a.description
    ]


def run_artifacts(flow_run_id) -> dict:
    """Key -> the latest artifact of that key the flow run made (unkeyed ones under their id)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key or str(a.id): a for a in sorted(found, key=lambda a: a.created)}


def run_logs(flow_run_id, until: str) -> list[str]:
    """The flow run's log messages, once one containing `until` arrived (or after 30 s):
    logs reach the API in batches, after the run's state."""
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any(until in log.message for log in logs) or time.monotonic() > deadline:
                return [log.message for log in logs]
            time.sleep(0.5)


@pytest.mark.slow
def test_validation_and_final_training_judge_the_utility_on_the_searchs_scale(
    prefect_api, tmp_path: Path
):
    exp = micro(tmp_path / "store")
    utility = exp.search.utility.model_copy(update={"normalise": "noise"})
    exp = exp.model_copy(update={"search": exp.search.model_copy(update={"utility": utility})})
    refs = param_mix(exp)
    store = stages.open_store(exp)
    choice = stages.load_choice(store, refs["choice"])
    assert choice.scale["normalise"] == "noise" and set(choice.scale["measured"]) == set(
        exp.evaluation.groups
    )
    scale = scale_from_spec(choice.scale)
    rows = store.load_parquet(refs["validation"], "rows.parquet")
    want = proxy_validation.analyse(
        rows, exp.domains, exp.evaluation.tasks, chosen=rows["mixture"].max(), scale=scale
    )["utility"]
    got = load_validation(store, refs["validation"])["analysis"]["utility"]
    assert got["proxy"]["merge"]["spearman"] == pytest.approx(want["proxy"]["merge"]["spearman"])
    assert got["chosen"]["real_gain"] == pytest.approx(want["chosen"]["real_gain"])
    table = store.load_parquet(refs["final"], "comparison.parquet").set_index("metric")
    groups = {g: table.loc[f"group.{g}"] for g in exp.evaluation.groups}
    gains = [scale(g, [r["chosen"]])[0] - scale(g, [r["uniform"]])[0] for g, r in groups.items()]
    assert table.loc["utility", "gain vs uniform"] == pytest.approx(np.mean(gains))
    report = Path(stages.report_path(store, refs["report"])).read_text()
    assert report.count("The utility has its groups on the search's noise scale.") == 2


@pytest.mark.slow
def test_calibrate_puts_the_merges_on_the_real_runs_scale_before_the_choice(
    prefect_api, tmp_path: Path
):
    exp = micro(tmp_path / "store")
    utility = exp.search.utility.model_copy(update={"calibrate": True})
    exp = exp.model_copy(update={"search": exp.search.model_copy(update={"utility": utility})})
    refs = param_mix(exp)
    store = stages.open_store(exp)
    rows = store.load_parquet(refs["validation"], "rows.parquet")
    alphas = [f"alpha.{d}" for d in exp.domains]
    # the validation trained uniform and the draws, not the choice, which came after it
    mixes = rows[rows["kind"] == "mix"].sort_values("mixture")[alphas].to_numpy()
    np.testing.assert_allclose(mixes, validate.validation_mixtures(exp))
    assert "chosen" not in load_validation(store, refs["validation"])["analysis"]["utility"]
    choice = stages.load_choice(store, refs["choice"])
    assert set(choice.real_scale) == set(exp.evaluation.groups)
    merged = rows[rows["kind"] == "merge"].groupby("mixture").mean(numeric_only=True)
    real = rows[rows["kind"].isin(["mix", "rerun"])].groupby("mixture").mean(numeric_only=True)
    for g, line in choice.real_scale.items():
        slope, intercept = np.polyfit(merged[f"group.{g}"], real[f"group.{g}"], 1)
        if slope < 0:
            slope, intercept = 0.0, real[f"group.{g}"].mean()
        assert line["slope"] == pytest.approx(slope, abs=1e-9)
        assert line["intercept"] == pytest.approx(intercept, abs=1e-9)
        assert line["n"] == exp.validation.n_mixtures
    # the choice's predictions are the merges' surrogate predictions mapped by those lines
    uniform = choice.baselines["uniform"]["predicted"]
    surrogates = stages.load_surrogates(store, refs["surrogates"])
    raw = surrogates.predict_best(np.full((1, len(exp.domains)), 1 / len(exp.domains)))
    for g, line in choice.real_scale.items():
        want = line["intercept"] + line["slope"] * raw[f"group.{g}"][0]
        assert uniform[g] == pytest.approx(want, rel=1e-9)
    report = Path(stages.report_path(store, refs["report"])).read_text()
    assert "Predictions are on the real runs' scale" in report


@pytest.mark.slow
def test_validation_at_the_final_budget_shares_final_trainings_runs(prefect_api, tmp_path: Path):
    exp = micro(tmp_path / "store")
    at_final = exp.validation.model_copy(update={"budget": "final"})
    exp = exp.model_copy(update={"validation": at_final})
    state = param_mix(exp, return_state=True)
    refs = state.result()
    store = stages.open_store(exp)
    runs = [m for m in store.artifacts() if m["name"] == "run"]
    assert {m["stage"] for m in runs} == {"final"}  # no run at the experts' budget
    n = exp.validation.n_mixtures + 1  # uniform, the draws and the choice
    validation_runs = n + exp.validation.reruns
    final_runs = 3 * exp.final.seeds  # chosen, uniform, natural
    assert len(runs) == validation_runs + final_runs - 2  # uniform and chosen on seed 0 shared
    info = load_validation(store, refs["validation"])
    assert info["budget"] == {"name": "final", "steps": exp.final.train.steps}
    # the validation's run of the choice is final training's first: the same scores
    rows = store.load_parquet(refs["validation"], "rows.parquet")
    chosen = rows[(rows["kind"] == "mix") & (rows["mixture"] == n - 1)].iloc[0]
    alpha = [chosen[f"alpha.{d}"] for d in exp.domains]
    run = mixed.final_run_ref(exp, alpha, exp.seed, refs["data"], refs["base"])
    scores = store.load_json(final.final_scores_ref(exp, run, refs["data"]), "scores.json")
    assert scores["alpha"] == pytest.approx(
        list(stages.load_choice(store, refs["choice"]).alpha.values())
    )
    for metric in (
        *(f"loss.{d}" for d in exp.domains),
        *(f"group.{g}" for g in exp.evaluation.groups),
    ):
        assert chosen[metric] == pytest.approx(scores["metrics"][metric], rel=1e-6)
    states = task_states(state.state_details.flow_run_id, 0)
    assert {"final_run[uniform]", "final_run[chosen]", "final_run[draw 1, rerun]"} <= set(states)
    assert not any(name.startswith("train_mixed[") for name in states)
    report = Path(stages.report_path(store, refs["report"])).read_text()
    assert f"at the final budget of {exp.final.train.steps} steps" in report
