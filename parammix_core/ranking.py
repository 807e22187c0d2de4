"""Does a proxy rank mixtures the way real mixed training does?

Every figure compares two score vectors over the same N mixtures, both oriented so that higher
is better (negate losses first): rank correlations (Spearman with average ranks for ties,
Kendall tau-b), Pearson, and the overlap of the top quarter. The trivial rankings a sceptic
tries first are scores too: a domain's own weight alpha_d for that domain's metric, the entropy
of alpha (balanced mixtures do well on average), and the alpha-weighted mean of the experts'
scores (linear interpolation between the corners); the merge's lead over the best of them
comes with an interval from resampling the mixtures (`rank_lead`). The noise ceiling says how
well two real runs of the same mixtures with different data orders agree (reliability r); a
proxy as noisy as a run can be expected to reach it, a noiseless one sqrt(r) (`proxy_spearman`),
so a deterministic merge may beat the ceiling but not that bound. `proxy_validation` puts them
together into the validation's table.

Shapes: N mixtures, K domains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from parammix_core import simplex

TOP_FRACTION = 0.25


class RankingError(ValueError):
    """Score vectors that cannot be compared (lengths differ, too few, not finite)."""


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise RankingError(f"score vectors must be 1-D of equal length, got {a.shape}, {b.shape}")
    if len(a) < 2:
        raise RankingError(f"need at least 2 mixtures to rank, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise RankingError("score vectors hold NaN or inf")
    return a, b


def _constant(*arrays: np.ndarray) -> bool:
    return any(np.ptp(a) == 0 for a in arrays)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the average ranks (ties share their mean rank); NaN if constant."""
    a, b = _pair(x, y)
    if _constant(a, b):
        return math.nan
    return float(np.corrcoef(stats.rankdata(a), stats.rankdata(b))[0, 1])


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = _pair(x, y)
    if _constant(a, b):
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b: (concordant - discordant) pairs, corrected for ties in either vector."""
    a, b = _pair(x, y)
    if _constant(a, b):
        return math.nan
    return float(stats.kendalltau(a, b, variant="b").statistic)


def top_overlap(x: Sequence[float], y: Sequence[float], fraction: float = TOP_FRACTION) -> float:
    """|top(x) & top(y)| / k with k = ceil(fraction * N): do both pick the same best mixtures?

    Ties at the cut are broken by position (the first listed wins), the same way for both.
    """
    a, b = _pair(x, y)
    if not 0 < fraction <= 1:
        raise RankingError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * len(a)))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def compare(proxy: Sequence[float], real: Sequence[float]) -> dict[str, float]:
    """Every agreement figure of `proxy` against `real` (both higher-is-better)."""
    return {
        "spearman": spearman(proxy, real),
        "pearson": pearson(proxy, real),
        "kendall": kendall(proxy, real),
        "top25": top_overlap(proxy, real),
    }


# --- trivial rankings ------------------------------------------------------------------------


def own_weight(alphas: np.ndarray, k: int) -> np.ndarray:
    """(N,) alpha_k: more of domain k, better on domain k."""
    return np.asarray(alphas, dtype=float)[:, k]


def alpha_entropy(alphas: np.ndarray) -> np.ndarray:
    """(N,) entropy of alpha: the balanced mixture wins on an average over domains."""
    return simplex.entropy(np.asarray(alphas, dtype=float))


def expert_interpolation(alphas: np.ndarray, expert_scores: Sequence[float]) -> np.ndarray:
    """(N,) sum_k alpha_k score(expert_k): the corners' scores, linearly interpolated."""
    a = np.asarray(alphas, dtype=float)
    e = np.asarray(expert_scores, dtype=float)
    if a.ndim != 2 or e.shape != (a.shape[1],):
        raise RankingError(f"alphas (N, K) and K expert scores needed, got {a.shape}, {e.shape}")
    return a @ e


# --- noise ceiling ---------------------------------------------------------------------------


def noise_ceiling(
    runs: np.ndarray,
    first: np.ndarray,
    rerun: np.ndarray,
    truth: np.ndarray | None = None,
    runs_per: np.ndarray | None = None,
) -> dict[str, float]:
    """How well two real runs of the same mixtures agree, from a few reruns.

    `runs` (N,) is the metric of every mixture's first run; `first` and `rerun` (R,) are the
    first run and the rerun (another data order) of the R rerun mixtures. The first runs share
    one data-order seed and the reruns another, and a seed moves every mixture's score alike
    (on the default, by up to the spread between mixtures): a shift that changes no ranking.
    So the run-to-run noise variance is the variance of the differences first - rerun about
    their mean (`shift`), halved; with one rerun there is no mean to take out, and it is
    the squared difference, halved: the shift stays in it, so the ceiling reads low (a true
    0.79 read 0.56 on average when the shift's sd equalled the spread's; review 38) and gets
    no interval. The reliability 1 - noise / var(runs) is the expected
    Pearson correlation of two independent sets of runs over the N mixtures, and
    (6/pi) asin(r/2) its Spearman equivalent for Gaussian scores. With R >= 3 the direct
    Spearman of first vs rerun is given too (over R mixtures only: a rough check). A proxy
    that knew every mixture's expected score would correlate with the runs at sqrt(r), not r
    (Pearson; (6/pi) asin(sqrt(r)/2) as Spearman): `proxy_spearman`, the most a proxy can be
    expected to reach against them.

    The ceiling is itself an estimate: its noise variance rests on R differences and the
    spread on N runs, so `spearman_low` / `spearman_high` bound it at CEILING_LEVEL from the F
    distribution of (noise / spread) over its true value, with R - 1 (1 for one rerun) and
    N - 1 degrees of freedom (Gaussian scores). Taking the spread as known (chi-square on the
    noise alone) covered 75-84 % at 90 % in simulation, the F bounds 90-92 %
    (`benchmarks/ceiling_power.py`). Few reruns or mixtures leave it wide: the report says so.

    With `truth` (N,), each mixture's score as the mean of its `runs_per` (N,) runs, the
    `truth_*` entries are the same ceiling for those means: their noise variance is the run's
    times mean(1 / runs_per), so with every mixture trained twice two validations' truths agree
    as two runs of twice the reliability would (Spearman-Brown). The offset that estimating
    the shift leaves on the rerun mixtures (variance noise / 2R, shared by them) is left out.
    """
    runs, first, rerun = (np.asarray(v, dtype=float) for v in (runs, first, rerun))
    if first.shape != rerun.shape or first.ndim != 1 or len(first) < 1:
        raise RankingError(f"first and rerun must be 1-D of equal length >= 1, got {first.shape}")
    r = len(first)
    diff = first - rerun
    if r > 1:
        shift, df = float(diff.mean()), r - 1
        noise_var = float(np.var(diff, ddof=1) / 2)
    else:
        shift, df = math.nan, 1
        noise_var = float(diff[0] ** 2 / 2)
    total_var = float(np.var(runs, ddof=1)) if len(runs) > 1 else math.nan
    tail, spread_df = (1 - CEILING_LEVEL) / 2, max(len(runs) - 1, 1)
    noise_high = noise_var / float(stats.f.ppf(tail, df, spread_df))  # more noise: lower ceiling
    noise_low = noise_var / float(stats.f.ppf(1 - tail, df, spread_df))
    if r == 1:
        noise_high = noise_low = math.nan
    out = {
        "reruns": float(r),
        "shift": shift,
        "noise_sd": math.sqrt(noise_var),
        "spread_sd": math.sqrt(total_var) if math.isfinite(total_var) else math.nan,
        "pearson": _reliability(noise_var, total_var),
        "spearman": _spearman_ceiling(noise_var, total_var),
        "spearman_low": _spearman_ceiling(noise_high, total_var),
        "spearman_high": _spearman_ceiling(noise_low, total_var),
        "proxy_spearman": _spearman_bound(noise_var, total_var),
        "direct_spearman": spearman(first, rerun) if r >= 3 else math.nan,
    }
    if truth is not None and runs_per is not None:
        share = float(np.mean(1.0 / np.asarray(runs_per, dtype=float)))
        truth_var = float(np.var(truth, ddof=1)) if len(truth) > 1 else math.nan
        out.update(
            truth_runs=float(np.mean(runs_per)),
            truth_noise_sd=math.sqrt(noise_var * share),
            truth_spearman=_spearman_ceiling(noise_var * share, truth_var),
            truth_spearman_low=_spearman_ceiling(noise_high * share, truth_var),
            truth_spearman_high=_spearman_ceiling(noise_low * share, truth_var),
            truth_proxy_spearman=_spearman_bound(noise_var * share, truth_var),
        )
    return out


CEILING_LEVEL = 0.9
MIN_FIT = 3  # validation mixtures besides uniform and the target for a line and its interval


def scaled_gain(proxy: np.ndarray, real: np.ndarray, target: int, gain_sd: float) -> dict:
    """The target mixture's real gain over mixture 0 (uniform) beside what the proxy predicts
    for it once the proxy's gains are put on the real runs' scale.

    A merge's gains are not a real run's (run 11: the merge said +0.050, training gave +0.031),
    so real scores are regressed on proxy gains g over uniform and the other mixtures (not the
    target), with an intercept: every measured gain shares uniform's own run noise, which a
    line through the origin cannot see (its interval held 75-86 % at 90 % when the merges'
    gains cluster and the target lies beyond them; review 38). The target's gain b g gets the
    interval b g ± t s sqrt(2 + (g^2 - 2 g mean(x)) / Sxx) at CEILING_LEVEL: its run's noise,
    uniform's, and uniform's share in the slope (s: the residual spread, which holds the real
    runs' own noise; t with n - 2 degrees of freedom for n fitted mixtures, uniform included).
    `gain_sd` is the run-to-run noise of the measured gain (sqrt(2) times one run's for one run
    of each mixture).
    """
    proxy, real = np.asarray(proxy, dtype=float), np.asarray(real, dtype=float)
    g, r = proxy - proxy[0], real - real[0]
    others = [i for i in range(1, len(g)) if i != target]
    out = {
        "proxy_gain": float(g[target]),
        "real_gain": float(r[target]),
        "real_gain_sd": gain_sd,
        "n_fit": len(others),
    }
    x, y = g[[0, *others]], r[[0, *others]]
    sxx = float(np.sum((x - x.mean()) ** 2))
    if len(others) < MIN_FIT or not sxx > 0:
        return out
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x.mean())
    residual_sd = float(np.sqrt(np.sum((y - intercept - slope * x) ** 2) / (len(x) - 2)))
    predicted = slope * g[target]
    spread = 2 + (g[target] ** 2 - 2 * g[target] * x.mean()) / sxx
    half = float(stats.t.ppf(0.5 + CEILING_LEVEL / 2, len(x) - 2)) * residual_sd * math.sqrt(spread)
    return {
        **out,
        "slope": slope,
        "slope_se": residual_sd / math.sqrt(sxx),
        "residual_sd": residual_sd,
        "predicted": float(predicted),
        "predicted_low": float(predicted - half),
        "predicted_high": float(predicted + half),
    }


def _reliability(noise_var: float, total_var: float) -> float:
    """Expected Pearson correlation of two runs: 1 - noise / spread, floored at 0."""
    if not (total_var > 0 and math.isfinite(noise_var)):
        return math.nan
    return max(0.0, 1 - noise_var / total_var)


def _spearman_ceiling(noise_var: float, total_var: float) -> float:
    """The reliability's Spearman equivalent for Gaussian scores, (6/pi) asin(r/2)."""
    pearson = _reliability(noise_var, total_var)
    return 6 / math.pi * math.asin(pearson / 2) if math.isfinite(pearson) else math.nan


def _spearman_bound(noise_var: float, total_var: float) -> float:
    """A noiseless proxy's expected Spearman against the runs, (6/pi) asin(sqrt(r)/2)."""
    pearson = _reliability(noise_var, total_var)
    return 6 / math.pi * math.asin(math.sqrt(pearson) / 2) if math.isfinite(pearson) else math.nan
