"""What a run prints at its end: the choice, then the verdicts of what else ran."""

from __future__ import annotations

import numpy as np
import pandas as pd

from parammix_core.report.final import final_verdict
from parammix_core.report.validation import real_training_outlook, validation_verdict
from parammix_core.search import Choice
from parammix_core.search.choice import REWEIGHT


def summary_lines(choice: Choice) -> list[str]:
    """Short terminal lines: how sure the choice is, the chosen mixture, then per group chosen
    vs uniform and the group's share of the margin."""
    uniform = choice.baselines.get("uniform")
    lines = [choice.verdict] if choice.verdict else []
    lines.append("chosen mixture: " + "  ".join(f"{d}={w:.3f}" for d, w in choice.alpha.items()))
    vs = f"  (uniform {uniform['predicted_utility']:.3f})" if uniform else ""
    scale = "" if choice.normalise == "raw" else f", groups on the {choice.normalise} scale"
    lines.append(f"predicted utility{scale}: {choice.predicted_utility:.3f}{vs}")
    if choice.real_scale:
        lines.append(real_scale_line(choice.real_scale))
    width = max(len(g) for g in choice.groups)
    for g in choice.groups:
        vs = f"  uniform {uniform['predicted'][g]:.3f}" if uniform else ""
        share = choice.contributions.get(g)
        margin = f"  margin share {share:+.4f}" if share is not None else ""
        lines.append(f"  {g:<{width}}  chosen {choice.predicted[g]:.3f}{vs}{margin}")
    if choice.reweighted:
        lines.append(reweighted_line(choice))
    return lines


STILL = 0.005  # a move the summary's whole-percent figures would print as 0 %


def reweighted_line(choice: Choice) -> str:
    """How much the choice hinges on the group weights: the largest move when one group
    counts REWEIGHT times as much, and what it costs at the configured weights."""
    moves = {g: choice.moved(g) for g in choice.reweighted}
    if max(moves.values()) < STILL:
        return (
            f"group weights: counting any one group {REWEIGHT:g}x moves under {STILL:.1%} of "
            "the mixture; the choice does not hinge on them"
        )
    most = max(moves, key=moves.get)
    cost = max(
        choice.predicted_utility - p["predicted_utility"] for p in choice.reweighted.values()
    )
    mixture = " ".join(f"{d}={w:.3f}" for d, w in choice.reweighted[most]["alpha"].items())
    return (
        f"group weights: one group counted {REWEIGHT:g}x moves {min(moves.values()):.0%}-"
        f"{max(moves.values()):.0%} of the mixture (most: {most}, {mixture}) and costs at most "
        f'{cost:.4f} of the predicted utility at the configured weights (report: "What the '
        'group weights decide")'
    )


def real_scale_line(lines: dict[str, dict]) -> str:
    """How far real runs move per unit of the merge's move, per group (the calibration)."""
    slopes = ", ".join(
        f"{g} {line['slope']:.2f} ± {line['slope_se']:.2f}"
        if np.isfinite(line["slope_se"])
        else f"{g} 0 (the merges scored it all alike)"
        for g, line in lines.items()
    )
    n = max(int(line["n"]) for line in lines.values())
    return (
        f"groups on the real runs' scale (slope of real on merge scores over {n} validation "
        f"mixtures): {slopes}"
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
        if outlook := real_training_outlook(validation):
            lines.insert(0, outlook)  # real runs' evidence before the merges' verdict
        lines.append("validation: " + validation_verdict(validation, emphasis=""))
    if final is not None:
        lines.append("final training: " + final_verdict(final))
    lines.append(f"report: {report}")
    return lines
