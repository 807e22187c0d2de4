"""How a failure reads to a user: the stage it happened in and its cause, on one line.

Stage tasks set `STAGE` on the exceptions they raise (`train_expert[math]`); `describe`
turns any exception into the text after `error:`. Errors of this package already name the
field, file, line or domain; for others the type and the file are kept, a traceback never
(it goes to the debug log).
"""

from __future__ import annotations

STAGE = "parammix_stage"  # attribute naming the stage an exception was raised in
_OURS = ("parammix_core", "tasks", "flows")
_TRACEBACK = "Traceback (most recent call last)"
_DISK_FULL = "No space left on device"  # also inside other libraries' messages (safetensors)


class UsageError(ValueError):
    """A command line or environment a command cannot use; the message names which."""


def describe(err: BaseException, stage: str | None = None) -> str:
    """`<stage>: <cause>`; the stage from the exception, else `stage`, else none."""
    where = getattr(err, STAGE, None) or stage
    text = _cause(err)
    if _DISK_FULL in text and "store" not in text:
        text += " (the disk holding store.url or PARAMMIX_CACHE is full: free space there)"
    if _TRACEBACK in text:  # e.g. the stderr of a launched process
        text = text.split(_TRACEBACK, 1)[0].rstrip() + "\n  (a traceback: see the debug log)"
    return f"{where}: {text}" if where else text


def _cause(err: BaseException) -> str:
    if type(err).__module__.split(".")[0] in _OURS:
        return str(err).strip() or type(err).__name__
    if isinstance(err, MemoryError):
        return "out of memory (MemoryError): lower the batch sizes, the model or the corpora"
    if isinstance(err, OSError) and err.errno is None and str(err):
        return str(err).strip()  # raised with a message of ours, naming the field and path
    if isinstance(err, OSError) and err.filename is not None:
        target = f" -> {err.filename2}" if err.filename2 is not None else ""
        reason = err.strerror or type(err).__name__
        return f"{type(err).__name__}: {reason}: {err.filename}{target}"
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
