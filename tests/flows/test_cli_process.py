"""`parammix run` as a user starts it: a separate process, no Prefect server configured, so
the CLI starts its own temporary one. Successful runs (the first and a fully cached one) and a
failing one end without a traceback on the terminal; tracebacks go to the debug log. A
SIGTERM ends a run with one error line and takes its temporary server with it."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.parammix_core.bad_input import write_jsonl

ROOT = Path(__file__).resolve().parents[2]
FRAME = re.compile(r'^\s*File ".*", line \d+', re.M)


COMMAND = [sys.executable, "-c", "from flows.cli import main; raise SystemExit(main())"]


def user_env(tmp: Path) -> dict[str, str]:
    """A user's environment: no Prefect API configured, Prefect's and our caches under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST"))}
    env.update(PREFECT_HOME=str(tmp / "prefect"), PARAMMIX_CACHE=str(tmp / "cache"))
    return env


def parammix(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args], cwd=tmp, env=user_env(tmp), capture_output=True, text=True, timeout=900
    )


def clean(result: subprocess.CompletedProcess) -> str:
    text = result.stdout + result.stderr
    for noise in ("Traceback", "Error flushing", "CancelledError", "Logging error"):
        assert noise not in text, text
    assert not FRAME.search(text), text
    return text


@pytest.mark.slow
def test_successful_and_cached_runs_end_without_tracebacks(tmp_path: Path):
    argv = ["run", "--config", str(ROOT / "configs" / "micro.yaml")]
    argv += ["--set", f"store.url={tmp_path / 'store'}", "--set", "validation.enabled=false"]
    argv += ["--set", "final.enabled=false"]
    first = parammix(tmp_path, *argv)
    assert first.returncode == 0, first.stderr
    second = parammix(tmp_path, *argv)  # every task a cache hit: the shutdown race case
    assert second.returncode == 0, second.stderr
    for result in (first, second):
        text = clean(result)
        assert "Param-Mix finished in" in text and "report: " in text
        # the summary once, on stdout (it is in Prefect's log for the UI, not on this terminal)
        assert result.stdout.count("\nchosen mixture: ") == 1
        assert "chosen mixture: " not in result.stderr
        assert "[WARNING]" not in text  # DeepSpeed's accelerator guess (engine: plain)
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]  # the same report
    logs = list((tmp_path / "cache" / "logs").glob("parammix-*.log"))
    assert len(logs) == 2  # the server's output went there, not to the terminal


@pytest.mark.slow
def test_a_failing_run_prints_one_error_line_and_logs_the_traceback(tmp_path: Path):
    good = write_jsonl(tmp_path / "a.jsonl")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text here"}\n')
    config = {
        "data": {
            "domains": [{"name": "a", "paths": [str(good)]}, {"name": "b", "paths": [str(bad)]}]
        },
        "store": {"url": str(tmp_path / "store")},
    }
    (tmp_path / "exp.yaml").write_text(json.dumps(config))
    result = parammix(tmp_path, "run", "--config", "exp.yaml")
    assert result.returncode == 2
    text = clean(result)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    cause = f"{bad}:2: no key 'text' (keys: ['body']); set the domain's text_field"
    assert errors == [f"error: prepare_domains: domain 'b': {cause}"]
    details = re.search(r"details: (\S+\.log)", result.stderr)
    assert details and "Traceback" in Path(details.group(1)).read_text()
    debug = parammix(tmp_path, "run", "--config", "exp.yaml", "--debug")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


def _with_env(marker: str) -> set[int]:
    """PIDs of the processes whose environment holds `marker` (Linux /proc)."""
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.add(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the server's parent-death signal")
def test_sigterm_prints_one_error_line_and_leaves_no_server(tmp_path: Path):
    argv = ["run", "--config", str(ROOT / "configs" / "micro.yaml")]
    argv += ["--set", f"store.url={tmp_path / 'store'}"]
    run = subprocess.Popen(
        [*COMMAND, *argv],
        cwd=tmp_path,
        env=user_env(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen = []
    for line in run.stdout:  # the base is training: the flow and its server are up
        seen.append(line)
        if "base: step" in line:
            break
    others = _with_env(str(tmp_path / "prefect")) - {run.pid}
    assert others, "".join(seen)  # the temporary server, which must not outlive the run
    run.send_signal(signal.SIGTERM)
    rest, _ = run.communicate(timeout=120)  # a run that ignored the signal fails, not hangs
    assert run.returncode == 143
    result = subprocess.CompletedProcess(run.args, 143, "".join(seen) + rest, "")
    text = clean(result)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert errors == ["error: terminated (SIGTERM); finished stages are kept in the store"]
    deadline = time.monotonic() + 30
    while _with_env(str(tmp_path / "prefect")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _with_env(str(tmp_path / "prefect"))


def test_a_cache_that_is_a_file_gives_one_line_and_nothing_from_matplotlib(tmp_path: Path):
    """An audit (2026-12-07): with PARAMMIX_CACHE a file, matplotlib printed two lines (and made
    a folder under /tmp) before `store list` failed on something else."""
    (tmp_path / "cache").write_text("x\n")
    done = parammix(tmp_path, "store", "list", "--set", f"store.url={tmp_path / 's'}")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: PARAMMIX_CACHE: cannot write in {tmp_path / 'cache'} (a file, not a folder; the "
        "debug log, build and staging folders go there); set PARAMMIX_CACHE to a writable folder"
    ]
    assert done.stdout == "" and (tmp_path / "cache").read_text() == "x\n"


@pytest.mark.slow
def test_a_store_command_with_a_block_keeps_prefects_server_off_the_terminal(tmp_path: Path):
    """Reading a credentials block starts a temporary Prefect server when no API is set: its
    "Starting temporary server" and "See https://docs.prefect.io..." lines went to the
    terminal (audit 38); they go to the debug log, as `run`'s do."""
    argv = ["store", "list", "--set", "store.url=s3://bucket/x"]
    done = parammix(tmp_path, *argv, "--set", "store.credentials_block=no-such-block")
    assert done.returncode == 2 and done.stdout == ""
    lines = clean(done).splitlines()
    assert lines[0] == (
        "error: store.credentials_block 'no-such-block': no such Prefect Secret block (Unable to "
        "find block document named no-such-block for block type secret)"
    )
    assert len(lines) == 2 and lines[1].startswith("  details: ")
    log = next((tmp_path / "cache" / "logs").glob("parammix-*.log")).read_text()
    assert "prefect config set PREFECT_API_URL=http://127.0.0.1:" in log  # the server's banner


def test_a_flow_run_process_drops_deepspeeds_accelerator_guess(tmp_path: Path):
    """A worker's flow-run process imports the flow, not the CLI: DeepSpeed's stdout line
    "Setting accelerator to CPU ... unable to detect it" came back there (audit 39)."""
    code = "import flows.param_mix, deepspeed; print('imported')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported\n" and "accelerator" not in done.stderr


@pytest.mark.parametrize("served", [True, False], ids=["served", "plain"])
def test_a_served_flow_run_process_logs_without_tracebacks(tmp_path: Path, served: bool):
    """`parammix serve`'s flow runs are processes Prefect spawns, sharing its terminal: their
    tracebacks filled it (audit 39). Under serve they log one line each, the traceback kept
    for the UI's copy of the log; elsewhere Prefect's console is left as it is."""
    code = (
        "import logging\nfrom prefect.logging.configuration import setup_logging\n"
        "setup_logging()\nimport flows\n"  # the order of Prefect's spawned flow-run process
        "try:\n    raise ValueError('boom')\n"
        "except ValueError:\n    logging.getLogger('prefect.check').exception('it failed')\n"
    )
    env = user_env(tmp_path)
    env.pop("PARAMMIX_CONSOLE_TRACEBACKS", None)
    if served:
        env["PARAMMIX_CONSOLE_TRACEBACKS"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "it failed" in done.stderr
    assert ("Traceback" in done.stderr) is not served
