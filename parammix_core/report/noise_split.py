"""Where the real runs' noise comes from, in words: the evaluation documents or a shift of
the whole run (`noise.run_noise`, `validation_table.utility_run_noise`), and whether more
documents would narrow it."""

from __future__ import annotations

import math

import pandas as pd

from parammix_core.report.markdown import markdown_table, num

# twice the documents must lower a noise sd by at least this share for "more documents" to be
# advice (on the default: the utility's by 2-9 %, the knowledge task's by ~1 %; RESULTS.md)
DOUBLING_HELPS = 0.1


def task_noise_section(task_noise: dict[str, dict], utility_noise: dict | None = None) -> str:
    """Markdown: per task (and for the utility), how much of the real runs' noise the
    evaluation documents explain."""
    rows = [
        {"score": task, "documents": str(int(n["docs"])), **_noise_columns(n)}
        for task, n in task_noise.items()
    ]
    if utility_noise:
        rows.append({"score": "utility", "documents": "all", **_noise_columns(utility_noise)})
    intro = (
        "Where the real runs' noise comes from (the mixtures trained twice): one run's noise "
        "sd on each task's score, what it would be if each of its documents moved "
        "independently of the others, and the noise expected with twice the documents. A noise "
        "far above its documents' is a shift of the whole run (its data order) that more "
        "documents do not average away."
    )
    table = markdown_table(pd.DataFrame(rows))
    return "\n\n".join([intro, table, documents_advice(task_noise, utility_noise)]).strip()


def _noise_columns(n: dict) -> dict[str, str]:
    return {
        "run-to-run noise sd": f"{num(n['noise_sd']):.4f}",
        "from its documents alone": f"{num(n['documents_sd']):.4f}",
        "with twice the documents": f"{num(n['doubled_sd']):.4f}",
    }


def documents_advice(task_noise: dict[str, dict], utility_noise: dict | None = None) -> str:
    """Whether more evaluation documents would narrow the real runs' noise: on the utility
    when it was measured, else per task; empty when nothing was."""
    if utility_noise and _cut(utility_noise) is not None:
        before, after, cut = (
            num(utility_noise["noise_sd"]),
            num(utility_noise["doubled_sd"]),
            _cut(utility_noise),
        )
        text = (
            "Twice the evaluation documents on every task would lower the utility's "
            f"run-to-run noise sd from {before:.4f} to {after:.4f} (-{100 * cut:.0f} %)"
        )
        if cut >= DOUBLING_HELPS:
            return text + " (`evaluation.builtin_docs_per_task`, `evaluation.tasks[].docs`)."
        return text + (
            ": the rest is a shift of the whole run (its data order) that more documents do "
            "not average away."
        )
    cut = {t: c for t, n in task_noise.items() if (c := _cut(n)) is not None}
    if not cut:
        return ""
    helps = [t for t, c in cut.items() if c >= DOUBLING_HELPS]
    if not helps:
        return (
            "More evaluation documents would not narrow the real runs' noise: twice the "
            f"documents lower it by {100 * min(cut.values()):.0f}-{100 * max(cut.values()):.0f} "
            "% per task, the rest being a shift of the whole run."
        )
    listed = ", ".join(f"{t} (-{100 * cut[t]:.0f} %)" for t in helps)
    others = (
        "; on the other tasks the noise is a shift of the whole run" if cut.keys() - helps else ""
    )
    return (
        f"Twice the documents would lower the real runs' noise on {listed} "
        "(`evaluation.tasks[].docs`, or `evaluation.builtin_docs_per_task` for the built-in "
        f"tasks){others}."
    )


def _cut(n: dict) -> float | None:
    """The share of a noise sd that twice the documents remove; None where not measured."""
    noise, doubled = num(n.get("noise_sd")), num(n.get("doubled_sd"))
    return 1 - doubled / noise if noise > 0 and math.isfinite(doubled) else None
