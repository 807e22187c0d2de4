"""How a failure reads after `error:`: the stage, then the cause; never a traceback."""

import errno
import os

import pytest

from parammix_core.data import DataError
from parammix_core.failure import STAGE, describe
from parammix_core.stages.launch import LaunchError
from parammix_core.store import StoreError
from parammix_core.store.transfer import explained


def test_our_errors_keep_their_message_and_get_their_stage():
    err = DataError("domain 'b': c.jsonl.gz: damaged compressed data")
    assert describe(err) == "domain 'b': c.jsonl.gz: damaged compressed data"
    setattr(err, STAGE, "prepare_domains")
    assert describe(err) == "prepare_domains: domain 'b': c.jsonl.gz: damaged compressed data"
    assert describe(DataError("x"), stage="param-mix flow") == "param-mix flow: x"


def test_other_errors_keep_their_type_and_file():
    long_name = OSError(errno.ENAMETOOLONG, "File name too long", "/s/expert/" + "d" * 300)
    assert describe(long_name) == f"OSError: File name too long: /s/expert/{'d' * 300}"
    assert describe(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe(KeyError("alpha")) == "KeyError: 'alpha'"
    assert describe(AssertionError()) == "AssertionError"
    assert describe(MemoryError()).startswith("out of memory (MemoryError)")
    ours = FileNotFoundError("model.checkpoint: no such checkpoint directory '/c'")
    assert describe(ours) == "model.checkpoint: no such checkpoint directory '/c'"


def test_a_traceback_inside_a_message_stays_out_of_the_terminal():
    err = LaunchError(
        "train_expert: the 2 processes under torchrun exited with code 1\n"
        "  rank 1: DataError: bad\nlast lines of stderr:\nTraceback (most recent call last):\n"
        '  File "x.py", line 3, in <module>\nDataError: bad'
    )
    text = describe(err)
    assert "rank 1: DataError: bad" in text
    assert "Traceback" not in text and 'File "x.py"' not in text
    assert text.endswith("(a traceback: see the debug log)")


def test_a_full_disk_says_which_disks_to_free():
    """A release check's full store: `SafetensorError: ... No space left on device` named
    neither the store nor the cache."""
    full = type("SafetensorError", (Exception,), {})(
        "Error while serializing: No space left on device (os error 28)"
    )
    setattr(full, STAGE, "train_expert[math]")
    assert describe(full) == (
        "train_expert[math]: SafetensorError: Error while serializing: No space left on device "
        "(os error 28) (the disk holding store.url or PARAMMIX_CACHE is full: free space there)"
    )


def test_a_read_only_or_full_store_is_a_store_error_naming_it():
    for code, says in ((errno.EROFS, "give a writable store"), (errno.ENOSPC, "free space there")):
        with pytest.raises(StoreError) as err, explained("/s", "delete"):
            raise OSError(code, os.strerror(code), "state.json")
        assert (
            str(err.value)
            == f"store /s: cannot delete, {os.strerror(code).lower()} on state.json; {says}"
        )
