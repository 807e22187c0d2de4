"""Markdown cells and tables, written without `tabulate`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of `df`'s columns (index dropped), without `tabulate`.

    Floats print with 3 decimals (NaN as n/a); numeric columns are right-aligned.
    """
    header = [str(c) for c in df.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def with_stderr(value: float, stderr: float | None) -> str:
    if stderr is None or not math.isfinite(stderr):
        return f"{value:.3f}"
    return f"{value:.3f} ± {stderr:.3f}"


def cell(v: object) -> str:
    if isinstance(v, float | np.floating):
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def num(v: object) -> float:
    """A stored number, None read as NaN."""
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


def scale_note(scale: str) -> str:
    """The sentence a section adds when its utility is not the raw group mean."""
    return "" if scale == "raw" else f" The utility has its groups on the search's {scale} scale."
