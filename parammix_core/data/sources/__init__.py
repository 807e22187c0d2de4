"""Built-in domains, made on this machine with no downloads.

The embedded default must run anywhere, offline, so its four corpora come from what every
Python installation has:

- math (`arithmetic`): generated arithmetic and algebra questions with worked answers, in the
  "Question: ...\\nAnswer: ... The answer is N." form the built-in math benchmark asks in;
- code (`python_code`): the Python standard library's own source, one document per top-level
  function or class (or per chunk of module-level code);
- sft (`instructions`): generated instruction/response pairs
  ("### Instruction:\\n...\\n### Response:\\n...");
- web (`prose`): English prose of the standard library: stdlib docstrings (read with `ast`, never
  imported), the language reference's topics (`pydoc_data`) and the stdlib's own notes and
  licence (idlelib's NEWS and README, LICENSE.txt, ...).

Code and web read the standard library shipped with Param-Mix (`snapshot`: CPython 3.11.7's,
whatever Python runs), not the interpreter's. Generated domains produce as much as asked;
code and web return what the snapshot holds, up to the target; only an empty domain is an
error. Everything is a function of (seed, target_chars) alone: files are listed in sorted
order and sampled with the seed, never in directory-listing order.

`vocabulary` holds the word lists and the template draw shared by math and sft; `chunks`
cuts long texts into documents for code and web.
"""

from __future__ import annotations

from collections.abc import Callable

from parammix_core.data.errors import DataError
from parammix_core.data.sources.arithmetic import math_texts
from parammix_core.data.sources.chunks import CHUNK_CHARS, _chunks
from parammix_core.data.sources.instructions import sft_texts
from parammix_core.data.sources.prose import (
    _read_text_file,
    local_text_files,
    looks_english,
    module_docstrings,
    pydoc_topics,
    web_texts,
)
from parammix_core.data.sources.python_code import (
    code_texts,
    split_python,
    stdlib_dir,
    stdlib_files,
)

__all__ = [
    "CHUNK_CHARS",
    "_chunks",
    "_read_text_file",
    "builtin_texts",
    "code_texts",
    "local_text_files",
    "looks_english",
    "math_texts",
    "module_docstrings",
    "pydoc_topics",
    "sft_texts",
    "split_python",
    "stdlib_dir",
    "stdlib_files",
    "web_texts",
]


def builtin_texts(name: str, seed: int, target_chars: int) -> list[str]:
    """Documents of one built-in domain, about `target_chars` characters in total.

    Generated domains (math, sft) always reach the target; local ones (code, web) stop at
    what the machine has. Raises DataError for an unknown name or a domain that ends empty.
    """
    makers: dict[str, Callable[[int, int], list[str]]] = {
        "math": math_texts,
        "code": code_texts,
        "sft": sft_texts,
        "web": web_texts,
    }
    if name not in makers:
        raise DataError(f"unknown built-in domain {name!r}; available: {sorted(makers)}")
    if target_chars <= 0:
        raise DataError(f"built-in domain {name!r}: target_chars must be > 0, got {target_chars}")
    docs = makers[name](seed, target_chars)
    if not docs:
        raise DataError(f"built-in domain {name!r} found no text on this machine")
    return docs
