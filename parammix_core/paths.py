"""Where Param-Mix keeps what is not an artifact: debug logs, data being prepared, the
unpacked stdlib snapshot. `$PARAMMIX_CACHE`, else (unset or empty) ~/.cache/parammix."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("PARAMMIX_CACHE") or Path.home() / ".cache/parammix")  # "": not "."
