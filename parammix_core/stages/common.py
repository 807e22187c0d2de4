"""What every stage shares: the store, the progress callback, config dumps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parammix_core.config import Experiment
from parammix_core.store import Store

Progress = Callable[[int, int, str], None]
"""progress(done, total, message): how far a long stage has got."""


def open_store(exp: Experiment) -> Store:
    return Store(exp.store.url, exp.store.storage_options, exp.store.verify)


def dump_config(model: Any) -> Any:
    return model.model_dump(mode="json")


def train_progress(progress: Progress | None, what: str) -> Callable[[int, int, float], None]:
    def report(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step, total, f"{what}: step {step}/{total} loss {loss:.4f}")

    return report
