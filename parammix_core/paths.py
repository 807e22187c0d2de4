"""Where Param-Mix keeps what is not an artifact: debug logs, data being prepared, the
unpacked stdlib snapshot. `$PARAMMIX_CACHE`, else ~/.cache/parammix."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("PARAMMIX_CACHE", Path.home() / ".cache/parammix"))
