"""The merges' group scores on the real runs' scale: one straight line per group.

A merge ranks mixtures within a capability group well, but it stretches some groups more
than others: on the 2.56M-parameter default, real runs moved 0.94 per unit of the merge's
move on math and 0.32-0.51 on code, knowledge and language, so a utility summed over the
merges' groups overweights the groups the merge exaggerates and picks a mixture real training
does not prefer. Fitting real = intercept + slope * merge per group, at mixtures trained for
real (the validation's), puts every group on the scale real training moves it by before the
groups are summed. A slope is never negative: a group the merge ranks backwards gets 0 and
stops steering the choice, as does a group the merges score all alike at those mixtures (a
coarse metric such as accuracy on a few documents), which gives no line to fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from parammix_core.search.common import SearchError


@dataclass(frozen=True)
class GroupLine:
    """real ≈ intercept + slope * merge for one group, fitted over `n` mixtures.

    `slope_se` is the least-squares standard error of the slope (before clipping at 0; NaN
    when the merges scored all alike), `rho` the Spearman correlation of merge and real scores
    over the same mixtures."""

    slope: float
    intercept: float
    slope_se: float
    rho: float
    n: int

    def __call__(self, merged: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(merged, dtype=float)


def fit_real_scale(
    merged: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray]
) -> dict[str, GroupLine]:
    """Per group, least squares of the real runs' scores on the merges' at the same mixtures
    (aligned arrays). A negative slope, or merges that score all alike, gives slope 0 with the
    intercept at the real mean."""
    lines = {}
    for group, x in merged.items():
        if group not in real:
            raise SearchError(f"real-scale fit: no real scores for group {group!r}")
        x, y = np.asarray(x, dtype=float), np.asarray(real[group], dtype=float)
        if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
            raise SearchError(
                f"real-scale fit of group {group!r} needs >= 3 aligned mixtures; got merge "
                f"{x.shape}, real {y.shape}"
            )
        if np.ptp(x) == 0:
            lines[group] = GroupLine(0.0, float(y.mean()), float("nan"), float("nan"), len(x))
            continue
        slope, intercept = np.polyfit(x, y, 1)
        resid = y - (intercept + slope * x)
        se = float(np.sqrt(resid @ resid / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean()))))
        if slope < 0:
            slope, intercept = 0.0, float(y.mean())
        rho = float(spearmanr(x, y)[0]) if np.ptp(y) > 0 else float("nan")
        lines[group] = GroupLine(float(slope), float(intercept), se, rho, len(x))
    return lines


def lines_to_json(lines: Mapping[str, GroupLine]) -> dict[str, dict]:
    return {g: asdict(line) for g, line in lines.items()}


def lines_from_json(d: Mapping[str, Mapping]) -> dict[str, GroupLine]:
    return {
        g: GroupLine(
            slope=float(line["slope"]),
            intercept=float(line["intercept"]),
            slope_se=float(line["slope_se"]),
            rho=float(line["rho"]),
            n=int(line["n"]),
        )
        for g, line in d.items()
    }
