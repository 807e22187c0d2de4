"""The experiment report: one markdown file with its figures beside it.

`write_report` writes `report.md` and three PNGs into one folder, images linked by relative
path, so the folder can be copied to the store, attached as a Prefect artifact or opened in any
markdown viewer. The text says what was chosen and how far to trust it: the chosen mixture
against uniform and natural proportions, the surrogates' cross-validated fit next to a linear
baseline, and the best mixtures actually measured (with their standard errors).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from parammix_core import plots
from parammix_core.search import Choice, utility
from parammix_core.surrogate import SurrogateSet

TOP_MEASURED = 10
LANDSCAPE_PNG = "landscape.png"
FIT_PNG = "surrogate_fit.png"
CHOICE_PNG = "choice.png"


class ReportError(ValueError):
    """Inputs a report cannot be written from (missing columns, rows that do not match)."""


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of `df`'s columns (index dropped), without `tabulate`.

    Floats print with 3 decimals (NaN as n/a); numeric columns are right-aligned.
    """
    header = [str(c) for c in df.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def summary_lines(choice: Choice) -> list[str]:
    """Short terminal lines: how sure the choice is, the chosen mixture, then per group chosen
    vs uniform and the group's share of the margin."""
    uniform = choice.baselines.get("uniform")
    lines = [choice.verdict] if choice.verdict else []
    lines.append("chosen mixture: " + "  ".join(f"{d}={w:.3f}" for d, w in choice.alpha.items()))
    vs = f"  (uniform {uniform['predicted_utility']:.3f})" if uniform else ""
    scale = "" if choice.normalise == "raw" else f", groups on the {choice.normalise} scale"
    lines.append(f"predicted utility{scale}: {choice.predicted_utility:.3f}{vs}")
    width = max(len(g) for g in choice.groups)
    for g in choice.groups:
        vs = f"  uniform {uniform['predicted'][g]:.3f}" if uniform else ""
        share = choice.contributions.get(g)
        margin = f"  margin share {share:+.4f}" if share is not None else ""
        lines.append(f"  {g:<{width}}  chosen {choice.predicted[g]:.3f}{vs}{margin}")
    return lines


def write_report(
    out_dir: Path,
    experiment_name: str,
    domains: list[str],
    groups: list[str],
    rows: pd.DataFrame,
    surrogates: SurrogateSet,
    choice: Choice,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write report.md and its three figures into `out_dir`; return the report.md path.

    `rows` must be the evaluation rows the surrogates were fitted on, in the same order (the
    out-of-fold predictions are matched to them by position).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    alpha_cols = [f"alpha.{d}" for d in domains]
    missing = [c for c in alpha_cols + [f"group.{g}" for g in groups] if c not in rows.columns]
    missing += [t for t in surrogates.targets if t not in rows.columns]
    if missing:
        raise ReportError(f"evaluation rows lack column(s) {sorted(set(missing))}")
    if len(rows) != len(surrogates.oof[surrogates.targets[0]]):
        raise ReportError(
            f"{len(rows)} evaluation rows but the surrogates were fitted on "
            f"{len(surrogates.oof[surrogates.targets[0]])}"
        )

    plots.plot_landscape(rows, domains, groups, out_dir / LANDSCAPE_PNG, chosen=choice.alpha)
    plots.plot_surrogate_fit(
        {t: rows[t].to_numpy(dtype=float) for t in surrogates.targets},
        surrogates.oof,
        surrogates.cv,
        out_dir / FIT_PNG,
    )
    plots.plot_choice(choice, out_dir / CHOICE_PNG)

    weights = ", ".join(f"{g} {w:g}" for g, w in choice.weights.items())
    sections = [
        f"# Param-Mix report: {experiment_name}",
        f"{len(rows)} merged mixtures evaluated over {len(domains)} domains "
        f"({', '.join(domains)}); utility = weighted mean of the capability groups "
        f"({weights}; groups {_scale_text(choice.normalise)}).",
        *([f"**{choice.verdict}**"] if choice.verdict else []),
        "## Chosen mixture",
        "Mean of the top "
        f"{len(choice.top_k)} of the candidate mixtures by predicted utility, beside the "
        "baselines; every score here is a surrogate prediction.",
        markdown_table(_choice_table(choice)),
        f"![chosen mixture vs baselines]({CHOICE_PNG})",
        "## Surrogate fit",
        "Out-of-fold cross-validation on the evaluated mixtures: LightGBM against a linear "
        "model on the same weights.",
        markdown_table(_cv_table(surrogates)),
        f"![out-of-fold predictions]({FIT_PNG})",
        "## Best measured mixtures",
        f"The top {min(TOP_MEASURED, len(rows))} evaluated merges by measured utility "
        "(score ± standard error).",
        markdown_table(_measured_table(rows, domains, groups, choice.weights)),
        f"![capability landscapes]({LANDSCAPE_PNG})",
    ]
    for key, value in (extra or {}).items():
        sections += [f"## {key}", value]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path


def _scale_text(normalise: str) -> str:
    return {
        "raw": "as measured",
        "zscore": "as z-scores over the evaluated mixtures",
        "rank": "as percentile ranks among the evaluated mixtures",
        "noise": "in units of their paired standard error against uniform",
    }.get(normalise, normalise)


def _choice_table(choice: Choice) -> pd.DataFrame:
    chosen = {
        "alpha": choice.alpha,
        "predicted": choice.predicted,
        "predicted_utility": choice.predicted_utility,
    }
    points = {"chosen": chosen, **choice.baselines}
    rows = [[f"α {d}"] + [p["alpha"][d] for p in points.values()] for d in choice.domains]
    rows += [
        [f"{g} (predicted)"] + [p["predicted"][g] for p in points.values()] for g in choice.groups
    ]
    rows.append(["utility (predicted)"] + [p["predicted_utility"] for p in points.values()])
    return pd.DataFrame(rows, columns=["", *points])


def _cv_table(surrogates: SurrogateSet) -> pd.DataFrame:
    columns = {
        "R² LightGBM": "r2",
        "Spearman LightGBM": "spearman",
        "R² linear": "r2_linear",
        "Spearman linear": "spearman_linear",
    }
    table = pd.DataFrame({"target": surrogates.targets})
    for title, key in columns.items():
        table[title] = [surrogates.cv[t][key] for t in surrogates.targets]
    return table


def _measured_table(
    rows: pd.DataFrame, domains: list[str], groups: list[str], weights: dict[str, float]
) -> pd.DataFrame:
    scores = {g: rows[f"group.{g}"].to_numpy(dtype=float) for g in groups}
    u = utility(scores, weights)  # (N,)
    best = np.argsort(-u, kind="stable")[:TOP_MEASURED]
    table = pd.DataFrame({"rank": np.arange(1, len(best) + 1)})
    for d in domains:
        table[f"α {d}"] = rows[f"alpha.{d}"].to_numpy(dtype=float)[best]
    table["utility"] = u[best]
    for g in groups:
        se = rows.get(f"group.{g}.stderr")
        table[g] = [
            _with_stderr(scores[g][i], None if se is None else float(se.iloc[i])) for i in best
        ]
    return table


def _with_stderr(value: float, stderr: float | None) -> str:
    if stderr is None or not math.isfinite(stderr):
        return f"{value:.3f}"
    return f"{value:.3f} ± {stderr:.3f}"


def _cell(v: object) -> str:
    if isinstance(v, float | np.floating):
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


# --- proxy validation and final mid-training ----------------------------------------------


def _num(v: object) -> float:
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


def validation_table(analysis: dict[str, dict]) -> pd.DataFrame:
    """One row per ranked metric: the proxies' and trivial rankings' Spearman, the ceiling."""
    rows = []
    for metric, a in analysis.items():
        proxy = a["proxy"]
        merge = proxy.get("merge", {})
        row = {
            "metric": metric,
            "merge ρ": _num(merge.get("spearman")),
            "merge r": _num(merge.get("pearson")),
            "merge τ": _num(merge.get("kendall")),
            "top-25 %": _num(merge.get("top25")),
            "gap merge − mix": _num(merge.get("gap")),
        }
        for kind in ("corrected", "rescaled"):
            if kind in proxy:
                row[f"{kind} ρ"] = _num(proxy[kind].get("spearman"))
        for name, b in a["baselines"].items():
            row[f"{name} ρ"] = _num(b.get("spearman"))
        ceiling = a.get("ceiling", {})
        row["ceiling ρ"] = _num(ceiling.get("spearman"))
        row["ceiling 90 %"] = _interval(ceiling)
        best = _num(a.get("best_trivial_spearman"))
        rho = row["merge ρ"]
        row["merge beats trivial"] = (
            "n/a"
            if not (math.isfinite(rho) and math.isfinite(best))
            else "yes"
            if rho > best
            else "no"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def validation_section(info: dict) -> str:
    """Markdown: how the merge ranks mixtures against real mixed runs, said plainly."""
    analysis = info["analysis"]
    table = validation_table(analysis)
    n = next(iter(analysis.values()))["n"]
    lines = [
        f"{n} non-vertex mixtures trained for real from the base with the experts' steps, "
        "batch and hyper-parameters, scored exactly like the merges. ρ: Spearman, r: Pearson, "
        "τ: Kendall of the proxy against the real runs (higher-is-better orientation); top-25 %: "
        "share of the real top quarter the proxy also puts there; gap: mean merge − mix in the "
        "metric's units. Trivial rankings: own_weight = α of the metric's domain, entropy = "
        "entropy of α, expert_interpolation = α-weighted mean of the experts' scores. Ceiling: "
        "expected Spearman between two real runs with different data orders (from the reruns).",
        markdown_table(table),
    ]
    head = _validation_head(analysis)
    a = analysis[head]
    rho = _num(a["proxy"]["merge"]["spearman"])
    lines.append(validation_verdict(info))
    fit = info.get("step_scale_fit") or {}
    if fit:
        corrected = _num(a["proxy"].get("corrected", {}).get("spearman"))
        lines.append(
            "Second-order correction: the measured merge-vs-mix parameter gaps projected on the "
            f"probe's predicted direction give an effective step scale {fit['scale']:.3g} "
            f"({fit['scale_over_theory']:.3g} × the plain-gradient-descent η²T(T−1)/2 = "
            f"{fit['theory_scale']:.3g}); mean cosine of measured and predicted gap "
            f"{fit['cosine_mean']:.2f}, share of the gap explained {fit['explained']:.2f}, "
            f"Spearman of predicted vs measured ||Δ|| {_num(fit['norm_spearman']):.2f}. The merge "
            f"corrected with this scale (fitted leave-one-out) ranks the {head.replace('_', ' ')} "
            f"at ρ = {corrected:.2f} against {rho:.2f} for the plain merge."
        )
    lines.append("![proxy vs real](validation.png)")
    return "\n\n".join(lines)


def _validation_head(analysis: dict) -> str:
    return "utility" if "utility" in analysis else "mean_loss"


def validation_verdict(info: dict, emphasis: str = "**") -> str:
    """One plain paragraph: the merge's rank correlation against the real runs, the best
    trivial ranking and the noise ceiling, and whether the merge beats them."""
    analysis = info["analysis"]
    head = _validation_head(analysis)
    a = analysis[head]
    rho = _num(a["proxy"]["merge"]["spearman"])
    best = _num(a["best_trivial_spearman"])
    ceiling_info = a.get("ceiling", {})
    ceiling = _num(ceiling_info.get("spearman"))
    verdict = (
        f"On the {head.replace('_', ' ')}, the merge ranks mixtures at ρ = {rho:.2f} against "
        f"the real runs; the best trivial ranking reaches {best:.2f} and two real runs agree "
        f"at about {ceiling:.2f}. "
    )
    if not (rho > best):
        verdict += f"{emphasis}The merge is no better than a trivial ranking here.{emphasis} "
    if math.isfinite(ceiling) and rho < ceiling - 0.05:
        verdict += "It stays more than 0.05 below the noise ceiling. "
    low, high = _num(ceiling_info.get("spearman_low")), _num(ceiling_info.get("spearman_high"))
    if math.isfinite(low) and math.isfinite(high) and high - low > CEILING_WIDE:
        reruns = int(_num(ceiling_info.get("reruns")))
        verdict += (
            f"The ceiling itself is uncertain: from {reruns} rerun(s) it lies in "
            f"{_interval(ceiling_info)} (90 %); more reruns (`validation.reruns`) narrow it. "
        )
    if "chosen" in a:
        verdict += _chosen_check(a["chosen"])
    return verdict.strip()


def _chosen_check(c: dict) -> str:
    """The chosen mixture's real gain over uniform against the merge's, on one scale."""
    noise = _num(c.get("real_gain_sd"))
    text = (
        f"Trained for real at the experts' budget, the chosen mixture gains "
        f"{c['real_gain']:+.4f} over uniform"
        + (f" (one run each, ± {noise:.4f} from run-to-run noise)" if math.isfinite(noise) else "")
        + f" where its merge gained {c['proxy_gain']:+.4f}"
    )
    if "predicted" not in c:
        return text + "."
    inside = c["predicted_low"] <= c["real_gain"] <= c["predicted_high"]
    return text + (
        f"; scaled by the slope of real on merge gains over the other {c['n_fit']} mixtures "
        f"({c['slope']:.2f}), the merge predicted {c['predicted']:+.4f} "
        f"[{c['predicted_low']:+.4f}, {c['predicted_high']:+.4f}] (90 %), and the real run "
        f"falls {'inside' if inside else 'outside'} it."
    )


CEILING_WIDE = 0.2  # a ceiling interval wider than this is said to be uncertain


def _interval(ceiling: dict) -> str:
    low, high = _num(ceiling.get("spearman_low")), _num(ceiling.get("spearman_high"))
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"{low:.2f}–{high:.2f}"


def is_beside(key: str) -> bool:
    """A score reported beside the ranked ones, outside the utility: `acc.<task>` (accuracy of
    a task ranked by another metric) and `also.<task>.<metric>`."""
    return key.startswith(("acc.", "also.")) and not key.endswith(".stderr")


def final_verdict(table: pd.DataFrame) -> str:
    """Where the chosen mixture's final model beats the baselines beyond the seeds, and where
    not: one line, each metric named once. Rows reported beside (`acc.<task>`,
    `also.<task>.<metric>`) stay in the table only: the verdict reads what the search
    optimises and the held-out losses."""
    wins, rest = [], []
    for _, row in table.iterrows():
        if is_beside(str(row["metric"])):
            continue
        beaten = [b for b in ("uniform", "natural") if row.get(f"wins vs {b}") == "yes"]
        if len(beaten) == 2:
            wins.append(row["metric"])
        else:
            rest.append(row["metric"] + (f" (beats {beaten[0]} only)" if beaten else ""))
    if not rest:
        return "The chosen mixture wins on every metric against both baselines."
    if not wins:
        return f"It beats the baselines beyond the seed spread on none of: {', '.join(rest)}."
    return (
        f"It beats both baselines beyond the seed spread on {', '.join(wins)}; "
        f"not on {', '.join(rest)}."
    )


def run_summary(
    choice: Choice,
    report: str,
    validation: dict | None = None,
    final: pd.DataFrame | None = None,
) -> list[str]:
    """What every run ends with, cached or not (terminal, log and the run's summary
    artifact): the chosen mixture against uniform, the validation's and the final
    training's verdicts when they ran, and where the report is."""
    lines = summary_lines(choice)
    if validation is not None:
        lines.append("validation: " + validation_verdict(validation, emphasis=""))
    if final is not None:
        lines.append("final training: " + final_verdict(final))
    lines.append(f"report: {report}")
    return lines


def final_section(table: pd.DataFrame, summary: dict) -> str:
    """Markdown: the chosen mixture's final model against uniform and natural, per group."""
    alphas = "; ".join(
        f"{name}: " + ", ".join(f"{a:.3f}" for a in alpha)
        for name, alpha in summary["alphas"].items()
    )
    verdict = final_verdict(table)
    return "\n\n".join(
        [
            f"The base trained on each mixture for the final budget, {summary['seeds']} data-order "
            f"seed(s) each (mixtures {alphas}). Means over seeds, sd = seed spread; gain is "
            "chosen − baseline, positive = better (losses negated); a win counts only beyond "
            "the combined seed spread. `acc.<task>` rows: each task's accuracy, beside the "
            "continuous score it is ranked by; `also.<task>.<metric>` rows: the metrics asked "
            "for beside it (neither part of the verdict).",
            markdown_table(table),
            verdict,
            f"Final model (`transformers` checkpoint with tokenizer): `{summary['model_uri']}`",
        ]
    )
