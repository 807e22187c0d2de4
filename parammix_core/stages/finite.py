"""JSON without NaN: what the validation stage and its readers store and show."""

from __future__ import annotations

import math
from typing import Any


def finite_json(obj: Any) -> Any:
    """NaN/inf as None: canonical JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj
