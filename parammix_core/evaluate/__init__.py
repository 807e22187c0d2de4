"""Evaluation of merged models: lm-eval benchmarks by capability group, and held-out loss.

`write_builtin_suite` generates the default benchmark folder once; an `Evaluator` wraps one live
model and scores its current weights on each `evaluate()` call.
"""

from parammix_core.evaluate.harness import (
    BINARY_METRICS,
    EvaluationError,
    Evaluator,
    aggregate_groups,
    binomial_stderr,
)
from parammix_core.evaluate.heldout import HeldoutError, heldout_loss
from parammix_core.evaluate.suite import BUILTIN_TASKS, SuiteError, write_builtin_suite

__all__ = [
    "BINARY_METRICS",
    "BUILTIN_TASKS",
    "EvaluationError",
    "Evaluator",
    "HeldoutError",
    "SuiteError",
    "aggregate_groups",
    "binomial_stderr",
    "heldout_loss",
    "write_builtin_suite",
]
