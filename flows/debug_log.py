"""What the terminal shows and what goes to the debug log.

The contract of the CLI: a failure prints one `error:` line naming the stage and the field
or file, and no traceback. Tracebacks (ours, Prefect's task and flow logs, the temporary
server's output) go to a debug log, one file per command under `$PARAMMIX_CACHE/logs`;
`--debug` shows them in the terminal as well.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from parammix_core.paths import cache_root

_TRACEBACK = "Traceback (most recent call last)"


def log_dir() -> Path:
    return cache_root() / "logs"


class DebugLog:
    """A file of this command's logs with their tracebacks, made on first use."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.handler: logging.Handler | None = None

    def start(self) -> Path | None:
        """Attach the file to the root logger; None if it cannot be written (no crash)."""
        if self.path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = log_dir() / f"parammix-{stamp}-{os.getpid()}.log"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.handler = logging.FileHandler(path, encoding="utf-8")
            except OSError:
                return None
            self.handler.setLevel(logging.DEBUG)
            self.handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logging.getLogger().addHandler(self.handler)
            self.path = path
        return self.path

    def record(self, err: BaseException) -> Path | None:
        """Write `err` with its traceback to the file only; where it went."""
        path = self.start()
        if self.handler is not None:
            logger = logging.getLogger("parammix.cli")
            logger.propagate = False  # the terminal gets the one-line error instead
            logger.addHandler(self.handler)
            try:
                logger.error("command failed", exc_info=err)
            finally:
                logger.removeHandler(self.handler)
        return path

    def close(self) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
            self.handler = None


class _NoTraceback(logging.Formatter):
    """Formats a record as `inner` does, minus its traceback and stack."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            text = self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        return text.split(_TRACEBACK, 1)[0].rstrip()


def _console_handlers() -> Iterator[logging.Handler]:
    """Every handler that writes to a terminal stream (Prefect's console handler included)."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    seen: set[int] = set()
    for logger in loggers:
        for handler in logger.handlers:
            if id(handler) in seen or isinstance(handler, logging.FileHandler):
                continue
            seen.add(id(handler))
            if isinstance(handler, logging.StreamHandler):
                yield handler


# Set by `parammix serve` (unless --debug) for the flow-run processes Prefect starts for it:
# they inherit its terminal, and their tracebacks belong in the run's log in the UI.
NO_TRACEBACKS_ENV = "PARAMMIX_CONSOLE_TRACEBACKS"


def strip_console_tracebacks() -> None:
    """In a process `serve` started: console lines from now on without tracebacks, and what
    Python reports as "Exception ignored in ..." on one line."""
    if os.environ.get(NO_TRACEBACKS_ENV) == "0":
        for handler in _console_handlers():
            if not isinstance(handler.formatter, _NoTraceback):
                handler.setFormatter(_NoTraceback(handler.formatter))
        sys.unraisablehook = _unraisable_on_one_line


def _unraisable_on_one_line(unraisable: sys.UnraisableHookArgs) -> None:
    """A signal that lands while a finalizer runs (Prefect cancels a run by SIGTERM, a
    terminal's Ctrl-C reaches every process) is reported with a traceback and then ignored;
    the run's cancellation says it already. Other errors get one line."""
    if unraisable.exc_type is None or not issubclass(unraisable.exc_type, Exception):
        return
    where = f" in {unraisable.object!r}" if unraisable.object is not None else ""
    print(
        f"warning: {unraisable.exc_type.__name__}: {unraisable.exc_value} ignored{where}",
        file=sys.stderr,
    )


@contextmanager
def quiet_console() -> Iterator[None]:
    """Console handlers print log lines without tracebacks while this is open."""
    changed = [(h, h.formatter) for h in _console_handlers()]
    for handler, formatter in changed:
        handler.setFormatter(_NoTraceback(formatter))
    try:
        yield
    finally:
        for handler, formatter in changed:
            handler.setFormatter(formatter)


@contextmanager
def off_the_console(attribute: str) -> Iterator[None]:
    """Log records carrying `attribute` reach the API (the Prefect UI) and files but not the
    terminal while this is open: the command prints them itself (the run's summary)."""

    def keep(record: logging.LogRecord) -> bool:
        return not getattr(record, attribute, False)

    handlers = list(_console_handlers())
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


def drop_accelerator_guess() -> None:
    """DeepSpeed logs "Setting accelerator to CPU. If you have GPU ..., we were unable to
    detect it." on stdout when it is imported on a machine without CUDA, `training.engine:
    plain` too. The config names the device (`runtime.device`, refused where it is not), so
    the line only alarms; its other records are kept."""
    logging.getLogger("DeepSpeed").addFilter(
        lambda record: not record.getMessage().startswith("Setting accelerator to CPU")
    )


_LOGGED = "_parammix_traceback_logged"  # set on an exception once a record showed its traceback
_ENGINE_WRAPPER = "Engine execution exited with unexpected exception"


def _once(record: logging.LogRecord) -> bool:
    """Keep a record; drop its traceback if an earlier record showed this exception's, and drop
    the engine wrapper's record of an exception already shown (it adds nothing to it)."""
    err = record.exc_info[1] if record.exc_info else None
    if err is None:
        return True
    if getattr(err, _LOGGED, False):
        if record.msg == _ENGINE_WRAPPER:
            return False
        record.exc_info, record.exc_text = None, None
        return True
    with suppress(AttributeError):  # one that takes no attributes: records stay
        setattr(err, _LOGGED, True)
    return True


def one_traceback_per_error() -> None:
    """A failed flow run logs its exception with the traceback up to three times: the task that
    raised it, the flow engine ("Encountered exception during execution"), the engine's wrapper
    around the run ("Engine execution exited with unexpected exception"). In the run's log in
    the UI (and on a worker's terminal) the first keeps the traceback, the flow's line keeps its
    message without it, the wrapper's goes."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_once)
