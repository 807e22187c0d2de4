"""The temporary Prefect server's lifetime helpers (flows/server.py)."""

import subprocess
import sys

from flows import server


def test_signal_servers_terminates_each_running_server_and_its_group(monkeypatch):
    # stand-ins for `prefect server start`: own process groups, as prefect_api starts them
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        for _ in range(2)
    ]
    monkeypatch.setattr(server, "_RUNNING", procs)
    try:
        server.signal_servers()
        assert [p.wait(timeout=10) for p in procs] == [-15, -15]  # SIGTERM, not a normal exit
        server.signal_servers()  # already gone: nothing to signal, no error
    finally:
        for p in procs:
            p.kill()
