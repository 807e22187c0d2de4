"""The Prefect API a CLI run talks to: `PREFECT_API_URL` when set, else a temporary local
server for the run, started with Prefect's own `prefect server start`.

Prefect's built-in temporary server shares the terminal, so its shutdown noise (events still
being flushed when it stops) reached the user as tracebacks after successful runs. This one
writes everything it says to the run's debug log, and is stopped only after this process has
sent its last logs and events.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 600.0  # the first start migrates a fresh database: slow on a small machine


class ServerError(RuntimeError):
    """The temporary Prefect server did not start; the message names its log."""


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Linux: the server gets SIGTERM when this process dies, however it dies (even by SIGKILL):
# a run never leaves a server behind. Checking the parent after prctl closes the race where it
# died first.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def _command(port: int) -> list[str]:
    prefect = shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"
    launcher = (
        [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid())]
        if sys.platform == "linux"
        else []
    )
    return [
        *launcher,
        prefect,
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-ui",
        "--analytics-off",
        "--no-scheduler",
        "--no-late-runs",
    ]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(
                    f"the temporary Prefect server exited with code {proc.returncode} (see {log})"
                )
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise ServerError(f"the temporary Prefect server did not start in {timeout:.0f} s (see {log})")


def _drain() -> None:
    """Send what this process still holds for the API (logs, events) before it goes."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        logger = logging.getLogger(service.__name__)  # "still processing items" while it waits
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            service.drain_all(timeout=30)
        finally:
            logger.setLevel(level)


_RUNNING: list[subprocess.Popen] = []  # this process's temporary servers


def signal_servers() -> None:
    """SIGTERM every temporary server this process started, without waiting: for an exit that
    skips `prefect_api`'s cleanup (the CLI's SIGTERM handler), on every platform."""
    for proc in _RUNNING:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def check_api(temporary: bool = True) -> None:
    """Before a run writes anything: a set PREFECT_API_URL answers, and a temporary server
    has a PREFECT_HOME folder for its database (else ServerError naming the setting).
    `temporary`: whether the command can do without a set server (`serve` cannot)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.api.url
    if url:
        with get_client(sync_client=True) as client:
            err = client.api_healthcheck()
        if err is not None:
            other = " or unset PREFECT_API_URL for a temporary one" if temporary else ""
            raise ServerError(
                f"PREFECT_API_URL {url}: cannot reach the Prefect server ({err}); start it "
                f"(`prefect server start`){other}"
            )
    elif settings.home.exists() and not settings.home.is_dir():
        raise ServerError(
            f"PREFECT_HOME {settings.home}: a file, not a folder; the temporary Prefect server "
            "keeps its database there"
        )


@contextmanager
def prefect_api(log: Path) -> Iterator[str]:
    """The API URL for this run; a temporary server (output to `log`) when none is set."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    current = get_current_settings().api.url
    if current:
        yield current
        return
    port = _free_port()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            _command(port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stopped as a whole, not by ^C
        )
    url = f"http://127.0.0.1:{port}/api"
    _RUNNING.append(proc)
    try:
        _wait_healthy(url, proc, log, STARTUP_TIMEOUT)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain()
    finally:
        _stop(proc)
        _RUNNING.remove(proc)
