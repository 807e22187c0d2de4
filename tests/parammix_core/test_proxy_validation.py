"""The validation's table from hand-made rows: orientation, trivial rankings, the utility on the
search's scale, the real-scale proxy, the chosen mixture's gain, means of runs, flatness."""

import math

import numpy as np
import pandas as pd
import pytest

from parammix_core import proxy_validation, ranking, report
from parammix_core.config import EvalTask
from parammix_core.search import normaliser


def test_the_mean_of_a_mixtures_runs_puts_reruns_on_the_first_runs_seed():
    mix = pd.DataFrame({"m": [1.0, 2.0, 3.0, 4.0]}, index=[0, 1, 2, 3])
    # mixtures 1 and 2 trained again on a seed that lowers every score by 0.5, plus noise
    rerun = pd.DataFrame({"m": [1.5 - 0.1, 2.5 + 0.1]}, index=[1, 2])
    truth, runs = proxy_validation.mean_of_runs(mix, rerun, ["m"])
    shift = np.mean([2.0 - 1.4, 3.0 - 2.6])  # 0.5: the rerun seed's offset
    expected = [1.0, (2.0 + 1.4 + shift) / 2, (3.0 + 2.6 + shift) / 2, 4.0]
    np.testing.assert_allclose(truth["m"].to_numpy(), expected)
    assert runs.tolist() == [1, 2, 2, 1]
    # no reruns: the first runs, once each
    alone, once = proxy_validation.mean_of_runs(mix, None, ["m"])
    np.testing.assert_allclose(alone["m"].to_numpy(), mix["m"].to_numpy())
    assert once.tolist() == [1, 1, 1, 1]
    # one rerun moved onto the first run's seed is that run again: it counts for nothing
    single, counts = proxy_validation.mean_of_runs(mix, rerun.loc[[1]], ["m"])
    np.testing.assert_allclose(single["m"].to_numpy(), mix["m"].to_numpy())
    assert counts.tolist() == [1, 1, 1, 1]  # before: [1, 2, 1, 1]


def test_flatness_is_the_share_of_the_groups_spread_the_utility_keeps():
    g, h = np.array([1.0, 2.0, 3.0]), np.array([1.5, 1.0, 0.5])  # sd 1 and 0.5, opposed
    out = proxy_validation.flatness({"g": g, "h": h}, (g + h) / 2, noise_sd=0.25)
    assert out["utility_sd"] == pytest.approx(0.25)  # (g + h) / 2 = 1.25, 1.5, 1.75
    assert out["groups_sd"] == pytest.approx(0.75)
    assert out["kept"] == pytest.approx(1 / 3) and out["separation"] == pytest.approx(1.0)
    weighted = proxy_validation.flatness({"g": g, "h": h}, (3 * g + h) / 4, {"g": 3.0, "h": 1.0})
    assert weighted["groups_sd"] == pytest.approx(0.875)
    assert weighted["kept"] == pytest.approx(0.625 / 0.875)
    assert math.isnan(weighted["separation"])  # no noise measured
    together = proxy_validation.flatness({"g": g, "h": 2 * g}, 1.5 * g)
    assert together["kept"] == pytest.approx(1.0)
    # on the utility's scale: a scale that stretches h to g's spread makes them cancel exactly
    scaled = proxy_validation.flatness(
        {"g": g, "h": h}, np.full(3, 1.0), scale=lambda n, v: v * (2 if n == "h" else 1)
    )
    assert scaled["groups_sd"] == pytest.approx(1.0) and scaled["kept"] == 0.0


def test_analyse_gives_the_utilitys_flatness_against_the_noise_of_its_means():
    rows = _rows()
    rows["group.g"] = rows["task.t"] = -rows["loss.a"]
    rows["group.h"] = rows["task.u"] = rows["loss.a"] * 0.5
    tasks = [EvalTask(name="t", group="g"), EvalTask(name="u", group="h")]
    out = proxy_validation.analyse(rows, ["a", "b"], tasks)["utility"]
    f, c = out["flatness"], out["ceiling"]
    assert f["kept"] == pytest.approx(1 / 3)  # h is -g / 2: the mean keeps a third
    assert f["noise_sd"] == pytest.approx(c["truth_noise_sd"])
    assert f["separation"] == pytest.approx(f["utility_sd"] / c["truth_noise_sd"])


def _rows(domains=("a", "b")) -> pd.DataFrame:
    """Experts, 4 mixtures; the merge ranks loss.a perfectly and loss.b backwards."""
    mixes = [[0.2, 0.8], [0.4, 0.6], [0.6, 0.4], [0.8, 0.2]]
    rows = []
    for j, e in enumerate(np.eye(2)):
        rows.append(
            {
                "kind": "expert",
                "mixture": j,
                "alpha.a": e[0],
                "alpha.b": e[1],
                "loss.a": 3 - j,
                "loss.b": 2 + j,
            }
        )
    for i, (a, b) in enumerate(mixes):
        real = {"loss.a": 3 - a, "loss.b": 3 - b}
        rows.append({"kind": "mix", "mixture": i, "alpha.a": a, "alpha.b": b, **real})
        rows.append(
            {
                "kind": "merge",
                "mixture": i,
                "alpha.a": a,
                "alpha.b": b,
                "loss.a": 3.1 - a,
                "loss.b": 3 + b,
            }
        )
    rows.append(
        {
            "kind": "rerun",
            "mixture": 1,
            "alpha.a": 0.4,
            "alpha.b": 0.6,
            "loss.a": 2.61,
            "loss.b": 2.41,
        }
    )
    return pd.DataFrame(rows)


def test_analyse_orients_losses_and_reports_baselines():
    out = proxy_validation.analyse(_rows(), ["a", "b"], [])
    assert set(out) == {"mean_loss", "loss.a", "loss.b"}
    a, b = out["loss.a"], out["loss.b"]
    assert a["proxy"]["merge"]["spearman"] == pytest.approx(1.0)
    assert a["proxy"]["merge"]["gap"] == pytest.approx(0.1)
    assert b["proxy"]["merge"]["spearman"] == pytest.approx(-1.0)
    assert a["baselines"]["own_weight"]["spearman"] == pytest.approx(1.0)  # more a, lower loss
    assert a["best_trivial_spearman"] == pytest.approx(1.0)
    assert "ceiling" in a and a["ceiling"]["reruns"] == 1
    assert "entropy" in out["mean_loss"]["baselines"]


def test_analyse_gives_the_merges_lead_over_the_best_trivial_ranking_with_its_interval():
    out = proxy_validation.analyse(_rows(), ["a", "b"], [])
    a, b = out["loss.a"]["merge_lead"], out["loss.b"]["merge_lead"]
    assert a["lead"] == pytest.approx(0.0)  # merge and own weight both rank loss.a perfectly
    assert b["lead"] == pytest.approx(-2.0)  # merge backwards (-1), own weight perfect (+1)
    assert b["low"] <= b["lead"] <= b["high"] and a["level"] == 0.9


def test_analyse_adds_utility_over_groups():
    rows = _rows()
    rows["group.g"] = -rows["loss.a"]
    rows["task.t"] = rows["group.g"]
    out = proxy_validation.analyse(rows, ["a", "b"], [EvalTask(name="t", group="g")])
    assert list(out)[:2] == ["utility", "mean_loss"]
    assert out["utility"]["proxy"]["merge"]["spearman"] == pytest.approx(1.0)
    assert out["utility"]["higher_is_better"]


def test_analyse_judges_the_utility_on_the_searchs_scale():
    """Raw, the wide group h (which the merge ranks backwards) decides the utility; on a
    scale where h is noise and g is signal, g decides, as it did for the search."""
    rows = _rows()
    rows["group.g"] = rows["task.t"] = -rows["loss.a"]
    rows["group.h"] = rows["task.u"] = -10 * rows["loss.b"]
    tasks = [EvalTask(name="t", group="g"), EvalTask(name="u", group="h")]
    raw = proxy_validation.analyse(rows, ["a", "b"], tasks)
    assert raw["utility"]["proxy"]["merge"]["spearman"] == pytest.approx(-1.0)
    measured = {g: rows[f"group.{g}"].to_numpy() for g in ("g", "h")}
    scale = normaliser("noise", measured, {"g": 0.01, "h": 100.0})
    scaled = proxy_validation.analyse(rows, ["a", "b"], tasks, scale=scale)
    assert scaled["utility"]["proxy"]["merge"]["spearman"] == pytest.approx(1.0)
    for out in (raw, scaled):  # the group rows themselves are as measured
        assert out["group.h"]["proxy"]["merge"]["spearman"] == pytest.approx(-1.0)


def test_the_real_scale_proxy_undoes_a_group_the_merge_exaggerates():
    """The merge ranks both groups right but stretches h 100x more than real runs do, so its
    raw utility ranks mixtures backwards; mapped onto the real scale (lines fitted without the
    mixture ranked) it ranks them as the real runs do."""
    a = np.array([0.2, 0.35, 0.5, 0.65, 0.8])
    rows = _rows().query("kind == 'expert'")
    rows = rows.assign(**{"group.g": [1.0, 0.0], "group.h": [-10.0, 0.0]})
    for kind, h_scale in (("merge", 10.0), ("mix", 0.1)):
        part = pd.DataFrame(
            {
                "kind": kind,
                "mixture": np.arange(len(a)),
                "alpha.a": a,
                "alpha.b": 1 - a,
                "loss.a": 3 - a,
                "loss.b": 2 + a,
                "group.g": a,
                "group.h": -h_scale * a,
            }
        )
        rows = pd.concat([rows, part], ignore_index=True)
    rows["task.t"], rows["task.u"] = rows["group.g"], rows["group.h"]
    tasks = [EvalTask(name="t", group="g"), EvalTask(name="u", group="h")]
    utility = proxy_validation.analyse(rows, ["a", "b"], tasks)["utility"]
    assert utility["proxy"]["merge"]["spearman"] == pytest.approx(-1.0)
    assert utility["proxy"]["real_scale"]["spearman"] == pytest.approx(1.0)
    # the mapped utility is the real one: each line is exact, so no gap is left
    assert utility["proxy"]["real_scale"]["gap"] == pytest.approx(0.0, abs=1e-9)
    text = report.validation_verdict({"analysis": {"utility": utility}}, emphasis="")
    assert "mapped onto the real runs' scale (lines fitted leave-one-out" in text
    assert "the merge ranks it at ρ = 1.00" in text
    # no line through merges that score every mixture alike: no such proxy, no error
    flat = {"g": np.ones(5)}
    assert proxy_validation.real_scale_utility(flat, {"g": a}) is None
    # beside a group with a line, a flat one is a constant, not its leave-one-out mean
    # (which would rank the mixtures backwards by that group's real scores)
    mapped = proxy_validation.real_scale_utility(
        {"g": a, "h": np.ones(5)}, {"g": 2 * a, "h": 3 * a}
    )
    np.testing.assert_allclose(mapped, (2 * a + 3 * a.mean()) / 2, atol=1e-12)


def test_analyse_needs_real_runs():
    with pytest.raises(ranking.RankingError, match="'mix'"):
        proxy_validation.analyse(_rows().query("kind != 'mix'"), ["a", "b"], [])


def test_analyse_checks_the_chosen_mixtures_real_gain():
    out = proxy_validation.analyse(_rows(), ["a", "b"], [], chosen=3)["loss.a"]["chosen"]
    # losses negated: mixture 3 (a = 0.8) is 0.6 lower than mixture 0 (a = 0.2) in both
    assert out["proxy_gain"] == pytest.approx(0.6) and out["real_gain"] == pytest.approx(0.6)
    noise = proxy_validation.analyse(_rows(), ["a", "b"], [])["loss.a"]["ceiling"]["noise_sd"]
    assert out["real_gain_sd"] == pytest.approx(math.sqrt(2) * noise)
    assert out["runs"] == [1, 1]
    assert "chosen" not in proxy_validation.analyse(_rows(), ["a", "b"], [])["loss.a"]


def test_analyse_ranks_mixtures_by_the_mean_of_their_runs():
    """Every mixture trained twice: the first runs rank loss.a backwards at two places, their
    means rank it as the merge does; the chosen gain and its noise are the means'."""
    rows = _rows().query("kind != 'rerun'").copy()
    first = rows["kind"] == "mix"
    rows.loc[first, "loss.a"] = [2.5, 2.9, 2.1, 2.3]  # backwards between 0-1 and 2-3
    again = rows[first].assign(kind="rerun", **{"loss.a": [3.2, 2.1, 2.4, 2.1]})
    out = proxy_validation.analyse(pd.concat([rows, again]), ["a", "b"], [], chosen=3)["loss.a"]
    means = -np.array([2.85, 2.5, 2.25, 2.2])  # no shift: both seeds' runs average 2.45
    merge = -np.array([2.9, 2.7, 2.5, 2.3])
    assert out["runs_per_mixture"] == 2.0
    assert out["proxy"]["merge"]["spearman"] == pytest.approx(ranking.spearman(merge, means))
    assert out["proxy"]["merge"]["spearman"] == pytest.approx(1.0)
    assert out["proxy"]["merge"]["gap"] == pytest.approx(np.mean(-merge + means))
    c = out["ceiling"]
    assert c["truth_noise_sd"] == pytest.approx(c["noise_sd"] / math.sqrt(2))
    assert out["chosen"]["real_gain"] == pytest.approx(means[3] - means[0])
    assert out["chosen"]["real_gain_sd"] == pytest.approx(c["noise_sd"])  # sqrt(1/2 + 1/2)
    assert out["chosen"]["runs"] == [2, 2]
