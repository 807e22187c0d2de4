"""The Prefect runner behind `parammix serve`, stopped the same way by Ctrl-C and by SIGTERM.

Prefect 3.8's runner answers SIGTERM (`kill`, `docker stop`, a pod's deletion) by calling its
async `stop` from a sync signal handler, which only creates the coroutine: it prints "coroutine
'Runner.astop' was never awaited", cancels none of the flow runs it started, and exits 0. Here
SIGTERM schedules `astop` on the runner's own loop, so its flow runs are cancelled (the UI shows
them Cancelled), its schedules paused, and the command can say it was terminated.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from prefect.exceptions import TerminationSignal
from prefect.runner import Runner


class ServedRunner(Runner):
    """A `Runner` whose SIGTERM stops it through its own loop; `terminated` says it came."""

    terminated: bool = False
    _stopping: asyncio.Future[None] | None = None

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        self.terminated = True
        self._logger.info("SIGTERM received: cancelling this runner's flow runs, then stopping")
        if not self.started or self._loop is None:  # still starting: unwind like Ctrl-C
            raise TerminationSignal(signal.SIGTERM)
        self._loop.call_soon_threadsafe(self._stop_soon)

    def _stop_soon(self) -> None:
        # the task is kept: the loop holds tasks weakly
        self._stopping = asyncio.ensure_future(self.astop())


def serve(deployments: list[Any], limit: int | None) -> ServedRunner:
    """Serve `deployments` until Ctrl-C (KeyboardInterrupt) or SIGTERM; the runner is returned
    so the caller can tell which stopped it."""
    runner = ServedRunner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except TerminationSignal:
        runner.terminated = True
    return runner
