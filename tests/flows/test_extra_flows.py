"""evaluate-mixtures and refit-surrogates on the micro config, reusing one set of experts."""

import logging
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.evaluate_mixtures import evaluate_mixtures
from flows.param_mix import param_mix
from flows.refit import refit_surrogates
from parammix_core import stages
from parammix_core.config import ConfigError, Experiment, apply_overrides, load_experiment
from parammix_core.failure import STAGE
from parammix_core.simplex import SimplexError

ROOT = Path(__file__).resolve().parents[2]


def micro(store: Path) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    overrides = ["validation.enabled=false", "final.enabled=false", f"store.url={store}"]
    return apply_overrides(exp, overrides, "configs/micro.yaml")


@pytest.mark.slow
def test_evaluate_given_mixtures_then_refit_with_them(prefect_api, tmp_path: Path):
    exp = micro(tmp_path / "store")
    store = stages.open_store(exp)
    extra = [{"math": 0.9, "sft": 0.1}, {"math": 0.1, "sft": 0.9}, {"math": 0.3, "sft": 0.7}]

    scored = evaluate_mixtures(exp, extra)
    rows = stages.load_rows(store, scored["evals"])
    assert rows[["alpha.math", "alpha.sft"]].round(6).values.tolist() == [
        [m["math"], m["sft"]] for m in extra
    ]
    for group in exp.evaluation.groups:
        assert rows[f"group.{group}"].between(-20, 0, inclusive="neither").all()  # minus bits/byte
    experts_before = {m["key"] for m in store.artifacts() if m["stage"] == "expert"}

    refs = refit_surrogates(exp, extra)
    fitted = store.load_parquet(refs["surrogates"], "rows.parquet")
    assert len(fitted) == exp.search.n_mixtures + len(extra)  # planned + the new rows
    experts_after = {m["key"] for m in store.artifacts() if m["stage"] == "expert"}
    assert experts_after == experts_before  # the experts were reused, not retrained
    assert "Chosen mixture" in stages.report_text(store, refs["report"])


def test_evaluate_rejects_a_mixture_off_the_simplex(prefect_api, tmp_path: Path):
    exp = micro(tmp_path / "store")
    ok = {"math": 0.5, "sft": 0.5}
    with pytest.raises(SimplexError, match=r"^mixtures\.1: mixture weights sum to 1\.8"):
        evaluate_mixtures(exp, [ok, {"math": 0.9, "sft": 0.9}])  # the item named (audit 39)
    with pytest.raises(ValueError, match="mixtures: give at least one"):
        refit_surrogates(exp, [])  # refit ignored [] where evaluate refused it (audit 39)
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_evaluate_says_what_it_scored_and_keeps_the_planned_tables(
    prefect_api, tmp_path: Path, caplog
):
    """A second nightly run read as work done, and given mixtures replaced the planned batch
    0's table artifact (audit 39)."""
    exp = micro(tmp_path / "store")
    with caplog.at_level(logging.INFO):
        evaluate_mixtures(exp)
        evaluate_mixtures(exp)
        evaluate_mixtures(exp, [{"math": 0.9, "sft": 0.1}])
    logs = [r.getMessage() for r in caplog.records]
    said = [m for m in logs if "batch(es)" in m or "nothing new" in m]
    assert said[0] == "8 mixture(s) of the planned mixtures in 2 batch(es) for experiment 'micro'"
    assert said[1].startswith("2 batch(es) scored by this run, the newest published 20")
    assert said[2] == said[0] and said[3].startswith("nothing new: every batch was already in")
    assert said[4] == "1 mixture(s) of the given mixtures in 1 batch(es) for experiment 'micro'"
    assert said[5].startswith("1 batch(es) scored by this run")
    wanted = ["micro-evaluated-batch-0", "micro-evaluated-batch-given-0"]
    with get_client(sync_client=True) as client:  # by key: the session's server holds many
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted))
        )
    assert set(wanted) <= {a.key for a in found}


@pytest.mark.parametrize("flow", [param_mix, evaluate_mixtures], ids=["param-mix", "evaluate"])
def test_a_flow_run_refuses_a_bad_task_before_anything_trains(prefect_api, tmp_path, flow):
    """A deployment's run (the UI's, a schedule's) trained data, base and experts before an
    unknown task failed it: only `parammix run` checked first (audit 39)."""
    overrides = [f"store.url={tmp_path / 'store'}", "evaluation.tasks.0.name=no_such_task"]
    with pytest.raises(ConfigError, match=r"evaluation\.tasks\.0\.name.*'no_such_task'") as err:
        flow(config="micro", overrides=overrides)
    assert getattr(err.value, STAGE) == "preflight"
    assert not (tmp_path / "store").exists()  # no data, base or expert
