"""final_training's comparison of the chosen mixture with the baselines, on hand-made runs."""

import numpy as np
import pytest

from parammix_core.report import final_verdict
from parammix_core.search.common import scale_from_spec, scale_spec
from parammix_core.stages import final


def test_compare_runs_gains_and_verdicts():
    def m(u, loss):
        return {"group.g": u, "loss.a": loss}

    metrics = {
        "chosen": [m(0.60, 1.0), m(0.62, 1.2)],
        "uniform": [m(0.50, 1.1), m(0.52, 1.1)],
        "natural": [m(0.61, 0.5), m(0.61, 0.7)],
    }
    table = final.compare_runs(metrics, ["a"], ["g"]).set_index("metric")
    assert table.loc["utility", "gain vs uniform"] == pytest.approx(0.10)
    assert table.loc["utility", "wins vs uniform"] == "yes"
    assert table.loc["utility", "wins vs natural"] == "within noise"
    assert table.loc["utility", ["low vs uniform", "high vs uniform"]].tolist() == pytest.approx(
        [0.10, 0.10]
    )  # the same gain on both seeds: no noise in the paired differences
    assert table.loc["loss.a", "gain vs natural"] == pytest.approx(-0.5)  # losses: lower wins
    assert table.loc["loss.a", "wins vs natural"] == "no"
    assert table.loc["utility", "chosen sd"] == pytest.approx(np.std([0.60, 0.62], ddof=1))
    # on the search's scale: g in units of 0.02 about 0.5, h (wider, losing) in units of 10
    for runs in metrics.values():
        for run, h in zip(runs, (3.0, 5.0), strict=True):
            run["group.h"] = h if runs is metrics["uniform"] else h - 1
    spec = scale_spec("noise", {"g": np.array([0.4, 0.6]), "h": np.array([0.0, 10.0])})
    spec["paired_se"] = {"g": 0.02, "h": 10.0}
    raw = final.compare_runs(metrics, ["a"], ["g", "h"]).set_index("metric")
    assert raw.loc["utility", "gain vs uniform"] == pytest.approx((0.10 - 1) / 2)
    scaled = final.compare_runs(metrics, ["a"], ["g", "h"], None, scale_from_spec(spec))
    gain = scaled.set_index("metric").loc["utility", "gain vs uniform"]
    assert gain == pytest.approx((0.10 / 0.02 - 1 / 10) / 2)


def test_compare_runs_pairs_the_runs_by_seed():
    """Review 38: chosen and baselines share their data-order seeds, so a win is judged on the
    per-seed differences' 90 % t interval, not against the runs' combined sd (which called 15 %
    of no-difference comparisons wins and 15 % losses with two seeds)."""
    metrics = {  # a seed shift of 0.1 moves every mixture; chosen is 0.02 ahead on both seeds
        "chosen": [{"group.g": 0.60, "loss.a": 1.0}, {"group.g": 0.70, "loss.a": 1.0}],
        "uniform": [{"group.g": 0.58, "loss.a": 1.0}, {"group.g": 0.68, "loss.a": 1.0}],
        "natural": [{"group.g": 0.58, "loss.a": 1.0}, {"group.g": 0.56, "loss.a": 1.0}],
    }
    rows = final.compare_runs(metrics, ["a"], ["g"]).set_index("metric").loc["group.g"]
    assert rows["wins vs uniform"] == "yes"  # before: within the combined sd of 0.1
    # against natural the differences are 0.02 and 0.14: mean 0.08, se 0.06, t(1) = 6.314
    half = 6.313752 * 0.06
    assert [rows["low vs natural"], rows["high vs natural"]] == pytest.approx(
        [0.08 - half, 0.08 + half], abs=1e-6
    )
    assert rows["wins vs natural"] == "within noise"  # before: "yes" (0.08 > sd 0.072)


def test_compare_runs_with_one_seed_judges_nothing_and_reads_only_losses_as_lower_wins():
    """One seed has no spread: nothing is called a win (before: any gain > 0 was 'beyond the
    seed spread'). A group named glossary is scored higher-is-better, not as a loss."""
    metrics = {
        "chosen": [{"group.glossary": 0.6, "loss.a": 1.0}],
        "uniform": [{"group.glossary": 0.5, "loss.a": 1.2}],
        "natural": [{"group.glossary": 0.7, "loss.a": 0.9}],
    }
    table = final.compare_runs(metrics, ["a"], ["glossary"])
    rows = table.set_index("metric")
    assert rows.loc["group.glossary", "gain vs uniform"] == pytest.approx(0.1)
    assert rows.loc["loss.a", "gain vs uniform"] == pytest.approx(0.2)
    assert rows.loc["mean_loss", "gain vs natural"] == pytest.approx(-0.1)
    wins = rows[["wins vs uniform", "wins vs natural"]].to_numpy()
    assert set(wins.ravel()) == {"untested (one seed)"}
    assert final_verdict(table) == (
        "One seed per mixture (final.seeds: 1) gives no spread to judge the differences by: "
        "they are in the table, untested; final.seeds: 2 or more judges them."
    )


def test_compare_runs_shows_accuracy_where_every_run_reports_it():
    def m(u, acc):
        also = {
            "also.t.exact_match,strict-match": acc / 2,
            "also.t.exact_match,strict-match.stderr": 0.1,
        }
        return {"group.g": u, "loss.a": 1.0, "acc.t": acc, "acc.t.stderr": 0.1, **also}

    metrics = {"chosen": [m(0.6, 0.40), m(0.6, 0.50)], "uniform": [m(0.5, 0.25), m(0.5, 0.35)]}
    table = final.compare_runs(metrics, ["a"], ["g"]).set_index("metric")
    assert list(table.index) == [
        "utility",
        "group.g",
        "mean_loss",
        "loss.a",
        "acc.t",
        "also.t.exact_match,strict-match",
    ]
    assert table.loc["acc.t", "gain vs uniform"] == pytest.approx(0.15)  # higher is better
    assert table.loc["also.t.exact_match,strict-match", "gain vs uniform"] == pytest.approx(0.075)
    # lm-eval does not say which way every `also` metric is better (an error rate under `also`
    # read as a win when it rose: review 38), so those rows are shown, not judged
    assert table.loc["acc.t", "wins vs uniform"] == "yes"
    assert table.loc["also.t.exact_match,strict-match", "wins vs uniform"] == "not judged"
    metrics["uniform"][1].pop("acc.t")  # one run without it: no row
    assert "acc.t" not in final.compare_runs(metrics, ["a"], ["g"])["metric"].tolist()
