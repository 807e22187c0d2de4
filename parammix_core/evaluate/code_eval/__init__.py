"""Hugging Face's `code_eval` metric, for lm-eval's code tasks on machines without the hub.

lm-eval's humaneval and mbpp score with `evaluate.load("code_eval")`, called when their
`utils.py` is imported; `evaluate` fetches that metric's script from the Hugging Face hub, so
offline (`HF_HUB_OFFLINE=1`, an air-gapped cluster) the task cannot even be built.
`code_eval.py` and `execute.py` here are that metric's script, unchanged, from
github.com/huggingface/evaluate (metrics/code_eval at 8b9373dc, Apache-2.0; the execution code
is adapted there from OpenAI's human-eval, MIT): while `code_eval_fallback()` is active,
`evaluate.load("code_eval")` loads this copy when the hub's cannot be had. The scores are
still computed by lm-eval's own metric functions through `evaluate`.

The metric runs model-generated code in a subprocess with some destructive calls disabled; it
is no sandbox. It refuses to run unless HF_ALLOW_CODE_EVAL=1, which the evaluator sets only
when `evaluation.allow_code_execution` is true.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCRIPT = Path(__file__).with_name("code_eval.py")
_patching = threading.Lock()


@contextmanager
def code_eval_fallback() -> Iterator[None]:
    """`evaluate.load("code_eval")` falls back to the copy here while the block runs."""
    import evaluate

    original = evaluate.load

    def load(path: str, *args, **kwargs):
        if path != "code_eval":
            return original(path, *args, **kwargs)
        try:
            return original(path, *args, **kwargs)
        except (FileNotFoundError, ConnectionError):  # offline: the hub's copy is out of reach
            return original(str(SCRIPT), *args, **kwargs)

    with _patching:
        evaluate.load = load
        try:
            yield
        finally:
            evaluate.load = original
