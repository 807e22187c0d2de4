"""What a failed flow run's log shows: its exception's traceback once; a served run's terminal."""

import gc
import logging
import sys

import pytest
from prefect import flow, task
from prefect.flow_engine import run_flow
from prefect.logging import get_logger

import flows  # noqa: F401 (installs the filters, as in every flow-run process)
from flows import debug_log


class Refused(ValueError):
    pass


@task(retries=0)
def refuse() -> None:
    raise Refused("store.url: no store here")


@flow
def wiring() -> None:
    refuse()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record)


def test_a_failed_run_logs_its_traceback_once(prefect_api):
    """As a worker's flow-run process runs it (`run_flow` with the run's logger for errors):
    Prefect logs the task's exception, the flow engine's and its wrapper's, each with the
    traceback (three in the run's log in the UI); the task's is kept, the flow's line loses
    the traceback, the wrapper's record goes."""
    records = Records()
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        get_logger(name).addHandler(records)
    try:
        with pytest.raises(Refused):
            run_flow(wiring, error_logger=get_logger("prefect.flow_runs"))
    finally:
        for name in ("prefect.task_runs", "prefect.flow_runs"):
            get_logger(name).removeHandler(records)
    errors = [r for r in records.seen if r.levelno >= logging.ERROR]
    said = [(r.getMessage().split(":")[0], r.exc_info is not None) for r in errors]
    assert ("Task run failed with exception", True) in said
    assert ("Encountered exception during execution", False) in said
    assert [s for s in said if s[1]] == [("Task run failed with exception", True)]
    assert not any("Engine execution exited" in m for m, _ in said)


class Finalised:
    def __init__(self, raises: BaseException) -> None:
        self.raises = raises

    def __del__(self) -> None:
        raise self.raises


def test_an_error_in_a_finalizer_is_one_line_and_a_signal_there_none(monkeypatch, capsys):
    """In a flow-run process serve started: Python's "Exception ignored in" report with its
    traceback becomes one line; a signal that landed in a finalizer (a run being cancelled)
    prints nothing, its run's cancellation says it."""
    monkeypatch.setattr(sys, "unraisablehook", debug_log._unraisable_on_one_line)
    Finalised(ValueError("shard 3 not closed"))
    Finalised(KeyboardInterrupt())
    gc.collect()
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "warning: ValueError: shard 3 not closed ignored in <function Finalised.__del__ at "
    )
