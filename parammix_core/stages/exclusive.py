"""One process at a time computes into a local folder: a data build, a training run's
checkpoints. Two runs of one config on one machine (two flows started at once, two test
workers sharing a cache) would otherwise write over, or delete, each other's files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


@contextmanager
def one_at_a_time(folder: Path) -> Iterator[None]:
    """Hold `<folder>.lock` while computing into `folder`; a second process waits, then finds
    what the first left (a published artifact, a checkpoint to resume from)."""
    lock = FileLock(f"{folder}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process computing into %s", folder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
