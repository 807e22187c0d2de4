"""Does a proxy rank mixtures the way real mixed training does?

Every figure compares two score vectors over the same N mixtures, both oriented so that higher
is better (negate losses first): rank correlations (Spearman with average ranks for ties,
Kendall tau-b), Pearson, and the overlap of the top quarter. The trivial rankings a sceptic
tries first are scores too: a domain's own weight alpha_d for that domain's metric, the entropy
of alpha (balanced mixtures do well on average), and the alpha-weighted mean of the experts'
scores (linear interpolation between the corners); the merge's lead over the best of them
comes with an interval from resampling the mixtures (`rank_lead`). The noise ceiling says how
well two real runs of the same mixtures with different data orders agree: no proxy can be
expected to beat it.

Shapes: N mixtures, K domains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from parammix_core import simplex
from parammix_core.rank_lead import trivial_lead

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
    the squared difference, halved. The reliability 1 - noise / var(runs) is the expected
    Pearson correlation of two independent sets of runs over the N mixtures, and
    (6/pi) asin(r/2) its Spearman equivalent for Gaussian scores. With R >= 3 the direct
    Spearman of first vs rerun is given too (over R mixtures only: a rough check).

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
    out = {
        "reruns": float(r),
        "shift": shift,
        "noise_sd": math.sqrt(noise_var),
        "spread_sd": math.sqrt(total_var) if math.isfinite(total_var) else math.nan,
        "pearson": _reliability(noise_var, total_var),
        "spearman": _spearman_ceiling(noise_var, total_var),
        "spearman_low": _spearman_ceiling(noise_high, total_var),
        "spearman_high": _spearman_ceiling(noise_low, total_var),
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
        )
    return out


CEILING_LEVEL = 0.9


def scaled_gain(proxy: np.ndarray, real: np.ndarray, target: int, gain_sd: float) -> dict:
    """The target mixture's real gain over mixture 0 (uniform) beside what the proxy predicts
    for it once the proxy's gains are put on the real runs' scale.

    A merge's gains are not a real run's (run 11: the merge said +0.050, training gave +0.031),
    so the slope b of real gains on proxy gains (through the origin: mixture 0 is 0 in both) is
    fitted on the other mixtures, and the target's prediction b g gets the interval
    b g ± t sqrt(s^2 + g^2 se_b^2) at CEILING_LEVEL (s: the residual spread, which holds the
    real runs' own noise; t with n - 1 degrees of freedom). `gain_sd` is the run-to-run noise
    of the measured gain (sqrt(2) times one run's for one run of each mixture).
    """
    proxy, real = np.asarray(proxy, dtype=float), np.asarray(real, dtype=float)
    g, r = proxy - proxy[0], real - real[0]
    others = [i for i in range(1, len(g)) if i != target]
    go, ro = g[others], r[others]
    out = {
        "proxy_gain": float(g[target]),
        "real_gain": float(r[target]),
        "real_gain_sd": gain_sd,
        "n_fit": len(others),
    }
    if len(others) < 3 or not np.dot(go, go) > 0:
        return out
    slope = float(np.dot(go, ro) / np.dot(go, go))
    residual_sd = float(np.sqrt(np.sum((ro - slope * go) ** 2) / (len(others) - 1)))
    slope_se = residual_sd / math.sqrt(float(np.dot(go, go)))
    predicted = slope * g[target]
    half = float(stats.t.ppf(0.5 + CEILING_LEVEL / 2, len(others) - 1)) * math.sqrt(
        residual_sd**2 + (g[target] * slope_se) ** 2
    )
    return {
        **out,
        "slope": slope,
        "slope_se": slope_se,
        "residual_sd": residual_sd,
        "predicted": float(predicted),
        "predicted_low": float(predicted - half),
        "predicted_high": float(predicted + half),
    }


def _reliability(noise_var: float, total_var: float) -> float:
    """Expected Pearson correlation of two runs: 1 - noise / spread, floored at 0."""
    if not total_var > 0:
        return math.nan
    return max(0.0, 1 - noise_var / total_var)


def _spearman_ceiling(noise_var: float, total_var: float) -> float:
    """The reliability's Spearman equivalent for Gaussian scores, (6/pi) asin(r/2)."""
    pearson = _reliability(noise_var, total_var)
    return 6 / math.pi * math.asin(pearson / 2) if math.isfinite(pearson) else math.nan


# --- a validation table ----------------------------------------------------------------------

PROXIES = ("merge", "corrected", "rescaled")


def _derived(rows, domains: Sequence[str], groups: Sequence[str], weights, scale) -> None:
    """Add `utility` (the search's weighted group mean, groups on the search's `scale` when
    given) and `mean_loss` columns in place."""
    from parammix_core.search import utility  # here: search imports the surrogate stack

    rows["mean_loss"] = rows[[f"loss.{d}" for d in domains]].mean(axis=1)
    if groups:
        scores = {g: rows[f"group.{g}"].to_numpy(dtype=float) for g in groups}
        if scale is not None:
            scores = {g: scale(g, v) for g, v in scores.items()}
        rows["utility"] = utility(scores, weights)


def real_scale_utility(
    merged: dict[str, np.ndarray],
    real: dict[str, np.ndarray],
    weights=None,
    scale: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray | None:
    """Each mixture's utility from its merge's group scores mapped onto the real runs' scale
    (`search.utility.calibrate`) by lines fitted on the other mixtures: leave-one-out, so
    the ranking it gives is one the calibrated choice could have known. A group whose line is
    flat (slope 0: ranked backwards or scored all alike) is the same constant for every
    mixture, as it is for the choice; its leave-one-out mean would rank the mixtures backwards.
    None when the mapped utility does not vary (no group has a line)."""
    from parammix_core.search import utility
    from parammix_core.search.real_scale import fit_real_scale

    n = len(next(iter(merged.values())))
    out = np.empty(n)
    for i in range(n):
        rest = np.arange(n) != i
        lines = fit_real_scale(
            {g: v[rest] for g, v in merged.items()}, {g: v[rest] for g, v in real.items()}
        )
        mapped = {
            g: lines[g](v[i : i + 1]) if lines[g].slope > 0 else np.mean(real[g], keepdims=True)
            for g, v in merged.items()
        }
        if scale is not None:
            mapped = {g: scale(g, v) for g, v in mapped.items()}
        out[i] = utility(mapped, weights)[0]
    return None if np.ptp(out) == 0 else out


def mean_of_runs(mix, rerun, columns: Sequence[str]):
    """Each mixture's score as the mean of its runs, and how many runs that is (per mixture).

    A rerun has another data order, which moves every mixture's score alike (`noise_ceiling`'s
    shift), so it is first put on the first runs' seed by the mean difference first - rerun
    over the rerun mixtures: mixtures trained once and twice then compare alike.
    """
    truth = mix[list(columns)].astype(float)
    counts = np.ones(len(mix), dtype=int)
    idx = [] if rerun is None else [i for i in rerun.index if i in mix.index]
    if idx:
        again = rerun.loc[idx, list(columns)].astype(float)
        shift = (truth.loc[idx] - again).mean()
        truth.loc[idx] = (truth.loc[idx] + again + shift) / 2
        counts[mix.index.get_indexer(idx)] = 2
    return truth, counts


def flatness(
    groups: dict[str, np.ndarray],
    utility_scores: np.ndarray,
    weights=None,
    scale: Callable[[str, np.ndarray], np.ndarray] | None = None,
    noise_sd: float = math.nan,
) -> dict[str, float]:
    """How far the utility spreads over the mixtures, against the noise of a mixture's score
    (`noise_sd`: `separation` is their ratio) and against its groups' spread (`kept`).

    For a weighted mean, sd(sum_g w_g s_g) <= sum_g w_g sd(s_g) (weights summing to 1), equal
    when the groups rise and fall together. A share `kept` near 0 says that what a mixture
    gains on one group it loses on others: the utility is flat over the mixtures however well
    each group separates them, and more runs measure that flatness rather than lift it.
    Groups are taken on the utility's scale (`scale`).
    """
    from parammix_core.search.choice import resolve_weights

    if scale is not None:
        groups = {g: scale(g, v) for g, v in groups.items()}
    w = resolve_weights(list(groups), weights)
    spread = sum(w[g] * float(np.std(v, ddof=1)) for g, v in groups.items()) / sum(w.values())
    sd = float(np.std(utility_scores, ddof=1))
    return {
        "utility_sd": sd,
        "groups_sd": spread,
        "kept": sd / spread if spread > 0 else math.nan,
        "noise_sd": noise_sd,
        "separation": sd / noise_sd if noise_sd > 0 else math.nan,
    }


def metric_list(domains: Sequence[str], tasks) -> list[tuple[str, float, str | None]]:
    """(column, sign that makes higher better, the domain whose weight is the trivial rank)."""
    groups = list(dict.fromkeys(t.group for t in tasks))
    out: list[tuple[str, float, str | None]] = []
    if groups:
        out.append(("utility", 1.0, None))
    out.append(("mean_loss", -1.0, None))
    out += [(f"group.{g}", 1.0, g if g in domains else None) for g in groups]
    out += [(f"task.{t.name}", 1.0, t.group if t.group in domains else None) for t in tasks]
    out += [(f"loss.{d}", -1.0, d) for d in domains]
    return out


def analyse(
    rows,
    domains: Sequence[str],
    tasks,
    weights=None,
    chosen: int | None = None,
    scale: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> dict[str, dict]:
    """Per metric: each proxy and each trivial ranking against the real runs, and the ceiling.

    `rows` has a `kind` column ("expert", "merge", "corrected", "mix", "rerun"), `mixture`
    (index), `alpha.<domain>` and the metric columns. Only non-vertex mixtures are ranked, each
    by the mean of its real runs (`mean_of_runs`: a rerun mixture's two, half the noise).
    With `chosen` (a mixture index; mixture 0 is uniform), each metric also gets the chosen
    mixture's real gain over uniform against the merge's, scaled (`scaled_gain`). `scale`
    (`search.normaliser`) puts the groups on the scale the search's utility used.
    """
    rows = rows.copy()
    groups = list(dict.fromkeys(t.group for t in tasks))
    _derived(rows, domains, groups, weights, scale)
    alpha_cols = [f"alpha.{d}" for d in domains]
    by_kind = {kind: part.set_index("mixture").sort_index() for kind, part in rows.groupby("kind")}
    if "mix" not in by_kind or "expert" not in by_kind:
        raise RankingError("validation rows need 'mix' and 'expert' rows")
    mix = by_kind["mix"]
    keep = [i for i in mix.index if mix.loc[i, alpha_cols].max() < 1 - 1e-9]
    if len(keep) < 3:
        raise RankingError(f"need at least 3 non-vertex mixtures to rank, got {len(keep)}")
    alphas = mix.loc[keep, alpha_cols].to_numpy(dtype=float)  # (N, K)
    rerun = by_kind.get("rerun")
    metrics = metric_list(domains, tasks)
    truth, runs_per = mean_of_runs(mix.loc[keep], rerun, [m[0] for m in metrics])
    out: dict[str, dict] = {}
    for column, sign, own in metrics:
        real = sign * truth[column].to_numpy(dtype=float)
        entry: dict[str, Any] = {
            "n": len(keep),
            "runs_per_mixture": float(runs_per.mean()),
            "higher_is_better": sign > 0,
            "proxy": {},
        }
        for kind in PROXIES:
            if kind in by_kind:
                proxy = by_kind[kind].loc[keep, column].to_numpy(dtype=float)
                stats_ = compare(sign * proxy, real)
                stats_["gap"] = float(np.mean(proxy - truth[column].to_numpy(float)))
                entry["proxy"][kind] = stats_
        if column == "utility" and "merge" in by_kind and len(keep) > 3:
            mapped = real_scale_utility(
                {g: by_kind["merge"].loc[keep, f"group.{g}"].to_numpy(float) for g in groups},
                {g: truth[f"group.{g}"].to_numpy(float) for g in groups},
                weights,
                scale,
            )
            if mapped is not None:
                gap = float(np.mean(mapped - real))
                entry["proxy"]["real_scale"] = {**compare(mapped, real), "gap": gap}
        experts = by_kind["expert"][column].to_numpy(dtype=float)
        baselines = {"expert_interpolation": sign * expert_interpolation(alphas, experts)}
        if own is not None:
            baselines["own_weight"] = own_weight(alphas, list(domains).index(own))
        if column in ("utility", "mean_loss"):
            baselines["entropy"] = alpha_entropy(alphas)
        entry["baselines"] = {
            name: compare(b, real) if np.ptp(b) > 0 else {"spearman": math.nan}
            for name, b in baselines.items()
        }
        if rerun is not None and len(rerun):
            idx = [i for i in rerun.index if i in keep]
            entry["ceiling"] = noise_ceiling(
                sign * mix.loc[keep, column].to_numpy(dtype=float),
                sign * mix.loc[idx, column].to_numpy(dtype=float),
                sign * rerun.loc[idx, column].to_numpy(dtype=float),
                truth=real,
                runs_per=runs_per,
            )
        if column == "utility":
            entry["flatness"] = flatness(
                {g: truth[f"group.{g}"].to_numpy(float) for g in groups},
                real,
                weights,
                scale,
                entry.get("ceiling", {}).get("truth_noise_sd", math.nan),
            )
        best = max(
            (s["spearman"] for s in entry["baselines"].values() if math.isfinite(s["spearman"])),
            default=math.nan,
        )
        entry["best_trivial_spearman"] = best
        defined = {n: b for n, b in baselines.items() if np.ptp(b) > 0}
        if "merge" in by_kind and defined:
            merge = sign * by_kind["merge"].loc[keep, column].to_numpy(dtype=float)
            entry["merge_lead"] = trivial_lead(merge, defined, real)
        if chosen is not None and chosen in keep and keep[0] == 0 and "merge" in by_kind:
            target = keep.index(chosen)
            noise_sd = entry.get("ceiling", {}).get("noise_sd", math.nan)
            entry["chosen"] = scaled_gain(
                sign * by_kind["merge"].loc[keep, column].to_numpy(dtype=float),
                real,
                target,
                noise_sd * math.sqrt(1 / runs_per[target] + 1 / runs_per[0]),
            )
            entry["chosen"]["runs"] = [int(runs_per[target]), int(runs_per[0])]
        out[column] = entry
    return out
