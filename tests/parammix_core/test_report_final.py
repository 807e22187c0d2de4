"""Final training's verdict: what it says the chosen mixture won, tied and lost."""

import pandas as pd

from parammix_core.report import final_verdict


def test_final_verdict_names_each_metric_once():
    table = pd.DataFrame(
        [
            {"metric": "utility", "wins vs uniform": "within noise", "wins vs natural": "no"},
            {"metric": "group.code", "wins vs uniform": "yes", "wins vs natural": "yes"},
            {"metric": "loss.sft", "wins vs uniform": "within noise", "wins vs natural": "yes"},
            {"metric": "acc.pm_arithmetic", "wins vs uniform": "no", "wins vs natural": "no"},
            {"metric": "also.gsm8k.exact_match", "wins vs uniform": "no", "wins vs natural": "no"},
        ]
    )
    assert final_verdict(table) == (
        "It beats both baselines beyond the seeds' noise on group.code; is within the noise on "
        "loss.sft (beats natural only); loses beyond it on utility (to natural). On the utility "
        "it is not distinguishable from uniform at this budget: only group.code moved beyond "
        "the noise (better)."
    )
    assert final_verdict(table.iloc[[1]]) == (
        "The chosen mixture wins on every metric against both baselines."
    )


def _verdict_table(utility: str, groups: dict[str, str]) -> pd.DataFrame:
    """A final table with the same outcome against both baselines per metric."""
    outcomes = {"utility": utility} | {f"group.{g}": w for g, w in groups.items()}
    return pd.DataFrame(
        [{"metric": m, "wins vs uniform": w, "wins vs natural": w} for m, w in outcomes.items()]
    )


def test_final_verdict_says_the_groups_traded_off():
    """The default's final training: code and language up, math and reasoning down, the
    utility within the noise. The verdict names both sides, not only "not on utility"."""
    table = _verdict_table(
        "within noise",
        {
            "code": "yes",
            "math": "no",
            "language": "yes",
            "reasoning": "no",
            "knowledge": "within noise",
        },
    )
    assert final_verdict(table) == (
        "It beats both baselines beyond the seeds' noise on group.code, group.language; is "
        "within the noise on utility, group.knowledge; loses beyond it on group.math (to "
        "uniform and natural), group.reasoning (to uniform and natural). On the utility it is "
        "not distinguishable from uniform at this budget: its groups trade off, group.code, "
        "group.language better and group.math, group.reasoning worse beyond the noise; group "
        "weights (`search.group_weights`) state which groups matter more."
    )


def test_final_verdict_when_nothing_moves_says_what_would_tell():
    table = _verdict_table("within noise", {"code": "within noise", "math": "within noise"})
    assert final_verdict(table).endswith(
        "On the utility it is not distinguishable from uniform at this budget: no group moves "
        "beyond the seeds' noise; more seeds (`final.seeds`) or a longer final budget "
        "(`final.train.steps`) would tell them apart."
    )


def test_final_verdict_of_a_lost_utility_names_the_groups_lost():
    table = _verdict_table("no", {"code": "within noise", "math": "no"})
    assert final_verdict(table) == (
        "It beats both baselines beyond the seeds' noise on nothing; is within the noise on "
        "group.code; loses beyond it on utility (to uniform and natural), group.math (to "
        "uniform and natural). On the utility it loses to uniform: only group.math moved "
        "beyond the noise (worse)."
    )


def test_final_verdict_with_one_baseline_trained():
    table = pd.DataFrame(
        [
            {"metric": "utility", "wins vs uniform": "within noise"},
            {"metric": "group.code", "wins vs uniform": "yes"},
        ]
    )
    assert final_verdict(table) == (
        "It beats uniform beyond the seeds' noise on group.code; is within the noise on "
        "utility. On the utility it is not distinguishable from uniform at this budget: only "
        "group.code moved beyond the noise (better)."
    )


def test_final_verdict_explains_the_baseline_the_utility_did_not_beat():
    table = pd.DataFrame(
        [
            {"metric": "utility", "wins vs uniform": "yes", "wins vs natural": "within noise"},
            {"metric": "group.code", "wins vs uniform": "yes", "wins vs natural": "within noise"},
        ]
    )
    assert final_verdict(table).endswith(
        "On the utility it is not distinguishable from natural at this budget: no group moves "
        "beyond the seeds' noise; more seeds (`final.seeds`) or a longer final budget "
        "(`final.train.steps`) would tell them apart."
    )
