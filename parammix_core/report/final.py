"""The final mid-training in words: the chosen mixture's model against the baselines."""

from __future__ import annotations

import pandas as pd

from parammix_core.report.markdown import markdown_table, scale_note

BASELINES = ("uniform", "natural")  # what the final training trains beside the choice
UNTESTED = "untested (one seed)"  # a difference with no seed spread to judge it by
WITHIN = "within noise"  # the paired interval of the per-seed differences holds zero
NOT_JUDGED = "not judged"  # `also` metrics: lm-eval does not say which way each is better


def is_beside(key: str) -> bool:
    """A score reported beside the ranked ones, outside the utility: `acc.<task>` (accuracy of
    a task ranked by another metric) and `also.<task>.<metric>`."""
    return key.startswith(("acc.", "also.")) and not key.endswith(".stderr")


def final_verdict(table: pd.DataFrame) -> str:
    """Where the chosen mixture's final model beats the baselines beyond the seeds' noise (the
    paired interval of `stages.final.compare_runs`), where it is within it and where it loses,
    then why the utility was not won when it was not.
    Rows reported beside (`acc.<task>`, `also.<task>.<metric>`) stay in the table only: the
    verdict reads what the search optimises and the held-out losses."""
    baselines = [b for b in BASELINES if f"wins vs {b}" in table]  # those final training ran
    if (table[[f"wins vs {b}" for b in baselines]] == UNTESTED).all(axis=None):
        return (
            "One seed per mixture (final.seeds: 1) gives no spread to judge the differences "
            "by: they are in the table, untested; final.seeds: 2 or more judges them."
        )
    wins, within, losses = [], [], []
    for _, row in table.iterrows():
        metric = str(row["metric"])
        if is_beside(metric):
            continue
        beaten = [b for b in baselines if row[f"wins vs {b}"] == "yes"]
        lost_to = [b for b in baselines if row[f"wins vs {b}"] == "no"]
        if lost_to:
            losses.append(f"{metric} (to {' and '.join(lost_to)})")
        elif len(beaten) == len(baselines):
            wins.append(metric)
        else:
            within.append(metric + (f" (beats {beaten[0]} only)" if beaten else ""))
    if not within and not losses:
        return "The chosen mixture wins on every metric against both baselines."
    both = "both baselines" if len(baselines) > 1 else baselines[0]
    parts = [f"It beats {both} beyond the seeds' noise on {', '.join(wins) or 'nothing'}"]
    if within:
        parts.append(f"is within the noise on {', '.join(within)}")
    if losses:
        parts.append(f"loses beyond it on {', '.join(losses)}")
    text = "; ".join(parts) + "."
    if "utility" in set(table["metric"]) and "utility" not in wins:
        text += " " + _why_not_utility(table, baselines)
    return text


def _why_not_utility(table: pd.DataFrame, baselines: list[str]) -> str:
    """Why the utility did not beat a baseline beyond the noise: the groups traded off
    against it, or moved one way too little, or none moved at all."""
    rows = table.set_index("metric")
    b = next(b for b in baselines if rows.at["utility", f"wins vs {b}"] != "yes")
    head = (
        f"On the utility it loses to {b}"
        if rows.at["utility", f"wins vs {b}"] == "no"
        else f"On the utility it is not distinguishable from {b} at this budget"
    )
    groups = rows[rows.index.str.startswith("group.")][f"wins vs {b}"]
    gained = ", ".join(groups.index[groups == "yes"])
    lost = ", ".join(groups.index[groups == "no"])
    if gained and lost:
        return (
            f"{head}: its groups trade off, {gained} better and {lost} worse beyond the noise; "
            "group weights (`search.group_weights`) state which groups matter more."
        )
    if gained or lost:
        way = "better" if gained else "worse"
        return f"{head}: only {gained or lost} moved beyond the noise ({way})."
    return (
        f"{head}: no group moves beyond the seeds' noise; more seeds (`final.seeds`) or a longer "
        "final budget (`final.train.steps`) would tell them apart."
    )


def final_section(table: pd.DataFrame, summary: dict) -> str:
    """Markdown: the chosen mixture's final model against uniform and natural, per group."""
    alphas = "; ".join(
        f"{name}: " + ", ".join(f"{a:.3f}" for a in alpha)
        for name, alpha in summary["alphas"].items()
    )
    verdict = final_verdict(table)
    on = scale_note(summary.get("utility_scale", "raw"))
    seeds = summary["seeds"]
    weak = (
        " With 2 seeds the interval has one degree of freedom (6.3 standard errors each side "
        "at 90 %), so only large, consistent differences are called; `final.seeds: 3` or more "
        "judges finer ones."
        if seeds == 2
        else ""
    )
    return "\n\n".join(
        [
            f"The base trained on each mixture for the final budget, {seeds} data-order "
            f"seed(s) each, shared by the mixtures (mixtures {alphas}). Means over seeds, sd = "
            "seed spread; gain is chosen − baseline, positive = better (losses negated), low / "
            "high its 90 % t interval over the seeds' paired differences; a win or loss counts "
            f"only when that interval excludes zero.{weak} `acc.<task>` rows: each task's "
            "accuracy, beside the continuous score it is ranked by; `also.<task>.<metric>` rows: "
            "the metrics asked for beside it, chosen − baseline as lm-eval reports them (neither "
            f"part of the verdict).{on}",
            markdown_table(table),
            verdict,
            f"Final model (`transformers` checkpoint with tokenizer): `{summary['model_uri']}`",
        ]
    )
