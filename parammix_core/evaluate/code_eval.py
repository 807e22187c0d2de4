"""pass@k for lm-eval's code tasks (humaneval, mbpp) on machines without the Hugging Face hub.

lm-eval scores those tasks with `evaluate.load("code_eval")`, called when their `utils.py` is
imported; `evaluate` fetches that metric from the hub, so offline (`HF_HUB_OFFLINE=1`, an
air-gapped cluster) the task cannot even be built. While `code_eval_fallback()` is active, a
failed load returns `CodeEval` instead: the same interface (`compute(references, predictions,
k)` -> ({"pass@k": ...}, per-problem results)) and the same unbiased pass@k estimator of Chen
et al. (2021), written here. lm-eval's own metric functions still do the rest.

Each candidate runs as its own `python -I` process (isolated: no user site, no environment
paths) in a fresh temporary folder with a time limit. That is containment, not a sandbox: the
code is the model's, so it runs only when `evaluation.allow_code_execution` is true, which is
what sets HF_ALLOW_CODE_EVAL=1 (checked here as Hugging Face's metric does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from math import comb

TIMEOUT_SECONDS = 3.0
_patching = threading.Lock()


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Probability that at least one of k of the n samples passes: 1 - C(n-c, k) / C(n, k)."""
    if n - correct < k:
        return 1.0
    return 1.0 - comb(n - correct, k) / comb(n, k)


def passes(program: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    """Does `program` (a candidate and its tests) exit cleanly within `timeout` seconds?"""
    with tempfile.TemporaryDirectory() as cwd:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", program],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


class CodeEval:
    """What lm-eval's code tasks call: `compute(references=tests, predictions=candidates, k)`."""

    def compute(
        self, references: list[str], predictions: list[list[str]], k: list[int] | int = 1
    ) -> tuple[dict[str, float], dict[int, list[bool]]]:
        if os.environ.get("HF_ALLOW_CODE_EVAL") != "1":
            raise ValueError(
                "code_eval runs model-generated code: set evaluation.allow_code_execution: true"
            )
        ks = [k] if isinstance(k, int) else list(k)
        results = {
            i: [passes(f"{candidate}\n{test}") for candidate in candidates]
            for i, (test, candidates) in enumerate(zip(references, predictions, strict=True))
        }
        scores = {}
        for kk in ks:
            per_problem = [pass_at_k(len(r), sum(r), kk) for r in results.values() if len(r) >= kk]
            scores[f"pass@{kk}"] = sum(per_problem) / len(per_problem) if per_problem else 0.0
        return scores, results


@contextmanager
def code_eval_fallback() -> Iterator[None]:
    """`evaluate.load("code_eval")` gives `CodeEval` while the block runs if the hub's metric
    cannot be had (offline)."""
    import evaluate

    original = evaluate.load

    def load(path: str, *args, **kwargs):
        if path != "code_eval":
            return original(path, *args, **kwargs)
        try:
            return original(path, *args, **kwargs)
        except (FileNotFoundError, ConnectionError, OSError):
            return CodeEval()

    with _patching:
        evaluate.load = load
        try:
            yield
        finally:
            evaluate.load = original
