"""The report document: `report.md` and its three figures, written into one folder.

`write_report` links the images by relative path, so the folder can be copied to the store,
attached as a Prefect artifact or opened in any markdown viewer. The text says what was chosen
and how far to trust it: the chosen mixture against uniform and natural proportions, the
surrogates' cross-validated fit next to a linear baseline, and the best mixtures actually
measured (with their standard errors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from parammix_core import plots
from parammix_core.report.markdown import markdown_table, with_stderr
from parammix_core.search import Choice, utility
from parammix_core.search.choice import REWEIGHT
from parammix_core.surrogate import SurrogateSet

TOP_MEASURED = 10
LANDSCAPE_PNG = "landscape.png"
FIT_PNG = "surrogate_fit.png"
CHOICE_PNG = "choice.png"


class ReportError(ValueError):
    """Inputs a report cannot be written from (missing columns, rows that do not match)."""


def write_report(
    out_dir: Path,
    experiment_name: str,
    domains: list[str],
    groups: list[str],
    rows: pd.DataFrame,
    surrogates: SurrogateSet,
    choice: Choice,
    extra: dict[str, str] | None = None,
    lead: list[str] | None = None,
    replay: float = 0.0,
) -> Path:
    """Write report.md and its three figures into `out_dir`; return the report.md path.

    `replay`: the experts' `training.replay`, which decides the merge weights of a mixture.

    `lead`: sentences shown in bold first, above the merges' verdict (what the validation's
    real runs expect real training of the choice to gain), before any table.

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
    predicted = {"chosen": choice.predicted}
    predicted.update({name: b["predicted"] for name, b in choice.baselines.items()})
    plots.plot_choice(choice.alpha, predicted, out_dir / CHOICE_PNG)

    weights = ", ".join(f"{g} {w:g}" for g, w in choice.weights.items())
    sections = [
        f"# Param-Mix report: {experiment_name}",
        f"{len(rows)} merged mixtures evaluated over {len(domains)} domains "
        f"({', '.join(domains)}); utility = weighted mean of the capability groups "
        f"({weights}; groups {_scale_text(choice.normalise)}). {_merge_text(replay)}",
        *(f"**{line}**" for line in lead or []),
        *([f"**{choice.verdict}**"] if choice.verdict else []),
        "## Chosen mixture",
        "Mean of the top "
        f"{len(choice.top_k)} of the candidate mixtures by predicted utility, beside the "
        "baselines; every score here is a surrogate prediction.",
        markdown_table(_choice_table(choice)),
        *_real_scale_section(choice),
        f"![chosen mixture vs baselines]({CHOICE_PNG})",
        *_reweighted_section(choice),
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


def _merge_text(replay: float) -> str:
    if not replay:
        return "Each expert trained on its domain alone; a mixture α is merged at weights α."
    return (
        f"Each expert trained on its domain with a replay of {replay:g} of every domain; a "
        f"mixture α is merged at the weights (α − {replay:g}/K) / (1 − {replay:g}), whose "
        "experts' data add up to α."
    )


def _scale_text(normalise: str) -> str:
    return {
        "raw": "as measured",
        "zscore": "as z-scores over the evaluated mixtures",
        "rank": "as percentile ranks among the evaluated mixtures",
        "noise": "in units of their paired standard error against uniform",
    }.get(normalise, normalise)


def _real_scale_section(choice: Choice) -> list[str]:
    """The lines that put the merges' group scores on the real runs' scale, when used."""
    if not choice.real_scale:
        return []
    rows = [
        [g, line["slope"], line["slope_se"], line["intercept"], line["rho"], int(line["n"])]
        for g, line in choice.real_scale.items()
    ]
    columns = ["group", "slope", "slope se", "intercept", "Spearman merge vs real", "mixtures"]
    return [
        "Predictions are on the real runs' scale (`search.utility.calibrate`): per group, "
        "real = intercept + slope × merge, fitted at the validation's mixtures (each trained "
        "for real, reruns averaged). A slope below 1 is a group the merge exaggerates; a slope "
        "of 0 (the merge ranked the group backwards, or scored it all alike: slope se NaN) "
        "leaves the group out of the choice.",
        markdown_table(pd.DataFrame(rows, columns=columns)),
    ]


def _reweighted_section(choice: Choice) -> list[str]:
    """The mixtures chosen were one group to count REWEIGHT times as much, beside the choice."""
    if not choice.reweighted:
        return []
    rows = [
        [f"{g} x{REWEIGHT:g}"]
        + [p["alpha"][d] for d in choice.domains]
        + [choice.moved(g), p["predicted_utility"] - choice.predicted_utility]
        + [p["predicted"][h] - choice.predicted[h] for h in choice.groups]
        for g, p in choice.reweighted.items()
    ]
    columns = [
        "group counted more",
        *(f"α {d}" for d in choice.domains),
        "moved",
        "Δ utility",
        *(f"Δ {h}" for h in choice.groups),
    ]
    return [
        "## What the group weights decide",
        f"The mixture chosen the same way were one group to count {REWEIGHT:g} times as much "
        "(`search.group_weights`), against the chosen one: the share of the data that changes "
        "domain (moved), the predicted utility at the configured weights (Δ utility, what the "
        "move gives up) and each group's predicted change. A large move at a small cost means "
        "the utility is flat where the choice lies: the weights, not the data, decide it. The "
        "choice is a mean of the best candidates, so on a flat surface a reweighting may even "
        "move it sideways, the group counted more not gaining: the data do not pin it down.",
        markdown_table(pd.DataFrame(rows, columns=columns)),
    ]


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
            with_stderr(scores[g][i], None if se is None else float(se.iloc[i])) for i in best
        ]
    return table
