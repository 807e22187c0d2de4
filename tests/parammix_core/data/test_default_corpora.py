"""The embedded default's corpora are the same bytes on every machine with the same Python.

Generated domains (math, sft) depend on the seed alone. Code and web come from what Python
ships (the stdlib's source, docstrings, reference topics and notes), so they are pinned for the
Python this project is tested on and skipped on another; nothing else the machine has
installed may change them (tests/parammix_core/data/test_sources.py checks what web reads).
"""

import hashlib
import sys

import pytest

from parammix_core.config import Experiment
from parammix_core.data.prepare import _source

PINNED_PYTHON = (3, 11, 7)
SHA256 = {
    "math": "f9d60a6d5b0532e49c07c176e4ce6d23075d21a5043dfb94279afe2e80bdd8b4",
    "sft": "6854e3567c88dab76e2ea894cfdd77fdb89c1394c282c4f4d0be5c3d07d4f11b",
    "code": "a3645cc6205c8ac0fab983e3aad95d4ee857c44afb887113fb31037e1770242c",
    "web": "dae00c80f4b49afcc238c3a56134317e59f726d923a13048d96d0db5fa08cd4e",
}
FROM_PYTHON = {"code", "web"}


@pytest.mark.parametrize("name", list(SHA256))
def test_default_corpus_bytes_are_pinned(name):
    if name in FROM_PYTHON and sys.version_info[:3] != PINNED_PYTHON:
        pytest.skip(f"{name} is pinned for Python {'.'.join(map(str, PINNED_PYTHON))}")
    exp = Experiment()  # the embedded default (configs/default.yaml)
    (spec,) = [d for d in exp.data.domains if d.name == name]
    docs, _ = _source(spec, exp.data, exp.seed, None)
    assert hashlib.sha256("\0".join(docs).encode()).hexdigest() == SHA256[name]
