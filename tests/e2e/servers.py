"""Real Prefect servers, PostgreSQL clusters and workers as child processes, for the e2e tests.

Everything binds to 127.0.0.1 on a free port, keeps its state under a temp dir and is stopped
(its whole process group) when the `with` block ends, also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _pg_bin() -> Path:
    """Debian's PostgreSQL binaries: PARAMMIX_PG_BIN, else on PATH, else the newest installed."""
    if os.environ.get("PARAMMIX_PG_BIN"):
        return Path(os.environ["PARAMMIX_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else Path("/usr/local/bin")


PG_BIN = _pg_bin()

QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def child(cmd: list[str], log: Path, env: dict[str, str], cwd: Path = ROOT) -> Iterator[None]:
    """A process in its own group, output to `log`; the group is terminated on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


def wait_for(what: str, check, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tail}")


@dataclass
class Server:
    url: str  # the API, http://127.0.0.1:PORT/api
    env: dict[str, str]  # what a client, worker or CLI needs to reach it
    home: Path
    database: str  # "sqlite" or "postgresql"

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run `prefect ARGS` against this server from the project root; return its output."""
        done = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout


@contextlib.contextmanager
def postgres_cluster(workdir: Path) -> Iterator[str]:
    """A private PostgreSQL cluster on a free port; yields an asyncpg connection URL.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user
    (created by Debian's postgresql package) and lives in a dir that user owns.
    """
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="parammix-pg-"))
    data, sockets, log = base / "data", base / "sock", workdir / "postgres.log"
    sockets.mkdir()
    run_as: list[str] = []
    if as_root:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    pg_log = base / "server.log"

    def pg(*args: str) -> None:
        subprocess.run([*run_as, *args], check=True, capture_output=True, timeout=120)

    try:
        pg(str(PG_BIN / "initdb"), "-D", str(data), "-U", "prefect", "--auth=trust", "-E", "UTF8")
        pg(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(pg_log),
            "-w",
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/postgres"
    finally:
        if pg_log.exists():
            log.write_text(pg_log.read_text(errors="replace"))
        if data.exists():
            with contextlib.suppress(subprocess.SubprocessError):
                pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def prefect_server(workdir: Path, database_url: str | None = None) -> Iterator[Server]:
    """`prefect server start` with a fresh PREFECT_HOME (SQLite there unless `database_url`)."""
    home = workdir / "prefect-home"
    home.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **QUIET,
        "PREFECT_HOME": str(home),
        "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_API_URL": url,
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        # The scheduler must pick up new cron deployments within the test, and workers poll often.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PARAMMIX_HOME": str(ROOT),
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = workdir / "server.log"
    with child([str(BIN / "prefect"), "server", "start"], log, env):
        wait_for("prefect server", lambda: httpx.get(f"{url}/health").status_code == 200, 180, log)
        yield Server(url, env, home, "postgresql" if database_url else "sqlite")


@contextlib.contextmanager
def process_worker(server: Server, pool: str, workdir: Path) -> Iterator[None]:
    """`prefect worker start` on a process pool; ready once the server has seen it poll."""
    log = workdir / "worker.log"
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    with child(cmd, log, server.env):

        def polled() -> bool:
            r = httpx.post(f"{server.url}/work_pools/{pool}/workers/filter", json={})
            return r.status_code == 200 and len(r.json()) > 0

        wait_for("process worker", polled, 120, log)
        yield
