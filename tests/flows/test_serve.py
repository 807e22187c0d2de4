"""`parammix serve`: which deployments it serves, and what it says without a server."""

from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.cli import main, served_deployments
from parammix_core.config import load_experiment

ROOT = Path(__file__).resolve().parents[2]


def test_served_deployments_carry_the_config_and_schedules():
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    deployments = served_deployments(exp, weekly="0 2 * * 0", nightly="0 3 * * *")
    by_name = {(d.flow_name, d.name): d for d in deployments}
    assert set(by_name) == {
        ("param-mix", "served"),
        ("param-mix", "served-weekly"),
        ("evaluate-mixtures", "served"),
        ("evaluate-mixtures", "served-nightly"),
        ("refit-surrogates", "served"),
    }
    for d in deployments:
        assert d.parameters["exp"]["name"] == "micro"
        assert d.parameters["exp"] == exp.model_dump(mode="json")
    crons = {k: [s.schedule.cron for s in d.schedules or []] for k, d in by_name.items()}
    assert crons[("param-mix", "served-weekly")] == ["0 2 * * 0"]
    assert crons[("evaluate-mixtures", "served-nightly")] == ["0 3 * * *"]
    assert crons[("param-mix", "served")] == []


def test_served_deployments_without_schedules():
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    names = {d.name for d in served_deployments(exp, weekly="none", nightly="none")}
    assert names == {"served"}


def test_serve_needs_a_server(capsys):
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["serve", "--config", str(ROOT / "configs" / "micro.yaml")]) == 2
    assert "prefect server start" in capsys.readouterr().err
