"""The final mid-training in words: the chosen mixture's model against the baselines."""

from __future__ import annotations

import pandas as pd

from parammix_core.report.markdown import markdown_table, scale_note


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


def final_section(table: pd.DataFrame, summary: dict) -> str:
    """Markdown: the chosen mixture's final model against uniform and natural, per group."""
    alphas = "; ".join(
        f"{name}: " + ", ".join(f"{a:.3f}" for a in alpha)
        for name, alpha in summary["alphas"].items()
    )
    verdict = final_verdict(table)
    on = scale_note(summary.get("utility_scale", "raw"))
    return "\n\n".join(
        [
            f"The base trained on each mixture for the final budget, {summary['seeds']} data-order "
            f"seed(s) each (mixtures {alphas}). Means over seeds, sd = seed spread; gain is "
            "chosen − baseline, positive = better (losses negated); a win counts only beyond "
            "the combined seed spread. `acc.<task>` rows: each task's accuracy, beside the "
            "continuous score it is ranked by; `also.<task>.<metric>` rows: the metrics asked "
            f"for beside it (neither part of the verdict).{on}",
            markdown_table(table),
            verdict,
            f"Final model (`transformers` checkpoint with tokenizer): `{summary['model_uri']}`",
        ]
    )
