"""The Prefect runner behind `parammix serve`, stopped the same way by Ctrl-C and by SIGTERM.

Prefect 3.8's runner answers SIGTERM (`kill`, `docker stop`, a pod's deletion) by calling its
async `stop` from a sync signal handler, which only creates the coroutine: it prints "coroutine
'Runner.astop' was never awaited", cancels none of the flow runs it started, and exits 0; Ctrl-C
unwinds it without cancelling them either. Either way a run it had started stayed Running in the
UI. Here both schedule `astop` on the runner's own loop, so its flow runs are cancelled (the UI
shows them Cancelled) and its schedules paused; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

from prefect.exceptions import TerminationSignal
from prefect.runner import Runner

SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}


class ServedRunner(Runner):
    """A `Runner` that a signal stops through its own loop; `stopped_by` names the signal."""

    stopped_by: str | None = None
    at_once: bool = False  # a second signal: stopped before its runs were cancelled
    _stopping: asyncio.Future[None] | None = None

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:  # Prefect installs it
        self.handle_signal(signal.SIGTERM)

    def handle_signal(self, signum: int, *_: Any) -> None:
        """Stop gracefully; at once when the runner is not started yet or already stopping."""
        if self.stopped_by is not None or not self.started or self._loop is None:
            self.at_once = self.stopped_by is not None
            self.stopped_by = self.stopped_by or SIGNALS[signum]
            raise TerminationSignal(signum)
        self.stopped_by = SIGNALS[signum]
        self._logger.info(f"{self.stopped_by}: cancelling this runner's flow runs, then stopping")
        self._loop.call_soon_threadsafe(self._stop_soon)

    def _stop_soon(self) -> None:
        # the task is kept: the loop holds tasks weakly
        self._stopping = asyncio.ensure_future(self.astop())


def serve(deployments: list[Any], limit: int | None) -> ServedRunner:
    """Serve `deployments` until SIGTERM or Ctrl-C; the runner says which stopped it."""
    runner = ServedRunner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)
    main = threading.current_thread() is threading.main_thread()  # else the embedder's signals
    previous = signal.signal(signal.SIGINT, runner.handle_signal) if main else None
    try:
        asyncio.run(runner.start())
    except TerminationSignal:
        pass  # a signal before the runner started, or a second one: `stopped_by` says which
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return runner
