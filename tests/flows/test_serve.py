"""`parammix serve`: which deployments it serves, and what it says without a server."""

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.cli import main
from flows.serve_cli import served_deployments
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
    err = capsys.readouterr().err
    assert err.startswith("error: serve: PREFECT_API_URL is not set;")
    assert "prefect server start" in err


def test_a_served_preset_stays_a_name(tmp_path: Path, monkeypatch):
    """`serve --config micro` served `config: <cwd>/micro`, a file no run found (audit 39)."""
    monkeypatch.chdir(tmp_path)
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    (served,) = served_deployments(exp, "none", "none", "micro")[:1]
    assert served.parameters["config"] == "micro"
    assert resolve_experiment(config=served.parameters["config"]) == exp
    (tmp_path / "mine.yaml").write_text("name: mine\n")  # a file is served by its full path
    (served,) = served_deployments(exp, "none", "none", "mine.yaml")[:1]
    assert served.parameters["config"] == str(tmp_path / "mine.yaml")


def test_serve_refuses_a_bad_task_and_a_folder_that_is_no_store(tmp_path, capsys, monkeypatch):
    """Every served run would have failed on them (audit 39)."""
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    argv = ["serve", "--config", "micro", "--set", "evaluation.tasks.0.name=no_such_task"]
    assert main(argv) == 2
    assert "evaluation.tasks.0.name: unknown lm-eval task 'no_such_task'" in (
        capsys.readouterr().err
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        monkeypatch.setattr("flows.server.check_api", lambda temporary=True: None)
        assert main(["serve", "--config", "micro", "--set", f"store.url={tmp_path / 'mine'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: store {tmp_path / 'mine'}: ") and "not a Param-Mix store" in err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("option", ["--weekly", "--nightly"])
def test_a_schedule_that_is_no_cron_names_its_option(option: str, capsys):
    assert main(["serve", option, "at two"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {option} 'at two': not a cron expression (e.g. '0 2 * * 0'), or 'none'"]


def test_an_unreachable_server_names_its_url(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/api"  # the discard port: nothing listens
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert main(["serve", "--config", str(ROOT / "configs" / "micro.yaml")]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"error: PREFECT_API_URL {url}: cannot reach the Prefect server")
    assert "Traceback" not in first
    assert "unset PREFECT_API_URL" not in first  # serve refuses to run without it (audit 39)


def test_a_run_takes_a_preset_a_file_or_a_whole_experiment(tmp_path):
    micro = load_experiment(ROOT / "configs" / "micro.yaml")
    assert resolve_experiment(config="micro") == micro
    assert resolve_experiment(config=str(ROOT / "configs" / "micro.yaml")) == micro
    assert resolve_experiment(exp=micro, overrides=["seed=3"]).seed == 3
    assert resolve_experiment() == load_experiment(None)
    with pytest.raises(ConfigError, match=r"config 'tiny': no such preset; presets are \["):
        resolve_experiment(config="tiny")
    with pytest.raises(ConfigError, match=r"give either config .* with exp=null beside config"):
        resolve_experiment(exp=micro, config="micro")  # a setup.sh deployment given a config
    with pytest.raises(ConfigError, match=r"one that holds a config .* with config=null beside"):
        resolve_experiment(exp=micro, config="micro")  # a served one given an exp (audit 39)
    assert resolve_experiment(exp=None, config="micro") == micro  # --param exp=null: it runs
    with pytest.raises(ConfigError, match=r"search.n_mixtures: Input should be greater than 0"):
        resolve_experiment(config="micro", overrides=["search.n_mixtures=0"])
    # a flow run's parameter is `overrides`, not the CLI's --set (audit 39)
    with pytest.raises(ConfigError, match=r"^micro with overrides: 1 invalid field"):
        resolve_experiment(config="micro", overrides=["search.n_mixtures=0"])
    with pytest.raises(ConfigError, match=r"^overrides 'nonsense': expected dotted.path=value"):
        resolve_experiment(config="micro", overrides=["nonsense"])


@pytest.mark.parametrize("debug", [False, True])
def test_serve_keeps_tracebacks_of_its_runs_off_its_terminal(tmp_path, monkeypatch, debug):
    """The flow-run processes Prefect spawns inherit the setting (audit 39); --debug keeps them."""
    seen = {}
    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PARAMMIX_CONSOLE_TRACEBACKS", raising=False)
    monkeypatch.setattr("flows.server.check_api", lambda temporary=True: None)

    def serve(deployments, limit):
        seen.update(env=os.environ.copy())
        return SimpleNamespace(stopped_by=None, at_once=False)

    monkeypatch.setattr("flows.served_runner.serve", serve)
    argv = ["serve", "--config", "micro", "--set", f"store.url={tmp_path / 'store'}"]
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert main([*argv, *(["--debug"] if debug else [])]) == 0
    assert seen["env"].get("PARAMMIX_CONSOLE_TRACEBACKS") == (None if debug else "0")


@pytest.mark.parametrize(
    ("stop", "at_once", "code", "said"),
    [
        (
            "SIGTERM",
            False,
            143,
            "error: serve: terminated (SIGTERM); the flow runs it had started were cancelled and "
            "its schedules paused (`parammix serve` again resumes them)",
        ),
        (
            "Ctrl-C",
            False,
            130,
            "error: serve: interrupted (Ctrl-C); the flow runs it had started were cancelled and "
            "its schedules paused (`parammix serve` again resumes them)",
        ),
        (
            "Ctrl-C",
            True,
            130,
            "error: serve: interrupted (Ctrl-C); stopped at once by a second signal: a flow run "
            "it had started may show Running in the UI until cancelled there",
        ),
    ],
)
def test_a_stopped_serve_says_how(tmp_path, capsys, monkeypatch, stop, at_once, code, said):
    """SIGTERM and Ctrl-C end serve as they end `run`: one line, 143 / 130 (Prefect's serve
    swallowed both and exited 0). The signals themselves: tests/e2e, against a real server."""

    def serve(deployments, limit):
        assert limit == 3
        return SimpleNamespace(stopped_by=stop, at_once=at_once)

    monkeypatch.setenv("PARAMMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("flows.server.check_api", lambda temporary=True: None)
    monkeypatch.setattr("flows.served_runner.serve", serve)
    argv = ["serve", "--config", "micro", "--set", f"store.url={tmp_path / 'store'}"]
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert main([*argv, "--limit", "3", "--weekly", "none"]) == code
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "serving 4 deployments on http://127.0.0.1:4200/api: param-mix/served, "
        "refit-surrogates/served, evaluate-mixtures/served, evaluate-mixtures/served-nightly",
        "  start a run from the UI, or: prefect deployment run 'param-mix/served'",
        "  Ctrl-C or SIGTERM stops serving (runs started here are cancelled)",
    ]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [said]


class Loop:
    def __init__(self) -> None:
        self.scheduled: list = []

    def call_soon_threadsafe(self, callback) -> None:
        self.scheduled.append(callback)


def test_a_signal_stops_the_runner_through_its_loop_and_a_second_at_once():
    """The first signal schedules the runner's own `astop` (which cancels its runs); a second
    one, or one before the runner started, unwinds at once and says so."""
    from prefect.exceptions import TerminationSignal

    from flows.served_runner import ServedRunner

    runner = ServedRunner()
    with pytest.raises(TerminationSignal):  # not started: nothing to cancel
        runner.handle_signal(signal.SIGINT)
    assert (runner.stopped_by, runner.at_once) == ("Ctrl-C", False)

    runner, loop = ServedRunner(), Loop()
    runner.started, runner._loop = True, loop
    runner.handle_sigterm()
    assert (runner.stopped_by, runner.at_once) == ("SIGTERM", False)
    assert loop.scheduled == [runner._stop_soon]
    with pytest.raises(TerminationSignal):
        runner.handle_signal(signal.SIGINT)
    assert (runner.stopped_by, runner.at_once) == ("SIGTERM", True)
    assert loop.scheduled == [runner._stop_soon]
