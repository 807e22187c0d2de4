"""Is a proxy's lead over the trivial rankings more than the draw of mixtures it was measured on?

The validation ranks a dozen mixtures, so "the merge beats every trivial ranking" by a few
hundredths of Spearman can be which mixtures were drawn. Resampling the N mixtures with
replacement (each keeps its real, proxy and trivial scores, the runs' own noise included) and
taking, in every replicate, the proxy's Spearman minus the best trivial ranking's gives the
lead's percentile interval; the best trivial ranking is picked again in each replicate, so
picking it is part of the uncertainty.

Shapes: N mixtures, B replicates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats

LEAD_REPLICATES = 2000
LEAD_LEVEL = 0.9


def row_spearman(scores: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Spearman (average ranks for ties) of each row of `scores` against the same row of
    `real`, both (B, N); (B,), NaN where either row is constant."""
    a = stats.rankdata(scores, axis=1)
    b = stats.rankdata(real, axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    out = np.full(len(a), math.nan)
    ok = den > 0
    out[ok] = (a * b).sum(axis=1)[ok] / den[ok]
    return out


def trivial_lead(
    proxy: np.ndarray,
    trivials: Mapping[str, np.ndarray],
    real: np.ndarray,
    level: float = LEAD_LEVEL,
    replicates: int = LEAD_REPLICATES,
    seed: int = 0,
) -> dict[str, float]:
    """The proxy's Spearman against `real` minus the best of `trivials`' (all (N,), higher is
    better), and its `level` percentile interval over `replicates` resamplings of the N
    mixtures (replicates where a ranking is undefined, a constant resample, are left out);
    `rho`, `rho_low`, `rho_high`: the proxy's own Spearman and its interval from the same
    resamples, how far a dozen mixtures pin it down."""
    p, r = np.asarray(proxy, dtype=float), np.asarray(real, dtype=float)
    ts = [np.asarray(t, dtype=float) for t in trivials.values()]
    if not ts:
        raise ValueError("trivial_lead needs at least one trivial ranking")

    def rhos(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (B, N) -> (B,), (B,)
        best = np.fmax.reduce([row_spearman(t[index], r[index]) for t in ts])
        own = row_spearman(p[index], r[index])
        return own, own - best

    n = len(r)
    rho, point = (float(v[0]) for v in rhos(np.arange(n)[None, :]))
    own, lead = rhos(np.random.default_rng(seed).integers(0, n, size=(replicates, n)))
    kept = np.isfinite(lead)
    tail = 100 * (1 - level) / 2
    nan = (math.nan,) * 2
    low, high = np.percentile(lead[kept], [tail, 100 - tail]) if kept.any() else nan
    rho_low, rho_high = np.percentile(own[kept], [tail, 100 - tail]) if kept.any() else nan
    return {
        "lead": point,
        "low": float(low),
        "high": float(high),
        "rho": rho,
        "rho_low": float(rho_low),
        "rho_high": float(rho_high),
        "level": level,
        "replicates": int(kept.sum()),
    }
