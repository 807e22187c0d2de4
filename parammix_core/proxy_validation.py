"""The proxy validation's table: merges and real mixed runs, ranked against each other.

`analyse` turns the validation's rows (experts, merges, real runs and reruns) into, per metric,
each proxy's and each trivial ranking's agreement with the real runs (`ranking`), the noise
ceiling, the merge's lead with its interval, and the chosen mixture's real gain. A mixture
trained twice is scored by the mean of its runs (`mean_of_runs`); the utility also gets how far
it spreads against its groups and the runs' noise (`flatness`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from parammix_core.rank_lead import trivial_lead
from parammix_core.ranking import (
    RankingError,
    alpha_entropy,
    compare,
    expert_interpolation,
    noise_ceiling,
    own_weight,
    scaled_gain,
)

PROXIES = ("merge", "corrected", "rescaled")


def _derived(rows, domains: Sequence[str], groups: Sequence[str], weights, scale) -> None:
    """Add `utility` (the search's weighted group mean, groups on the search's `scale` when
    given) and `mean_loss` columns in place."""
    from parammix_core.search.common import utility  # here: search imports the surrogate stack

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
    from parammix_core.search.common import utility
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
    over the rerun mixtures: mixtures trained once and twice then compare alike. One rerun
    put on the first run's seed is that run again, so it counts for nothing.
    """
    truth = mix[list(columns)].astype(float)
    counts = np.ones(len(mix), dtype=int)
    idx = [] if rerun is None else [i for i in rerun.index if i in mix.index]
    if len(idx) > 1:
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
    from parammix_core.search.common import resolve_weights

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
