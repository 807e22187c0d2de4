"""Rank agreement figures against hand-computed values, trivial rankings, the noise ceiling."""

import math

import numpy as np
import pytest
from scipy import stats

from parammix_core import ranking, report


def test_spearman_with_ties_matches_hand_value():
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]: cov 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert ranking.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert ranking.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert ranking.spearman([1, 2, 3], [1, 4, 9]) == pytest.approx(1.0)  # monotone, not linear


def test_kendall_tau_b_with_ties_matches_hand_value():
    # 5 concordant pairs, 0 discordant, one pair tied in x only: 5 / sqrt((6 - 1) * 6)
    assert ranking.kendall([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    # 3 concordant, 3 discordant
    assert ranking.kendall([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(4 / 6 - 2 / 6)


def test_pearson_and_constant_inputs():
    assert ranking.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert ranking.pearson([1, 2, 3], [1, 4, 9]) < 0.999  # linear, unlike Spearman
    assert math.isnan(ranking.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(ranking.kendall([1, 2, 3], [5, 5, 5]))


def test_top_overlap_on_constructed_cases():
    x = [5, 4, 3, 2, 1, 0, -1, -2]  # n = 8: top quarter = 2 mixtures, {0, 1}
    assert ranking.top_overlap(x, [4, 5, 0, 0, 0, 0, 0, 1]) == 1.0  # same two, order swapped
    assert ranking.top_overlap(x, [5, 0, 4, 0, 0, 0, 0, 0]) == 0.5  # {0, 2}
    assert ranking.top_overlap(x, [-5, -4, 3, 2, 1, 0, 0, 0]) == 0.0  # {2, 3}
    # n = 5: k = ceil(1.25) = 2
    assert ranking.top_overlap([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == 0.0
    # ties at the cut go to the first listed, the same way for both vectors
    assert ranking.top_overlap([1, 1, 1, 0], [1, 0, 0, 0]) == 1.0
    assert ranking.top_overlap([1, 1, 1, 0], [0, 1, 0, 0]) == 0.0
    assert ranking.top_overlap(x, x, fraction=0.5) == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ranking.RankingError, match="equal length"):
        ranking.spearman([1, 2, 3], [1, 2])
    with pytest.raises(ranking.RankingError, match="at least 2"):
        ranking.pearson([1], [1])
    with pytest.raises(ranking.RankingError, match="NaN"):
        ranking.kendall([1, float("nan")], [1, 2])
    with pytest.raises(ranking.RankingError, match="fraction"):
        ranking.top_overlap([1, 2], [1, 2], fraction=0)


def test_trivial_rankings():
    alphas = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(ranking.own_weight(alphas, 0), [0.5, 1 / 3, 0.8])
    np.testing.assert_allclose(
        ranking.alpha_entropy(alphas),
        [math.log(2), math.log(3), -(0.8 * math.log(0.8) + 0.2 * math.log(0.1))],
    )
    np.testing.assert_allclose(
        ranking.expert_interpolation(alphas, [1.0, 2.0, 4.0]), [1.5, 7 / 3, 1.4]
    )
    with pytest.raises(ranking.RankingError, match="K expert scores"):
        ranking.expert_interpolation(alphas, [1.0, 2.0])


def test_noise_ceiling_from_reruns():
    runs = np.array([1.0, 2.0, 3.0, 4.0])  # sample variance 5/3
    out = ranking.noise_ceiling(runs, np.array([1.0, 2.0]), np.array([1.2, 1.8]))
    noise = (0.2**2 + 0.2**2) / (2 - 1) / 2  # variance of the differences (about 0) / 2
    reliability = 1 - noise / (5 / 3)
    assert out["noise_sd"] == pytest.approx(math.sqrt(noise))
    assert out["pearson"] == pytest.approx(reliability)
    assert out["spearman"] == pytest.approx(6 / math.pi * math.asin(reliability / 2))
    assert math.isnan(out["direct_spearman"])  # two reruns: too few for a rank correlation
    bound = 6 / math.pi * math.asin(math.sqrt(reliability) / 2)
    assert out["proxy_spearman"] == pytest.approx(bound) and bound > out["spearman"]
    # noise as large as the spread: no reliable ranking at all
    assert ranking.noise_ceiling(runs, np.array([1.0]), np.array([4.0]))["spearman"] == 0.0
    # one rerun: the seed's shift is in the noise, so the point reads low and has no interval
    one = ranking.noise_ceiling(runs, np.array([1.0]), np.array([1.2]))
    assert one["spearman"] == pytest.approx(6 / math.pi * math.asin((1 - 0.02 / (5 / 3)) / 2))
    assert math.isnan(one["spearman_low"]) and math.isnan(one["spearman_high"])


def test_a_noiseless_proxy_reaches_the_bound_not_the_ceiling():
    """Review 38: two runs agree at the reliability r, a proxy that knows every mixture's
    expected score agrees with one run at sqrt(r). Simulated at r = 0.5 over 300 mixtures:
    the runs' mean Spearman is the ceiling, the perfect proxy's the bound, 0.2 above it."""
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, (40, 300))
    one, two = (truth + rng.normal(0, 1, truth.shape) for _ in range(2))  # r = 1 / (1 + 1)
    runs_agree = np.mean([ranking.spearman(a, b) for a, b in zip(one, two, strict=True)])
    proxy = np.mean([ranking.spearman(t, a) for t, a in zip(truth, one, strict=True)])
    out = ranking.noise_ceiling(one[0], one[0, :100], two[0, :100])
    assert runs_agree == pytest.approx(out["spearman"], abs=0.05)
    assert proxy == pytest.approx(out["proxy_spearman"], abs=0.05)
    assert proxy > runs_agree + 0.15


def test_a_shift_common_to_the_reruns_is_not_noise():
    runs = np.linspace(0.0, 3.0, 13)
    first = np.array([0.5, 1.0, 2.0, 2.5])
    rerun = first + np.array([0.1, -0.1, 0.05, -0.05])
    shifted = ranking.noise_ceiling(runs, first, rerun + 0.7)  # the rerun seed: all 0.7 up
    plain = ranking.noise_ceiling(runs, first, rerun)
    for key in ("noise_sd", "spearman", "spearman_low", "spearman_high", "direct_spearman"):
        assert shifted[key] == pytest.approx(plain[key])
    assert shifted["shift"] == pytest.approx(-0.7) and plain["shift"] == pytest.approx(0.0)
    d = first - rerun
    assert plain["noise_sd"] == pytest.approx(math.sqrt(np.var(d, ddof=1) / 2))


def test_the_ceiling_carries_its_own_interval_which_narrows_with_reruns():
    runs = np.linspace(0.0, 3.0, 13)  # spread variance 1.17

    def ceiling(r: int) -> dict:
        first = np.linspace(0.5, 2.5, r)
        d = np.resize([0.3, -0.3], r) * math.sqrt((r - 1) / r)  # variance 0.09 for every r
        return ranking.noise_ceiling(runs, first, first + d)

    two, eight = ceiling(2), ceiling(8)
    assert two["spearman"] == pytest.approx(eight["spearman"])  # the same noise estimate
    # F bounds on noise / spread, R - 1 and N - 1 degrees of freedom, 90 %
    noise, spread = 0.09 / 2, float(np.var(runs, ddof=1))
    assert two["noise_sd"] == pytest.approx(math.sqrt(noise))
    for out, df in ((two, 1), (eight, 7)):
        high_noise, low_noise = (noise / stats.f.ppf(q, df, 12) for q in (0.05, 0.95))
        low = 6 / math.pi * math.asin(max(0.0, 1 - high_noise / spread) / 2)
        high = 6 / math.pi * math.asin(max(0.0, 1 - low_noise / spread) / 2)
        assert (out["spearman_low"], out["spearman_high"]) == pytest.approx((low, high))
    assert two["spearman_low"] < two["spearman"] < two["spearman_high"] <= 1.0
    assert (
        eight["spearman_high"] - eight["spearman_low"] < two["spearman_high"] - two["spearman_low"]
    )


def test_the_ceilings_interval_holds_the_true_ceiling_as_often_as_it_says():
    # the default validation's shape: 13 mixtures, 6 rerun, true reliability 0.8; the noise and
    # the spread are both estimated, so bounds that take the spread as known cover ~83 %
    rng = np.random.default_rng(0)
    reliability, draws = 0.8, 1000
    spread = math.sqrt(reliability / (1 - reliability))
    true = 6 / math.pi * math.asin(reliability / 2)
    held = 0
    for _ in range(draws):
        scores = rng.normal(0, spread, 13)
        runs = scores + rng.normal(0, 1, 13)
        again = rng.choice(13, 6, replace=False)
        rerun = scores[again] + rng.normal(0, 1, 6) + rng.normal()
        out = ranking.noise_ceiling(runs, runs[again], rerun)
        held += out["spearman_low"] <= true <= out["spearman_high"]
    assert 0.86 <= held / draws <= 0.94, held / draws  # nominal 0.90; sd of the share ~0.01


def test_the_ceiling_of_means_of_two_runs_is_that_of_twice_the_reliability():
    runs = np.linspace(0.0, 3.0, 6)
    first, rerun = runs.copy(), runs + np.array([0.3, -0.3, 0.3, -0.3, 0.3, -0.3])
    truth = (first + rerun) / 2
    out = ranking.noise_ceiling(runs, first, rerun, truth=truth, runs_per=np.full(6, 2))
    noise = np.var(first - rerun, ddof=1) / 2
    pearson = 1 - noise / 2 / np.var(truth, ddof=1)
    assert out["truth_runs"] == 2.0
    assert out["truth_noise_sd"] == pytest.approx(math.sqrt(noise / 2))
    assert out["truth_spearman"] == pytest.approx(6 / math.pi * math.asin(pearson / 2))
    assert out["truth_spearman_low"] < out["truth_spearman"] < out["truth_spearman_high"]
    assert out["truth_spearman"] > out["spearman"]  # half the noise
    # one run per mixture: the truth's ceiling is the runs' own
    once = ranking.noise_ceiling(runs, first, rerun, truth=runs, runs_per=np.ones(6))
    assert once["truth_spearman"] == pytest.approx(once["spearman"])


def test_the_ceiling_of_means_matches_two_independent_validations():
    """Simulated validations, every mixture trained twice: the reported ceiling of the means
    is, on average, the Spearman of two independent validations' means (as Spearman-Brown
    says), well above a single run's; scoring the means with one run's noise would not be."""
    rng = np.random.default_rng(1)
    n, draws, spread = 12, 2000, 1.2
    reported, single, found = [], [], []
    for _ in range(draws):
        scores = rng.normal(0, spread, n)
        a, b, c, d = (scores + rng.normal(0, 1, n) + rng.normal() for _ in range(4))
        truth = (a + b) / 2
        out = ranking.noise_ceiling(a, a, b, truth=truth, runs_per=np.full(n, 2))
        reported.append(out["truth_spearman"])
        single.append(out["spearman"])
        found.append(ranking.spearman(truth, (c + d) / 2))
    assert np.mean(reported) == pytest.approx(np.mean(found), abs=0.03)
    assert np.mean(single) < np.mean(found) - 0.05


def test_the_verdict_says_when_the_ceiling_is_uncertain():
    analysis = {
        "mean_loss": {
            "n": 13,
            "proxy": {"merge": {"spearman": 0.8}},
            "best_trivial_spearman": 0.5,
            "ceiling": {"spearman": 0.7, "spearman_low": 0.1, "spearman_high": 0.95, "reruns": 2},
            "baselines": {},
        }
    }
    text = report.validation_verdict({"analysis": analysis})
    assert "from 2 rerun(s) it lies in 0.10–0.95 (90 %)" in text
    analysis["mean_loss"]["ceiling"].update(spearman_low=0.65, spearman_high=0.75)
    assert "uncertain" not in report.validation_verdict({"analysis": analysis})
    assert report.validation_table(analysis)["ceiling 90 %"].tolist() == ["0.65–0.75"]
    analysis["mean_loss"]["ceiling"].update(reruns=1, spearman_low=None, spearman_high=None)
    assert "From one rerun the noise holds the data-order seed's shift too" in (
        report.validation_verdict({"analysis": analysis})
    )
    analysis["mean_loss"]["ceiling"] = {}  # validation.reruns: 0: no ceiling, none quoted
    text = report.validation_verdict({"analysis": analysis})
    assert text == (
        "On the mean loss, the merge ranks mixtures at ρ = 0.80 against the real runs; the best "
        "trivial ranking reaches 0.50."
    )  # before: "... and two real runs agree at about nan."


def test_scaled_gain_puts_the_proxys_gain_on_the_real_runs_scale():
    proxy = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # mixture 0 is uniform: gains are over it
    real = np.array([0.1, 0.61, 1.09, 1.62, 1.5])  # 0.5 x the proxy's gains, plus noise
    out = ranking.scaled_gain(proxy + 7.0, real, target=4, gain_sd=0.02 * math.sqrt(2))
    g, r = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 0.51, 0.99, 1.52])  # uniform, others
    slope, intercept = np.polyfit(g, r, 1)
    s = math.sqrt(np.sum((r - intercept - slope * g) ** 2) / 2)
    sxx = np.sum((g - 1.5) ** 2)
    half = stats.t.ppf(0.95, 2) * s * math.sqrt(2 + (4**2 - 2 * 4 * 1.5) / sxx)
    assert out["slope"] == pytest.approx(slope) and slope == pytest.approx(0.504, abs=1e-9)
    assert out["residual_sd"] == pytest.approx(s)
    assert out["proxy_gain"] == pytest.approx(4.0) and out["real_gain"] == pytest.approx(1.4)
    assert out["real_gain_sd"] == pytest.approx(0.02 * math.sqrt(2))
    assert out["predicted"] == pytest.approx(4 * slope)
    assert out["predicted_low"] == pytest.approx(4 * slope - half)
    assert out["predicted_high"] == pytest.approx(4 * slope + half)
    assert out["n_fit"] == 3
    # too few other mixtures for a slope: the gains alone
    assert "predicted" not in ranking.scaled_gain(proxy[:4], real[:4], target=3, gain_sd=0.03)


def test_the_scaled_gains_interval_holds_uniforms_own_noise():
    """Review 38: every real gain shares uniform's run noise; with the merges' gains clustered
    away from 0 and the target beyond them, the line through the origin held the target's real
    gain 75 % of the time at 90 %. 11 mixtures + uniform, real = 0.5 x merge gain + noise."""
    rng = np.random.default_rng(6)
    g = np.concatenate([[0.0], rng.normal(0.010, 0.002, 11), [0.025]])
    hits = 0
    for _ in range(2000):
        real = 0.5 * g + rng.normal(0, 0.003, len(g))
        out = ranking.scaled_gain(g, real, target=12, gain_sd=0.003 * math.sqrt(2))
        hits += out["predicted_low"] <= out["real_gain"] <= out["predicted_high"]
    assert 0.87 <= hits / 2000 <= 0.93


def test_the_verdict_checks_the_chosen_mixture_against_the_scaled_merge():
    chosen = {
        "proxy_gain": 0.05,
        "real_gain": 0.031,
        "real_gain_sd": 0.004,
        "n_fit": 11,
        "slope": 0.6,
        "predicted": 0.03,
        "predicted_low": 0.02,
        "predicted_high": 0.04,
    }
    analysis = {
        "utility": {
            "proxy": {"merge": {"spearman": 0.8}},
            "best_trivial_spearman": 0.5,
            "ceiling": {"spearman": 0.7},
            "chosen": chosen,
        }
    }
    text = report.validation_verdict({"analysis": analysis})
    assert text.endswith(
        "Trained for real at the experts' budget, the chosen mixture gains +0.0310 over uniform "
        "(one run of each, ± 0.0040 from run-to-run noise) where its merge gained +0.0500; "
        "scaled by the slope of real on merge gains over the other 11 mixtures (0.60), the "
        "merge predicted +0.0300 [+0.0200, +0.0400] (90 %), and the real run falls inside it."
    )
    chosen["real_gain"] = 0.05
    assert report.validation_verdict({"analysis": analysis}).endswith("falls outside it.")
    # every mixture trained twice: the means, and the ceiling they are ranked against
    chosen["runs"] = [2, 2]
    analysis["utility"]["ceiling"].update(truth_runs=2.0, truth_spearman=0.82)
    text = report.validation_verdict({"analysis": analysis})
    assert (
        "two real runs agree at about 0.70. The real score of a mixture is the mean of its runs "
        "(2.0 per mixture on average), so two such validations would agree at about 0.82. "
    ) in text
    assert "(the mean of 2 runs of each, ± 0.0040 from run-to-run noise)" in text
    analysis["utility"]["baselines"] = {}
    assert report.validation_table(analysis)["ceiling of means ρ"].tolist() == [0.82]
    chosen["runs"] = [2, 1]
    assert "(the mean of 2 run(s) of it and 1 of uniform, ±" in report.validation_verdict(
        {"analysis": analysis}
    )


def _with_chosen(chosen: dict) -> dict:
    proxy = {"proxy": {"merge": {"spearman": 0.8}}, "best_trivial_spearman": 0.5}
    return {"analysis": {"utility": {**proxy, "ceiling": {"spearman": 0.7}, "chosen": chosen}}}


def test_the_outlook_says_why_there_is_no_prediction():
    """micro's three validation mixtures left the first summary line out unexplained (audit 38)."""
    chosen = {"proxy_gain": 0.05, "real_gain": 0.0095, "n_fit": 1}
    assert report.real_training_outlook(_with_chosen(chosen)) == (
        "real gain of the chosen mixture over uniform: not predicted (the line of real on merge "
        "gains needs 3 validation mixtures besides uniform and the choice, this run trained 1; "
        "raise `validation.n_mixtures`). The validation's real training of it gained +0.0095 "
        "(one run of each)."
    )
    chosen["n_fit"] = 5
    assert "(the merges gave every validation mixture the same gain)" in (
        report.real_training_outlook(_with_chosen(chosen))
    )
    assert report.real_training_outlook(_with_chosen({})) is None  # the choice not trained


def test_the_outlook_states_one_real_runs_predicted_gain_and_whether_it_holds_zero():
    chosen = {
        "proxy_gain": 0.05,
        "real_gain": 0.031,
        "n_fit": 11,
        "slope": 0.6,
        "predicted": 0.03,
        "predicted_low": 0.01,
        "predicted_high": 0.05,
    }
    assert report.real_training_outlook(_with_chosen(chosen)) == (
        "real gain of the chosen mixture over uniform, one run of each at the experts' budget "
        "(90% prediction interval): +0.0300 [+0.0100, +0.0500], the merge's +0.0500 times the "
        "slope of real on merge gains over 11 validation mixtures (0.60), the runs' noise "
        "included. A real run of the chosen mixture is expected to beat uniform's too (the "
        "validation's real training of it gained +0.0310)."
    )
    # the choice's own runs below an interval that excludes zero: the evidence disagrees
    chosen["real_gain"] = -0.0008
    text = report.real_training_outlook(_with_chosen(chosen))
    assert "expected to beat" not in text
    assert text.endswith(
        "included. But the validation's real training of it gained -0.0008, below that "
        "interval: the two disagree, so the chosen mixture is not shown to beat uniform in real "
        "training; more validation mixtures and reruns (`validation.n_mixtures`, "
        "`validation.reruns`) narrow it; longer experts or a larger model may separate the "
        "mixtures more."
    )
    chosen["real_gain"] = 0.09  # above the interval: still a gain
    assert report.real_training_outlook(_with_chosen(chosen)).endswith(
        "expected to beat uniform's too (the validation's real training of it gained +0.0900)."
    )
    chosen["real_gain"] = 0.031
    chosen["predicted_low"] = -0.002
    assert report.real_training_outlook(_with_chosen(chosen)).endswith(
        "[-0.0020, +0.0500], the merge's +0.0500 times the slope of real on merge gains over 11 "
        "validation mixtures (0.60), the runs' noise included. The interval holds zero: at "
        "this budget the chosen mixture is not distinguishable from uniform in real training; "
        "more validation mixtures and reruns (`validation.n_mixtures`, `validation.reruns`) "
        "narrow it; longer experts or a larger model may separate the mixtures more."
    )
    # why: mixtures apart on the utility, groups pulling against each other, or barely moving
    info = _with_chosen(chosen)
    flat = {"utility_sd": 0.0044, "groups_sd": 0.0177, "kept": 0.25, "separation": 1.8}
    info["analysis"]["utility"]["flatness"] = flat
    assert report.real_training_outlook(info).endswith(
        "not distinguishable from uniform in real training; over the validation's mixtures the "
        "real utility varies by sd 0.0044, 1.8x the noise of a mixture's score, keeping 25% of "
        "its groups' spread (0.0177 on average). Its groups pull against each other: what a "
        "mixture gains on some it loses on others, so group weights (`search.group_weights`) "
        "that say which groups matter more decide the mixture. The utility is nearly flat over "
        "the mixtures at this budget: more runs would measure that rather than lift it."
    )
    flat.update(kept=0.6)
    text = report.real_training_outlook(info)
    assert "Its groups move together, but little at this budget: more validation mixtures" in text
    assert "pull against" not in text
    flat.update(kept=0.25, separation=7.0)
    text = report.real_training_outlook(info)
    assert "Its groups pull against each other" in text and "nearly flat" not in text
    assert text.endswith(
        "decide the mixture. The mixtures differ on the utility beyond a run's noise and this "
        "one's gain is small beside that: more validation mixtures and reruns "
        "(`validation.n_mixtures`, `validation.reruns`) narrow it; longer experts or a larger "
        "model may separate the mixtures more."
    )
    flat.update(kept=0.6, separation=math.nan)  # no reruns: no noise to weigh the spread by
    assert "(0.0177 on average). More validation mixtures and reruns" in (
        report.real_training_outlook(info)
    )
    assert report.real_training_outlook(_with_chosen({"proxy_gain": 0.05})) is None  # no slope
    assert report.real_training_outlook(_with_chosen({})) is None  # the choice not trained
