"""`parammix serve`: which deployments it serves, and what it says without a server."""

from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.cli import main, served_deployments
from parammix_core.config import ConfigError, load_experiment, resolve_experiment

ROOT = Path(__file__).resolve().parents[2]


def test_served_deployments_carry_the_config_and_schedules():
    micro = ROOT / "configs" / "micro.yaml"
    exp = load_experiment(micro)
    sets = ["search.n_mixtures=12"]
    deployments = served_deployments(exp, "0 2 * * 0", "0 3 * * *", str(micro), sets)
    by_name = {(d.flow_name, d.name): d for d in deployments}
    assert set(by_name) == {
        ("param-mix", "served"),
        ("param-mix", "served-weekly"),
        ("evaluate-mixtures", "served"),
        ("evaluate-mixtures", "served-nightly"),
        ("refit-surrogates", "served"),
    }
    for d in deployments:  # a short run form: the file and the overrides, read at run time
        assert d.parameters == {"config": str(micro), "overrides": sets}
        resolved = resolve_experiment(**d.parameters)
        assert resolved.name == "micro" and resolved.search.n_mixtures == 12
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


def test_a_run_takes_a_preset_a_file_or_a_whole_experiment(tmp_path):
    micro = load_experiment(ROOT / "configs" / "micro.yaml")
    assert resolve_experiment(config="micro") == micro
    assert resolve_experiment(config=str(ROOT / "configs" / "micro.yaml")) == micro
    assert resolve_experiment(exp=micro, overrides=["seed=3"]).seed == 3
    assert resolve_experiment() == load_experiment(None)
    with pytest.raises(ConfigError, match=r"config 'tiny': no such preset; presets are \["):
        resolve_experiment(config="tiny")
    with pytest.raises(ConfigError, match="give either config"):
        resolve_experiment(exp=micro, config="micro")
    with pytest.raises(ConfigError, match=r"search.n_mixtures: Input should be greater than 0"):
        resolve_experiment(config="micro", overrides=["search.n_mixtures=0"])
