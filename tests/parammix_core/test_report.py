"""Report and figures: files that exist, say the chosen numbers, and draw deterministically."""

from dataclasses import replace

import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from parammix_core import plots
from parammix_core.config import SearchConfig
from parammix_core.report import (
    ReportError,
    markdown_table,
    run_summary,
    summary_lines,
    validation_table,
    validation_verdict,
    write_report,
)
from parammix_core.search import choose_mixture
from parammix_core.stages.report import noise_section
from parammix_core.surrogate import fit_surrogates

DOMAINS = ["math", "code", "web"]
GROUPS = ["math", "code", "language"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def experiment():
    """40 evaluated mixtures over 3 domains, the surrogates fitted on them, and the choice."""
    rng = np.random.default_rng(0)
    alpha = rng.dirichlet(np.ones(3), size=40)  # (40, 3)
    rows = pd.DataFrame({f"alpha.{d}": alpha[:, i] for i, d in enumerate(DOMAINS)})
    rows["group.math"] = 0.2 + 0.5 * alpha[:, 0] + rng.normal(0, 0.01, 40)
    rows["group.code"] = 0.1 + 0.6 * alpha[:, 1] + rng.normal(0, 0.01, 40)
    rows["group.language"] = 0.3 + 0.2 * alpha[:, 2] - 0.3 * (alpha[:, 2] - 0.5) ** 2
    for g in GROUPS:
        rows[f"group.{g}.stderr"] = 0.02
    rows["loss.web"] = 3.0 - alpha[:, 2]
    targets = [f"group.{g}" for g in GROUPS] + ["loss.web"]
    surrogates = fit_surrogates(alpha, {t: rows[t].to_numpy() for t in targets}, folds=4, seed=0)
    choice = choose_mixture(
        surrogates,
        DOMAINS,
        GROUPS,
        SearchConfig(n_candidates=2000, top_k=8),
        seed=0,
        natural={"math": 1, "code": 1, "web": 2},
    )
    return rows, surrogates, choice


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024


def test_projection_puts_vertices_on_the_polygon():
    xy = plots.simplex_projection(np.vstack([np.eye(3), np.full((1, 3), 1 / 3)]))
    assert np.allclose(xy[0], [0.0, 1.0])
    assert np.allclose(np.linalg.norm(xy[:3], axis=1), 1.0)
    # a ternary triangle: equilateral, uniform at the centre
    sides = [np.linalg.norm(xy[i] - xy[(i + 1) % 3]) for i in range(3)]
    assert np.allclose(sides, np.sqrt(3))
    assert np.allclose(xy[3], 0.0, atol=1e-12)
    # halfway between two domains lands halfway along the edge
    assert np.allclose(plots.simplex_projection(np.array([[0.5, 0.5, 0.0]]))[0], xy[:2].mean(0))
    assert plots.simplex_projection(np.full((5, 6), 1 / 6)).shape == (5, 2)


def test_plots_write_pngs_deterministically(experiment, tmp_path):
    rows, surrogates, choice = experiment
    a = plots.plot_landscape(rows, DOMAINS, GROUPS, tmp_path / "a.png", chosen=choice.alpha)
    b = plots.plot_landscape(rows, DOMAINS, GROUPS, tmp_path / "b.png", chosen=choice.alpha)
    assert_png(a)
    assert a.read_bytes() == b.read_bytes()
    truth = {t: rows[t].to_numpy() for t in surrogates.targets}
    assert_png(plots.plot_surrogate_fit(truth, surrogates.oof, surrogates.cv, tmp_path / "f.png"))
    series = {"chosen": choice.predicted, "uniform": choice.baselines["uniform"]["predicted"]}
    assert_png(plots.plot_choice(choice.alpha, series, tmp_path / "sub" / "c.png"))


def test_interference_plots(experiment, tmp_path):
    rows, _, _ = experiment
    k = len(DOMAINS)
    curvature = np.full((k, k), 0.3) + 0.7 * np.eye(k)
    cosines = np.eye(k)
    assert_png(plots.plot_interference(DOMAINS, curvature, cosines, tmp_path / "i.png"))
    with_delta = rows.assign(delta=np.linspace(0, 1, len(rows)))
    assert_png(plots.plot_discrepancy(with_delta, DOMAINS, "delta", tmp_path / "d.png"))
    with pytest.raises(plots.PlotError, match=r"lack column\(s\) \['delta'\]"):
        plots.plot_discrepancy(rows, DOMAINS, "delta", tmp_path / "x.png")


def test_plots_name_missing_columns(experiment, tmp_path):
    rows, _, _ = experiment
    with pytest.raises(plots.PlotError, match=r"lack column\(s\) \['group\.poetry'\]"):
        plots.plot_landscape(rows, DOMAINS, ["poetry"], tmp_path / "x.png")


def test_markdown_table_without_tabulate():
    df = pd.DataFrame({"name": ["a|b", "c"], "score": [0.41234, float("nan")], "n": [1, 22]})
    assert markdown_table(df) == (
        "| name | score | n |\n| --- | ---: | ---: |\n| a\\|b | 0.412 | 1 |\n| c | n/a | 22 |"
    )


def test_report_states_choice_fit_and_best_measured(experiment, tmp_path):
    rows, surrogates, choice = experiment
    path = write_report(
        tmp_path / "report",
        "unit-test",
        DOMAINS,
        GROUPS,
        rows,
        surrogates,
        choice,
        extra={"Proxy validation": "Spearman 0.8 over 6 mixed runs."},
        replay=0.1,
    )
    assert path == tmp_path / "report" / "report.md"
    text = path.read_text()
    assert text.startswith("# Param-Mix report: unit-test\n")
    assert "replay of 0.1 of every domain; a mixture α is merged at the weights (α − 0.1/K)" in text
    for name in ("landscape.png", "surrogate_fit.png", "choice.png"):
        assert_png(path.parent / name)
        assert f"]({name})" in text
    # the chosen mixture and its predictions, beside both baselines
    assert "|  | chosen | uniform | natural |" in text
    for d in DOMAINS:
        assert f"| α {d} | {choice.alpha[d]:.3f} | 0.333 | " in text
    assert f"| utility (predicted) | {choice.predicted_utility:.3f} |" in text
    # the CV table, LightGBM beside linear, one row per target
    assert "| target | R² LightGBM | Spearman LightGBM | R² linear | Spearman linear |" in text
    cv = surrogates.cv["group.math"]
    assert f"| group.math | {cv['r2']:.3f} | {cv['spearman']:.3f} | {cv['r2_linear']:.3f} |" in text
    # top 10 measured mixtures by measured utility, scores with their stderr
    u = rows[[f"group.{g}" for g in GROUPS]].mean(axis=1)
    best = int(u.idxmax())
    assert f"| 1 | {rows.loc[best, 'alpha.math']:.3f} |" in text
    assert f"{rows.loc[best, 'group.code']:.3f} ± 0.020" in text
    assert "| 10 |" in text and "| 11 |" not in text
    assert text.rstrip().endswith("## Proxy validation\n\nSpearman 0.8 over 6 mixed runs.")


def test_report_refuses_rows_the_surrogates_did_not_see(experiment, tmp_path):
    rows, surrogates, choice = experiment
    with pytest.raises(
        ReportError, match="39 evaluation rows but the surrogates were fitted on 40"
    ):
        write_report(tmp_path, "x", DOMAINS, GROUPS, rows.iloc[:-1], surrogates, choice)


def test_summary_lines(experiment):
    _, _, choice = experiment
    lines = summary_lines(choice)
    assert lines[0] == "chosen mixture: " + "  ".join(f"{d}={choice.alpha[d]:.3f}" for d in DOMAINS)
    uniform = choice.baselines["uniform"]
    assert f"(uniform {uniform['predicted_utility']:.3f})" in lines[1]
    assert len(lines) == 3 + len(GROUPS)
    share = (choice.predicted["math"] - uniform["predicted"]["math"]) / len(GROUPS)  # raw, equal
    assert abs(choice.contributions["math"] - share) < 1e-12
    assert sum(choice.contributions.values()) == pytest.approx(
        choice.predicted_utility - uniform["predicted_utility"], abs=1e-12
    )
    assert lines[2].split() == [
        "math",
        "chosen",
        f"{choice.predicted['math']:.3f}",
        "uniform",
        f"{uniform['predicted']['math']:.3f}",
        "margin",
        "share",
        f"{share:+.4f}",
    ]


def test_the_summary_and_report_say_how_far_the_group_weights_move_the_choice(experiment, tmp_path):
    rows, surrogates, choice = experiment
    moves = {
        g: 0.5 * sum(abs(p["alpha"][d] - choice.alpha[d]) for d in DOMAINS)
        for g, p in choice.reweighted.items()
    }
    assert moves == pytest.approx({g: choice.moved(g) for g in GROUPS}, abs=1e-12)
    most = max(moves, key=moves.get)
    cost = max(
        choice.predicted_utility - p["predicted_utility"] for p in choice.reweighted.values()
    )
    mixture = " ".join(f"{d}={w:.3f}" for d, w in choice.reweighted[most]["alpha"].items())
    assert summary_lines(choice)[-1] == (
        f"group weights: one group counted 2x moves {min(moves.values()):.0%}-"
        f"{max(moves.values()):.0%} of the mixture (most: {most}, {mixture}) and costs at most "
        f'{cost:.4f} of the predicted utility at the configured weights (report: "What the '
        'group weights decide")'
    )
    still = {g: {**p, "alpha": dict(choice.alpha)} for g, p in choice.reweighted.items()}
    assert summary_lines(replace(choice, reweighted=still))[-1] == (
        "group weights: counting any one group 2x moves under 0.5% of the mixture; the choice "
        "does not hinge on them"
    )  # not "moves 0%-0% (most: code, ...)" (audit 38)
    text = write_report(tmp_path, "x", DOMAINS, GROUPS, rows, surrogates, choice).read_text()
    assert "Each expert trained on its domain alone; a mixture α is merged at weights α." in text
    assert "## What the group weights decide" in text
    p = choice.reweighted["code"]
    assert (
        f"| code x2 | {p['alpha']['math']:.3f} | {p['alpha']['code']:.3f} | "
        f"{p['alpha']['web']:.3f} | {moves['code']:.3f} | "
        f"{p['predicted_utility'] - choice.predicted_utility:.3f} | "
        f"{p['predicted']['math'] - choice.predicted['math']:.3f} | "
        f"{p['predicted']['code'] - choice.predicted['code']:.3f} |"
    ) in text


def test_the_summary_names_each_groups_line_and_a_group_without_one(experiment):
    _, _, choice = experiment
    nan = float("nan")
    lines = {
        "math": {"slope": 0.95, "slope_se": 0.06, "intercept": 0.1, "rho": 0.9, "n": 12},
        "code": {"slope": 0.0, "slope_se": nan, "intercept": 0.3, "rho": nan, "n": 12},
        "language": {"slope": 0.35, "slope_se": 0.11, "intercept": 0.0, "rho": 0.6, "n": 12},
    }
    said = summary_lines(replace(choice, real_scale=lines))
    assert said[2] == (
        "groups on the real runs' scale (slope of real on merge scores over 12 validation "
        "mixtures): math 0.95 ± 0.06, code 0 (the merges scored it all alike), language 0.35 ± 0.11"
    )


def test_a_run_leads_with_the_choices_predicted_real_gain(experiment):
    _, _, choice = experiment
    chosen = {"proxy_gain": 0.02, "real_gain": 0.004, "n_fit": 11, "slope": 0.5}
    chosen.update(predicted=0.01, predicted_low=-0.001, predicted_high=0.021)
    analysis = {
        "proxy": {"merge": {"spearman": 0.8}},
        "best_trivial_spearman": 0.5,
        "ceiling": {"spearman": 0.7},
        "chosen": chosen,
    }
    validation = {"analysis": {"utility": analysis}}
    lines = run_summary(choice, "REPORT", validation)
    assert lines[0].startswith("real gain of the chosen mixture over uniform, one run of each")
    assert "+0.0100 [-0.0010, +0.0210]" in lines[0] and "The interval holds zero" in lines[0]
    assert lines[1:-2] == summary_lines(choice)
    assert lines[-2].startswith("validation: On the utility, the merge ranks")
    assert lines[-1] == "report: REPORT"
    assert run_summary(choice, "REPORT")[:-1] == summary_lines(choice)  # no validation: no lead
    with_verdict = replace(choice, verdict="Predicted utility gain of the chosen mixture: ...")
    lines = run_summary(with_verdict, "REPORT", validation)
    # the real runs' interval first: the merges' overstated real gains on every seed measured
    assert lines[0].startswith("real gain of the chosen mixture over uniform, one run of each")
    assert lines[1] == with_verdict.verdict


def test_the_report_leads_with_what_it_is_given(experiment, tmp_path):
    rows, surrogates, choice = experiment
    lead = ["real gain of the chosen mixture over uniform: +0.0100"]
    text = write_report(
        tmp_path, "x", DOMAINS, GROUPS, rows, surrogates, choice, lead=lead
    ).read_text()
    assert f"**{lead[0]}**" in text
    assert text.index(f"**{lead[0]}**") < text.index("## Chosen mixture")
    with_verdict = replace(choice, verdict="Predicted utility gain of the chosen mixture: ...")
    text = write_report(
        tmp_path, "x", DOMAINS, GROUPS, rows, surrogates, with_verdict, lead=lead
    ).read_text()
    assert text.index(f"**{lead[0]}**") < text.index(f"**{with_verdict.verdict}**")


def test_noise_section_with_groups_that_have_no_paired_noise():
    """Exact match at 0 on every document of every mixture (a tiny model on gsm8k) has neither
    spread nor paired noise: the table says so instead of dividing by zero."""
    noise = {
        "math": {"spread_sd": 0.0, "paired_stderr": 0.0, "split_half": float("nan")},
        "code": {"spread_sd": 0.02, "paired_stderr": 0.0, "split_half": 0.5},
        "knowledge": {"spread_sd": 0.03, "paired_stderr": 0.01, "split_half": 0.9},
    }
    rows = {
        line.split("|")[1].strip(): line.split("|")[4].strip()
        for line in noise_section(noise).splitlines()
        if line.startswith("| ") and not line.startswith(("| group", "| ---"))
    }
    assert rows == {"math": "- (no spread, no noise)", "code": "inf", "knowledge": "3.0"}


def _led(lead: dict) -> dict:
    """A validation analysis of 13 mixtures: merge 0.8, entropy 0.6, ceiling 0.82."""
    return {
        "utility": {
            "n": 13,
            "proxy": {"merge": {"spearman": 0.8}},
            "best_trivial_spearman": 0.6,
            "ceiling": {"spearman": 0.82},
            "baselines": {"entropy": {"spearman": 0.6}},
            "merge_lead": {**lead, "level": 0.9},
        }
    }


def test_the_verdict_says_whether_the_merges_lead_survives_resampling_the_mixtures():
    analysis = _led({"lead": 0.2, "low": -0.1, "high": 0.5})
    text = validation_verdict({"analysis": analysis}, emphasis="")
    assert (
        "Its lead over the best trivial ranking is +0.20 [-0.10, +0.50] (90 % interval, "
        "resampling the 13 mixtures): on these mixtures the merge is not distinguishable from "
        "a trivial ranking; more validation mixtures (`validation.n_mixtures`) would tell."
    ) in text
    assert validation_table(analysis)["merge beats trivial"].tolist() == ["within noise"]
    analysis["utility"]["merge_lead"].update(low=0.05)
    assert "+0.20 [+0.05, +0.50] (90 % interval, resampling the 13 mixtures): more than which" in (
        validation_verdict({"analysis": analysis})
    )
    table = validation_table(analysis)
    assert table["merge beats trivial"].tolist() == ["yes"]
    assert table["lead over trivial [90 %]"].tolist() == ["+0.20 [+0.05, +0.50]"]
    analysis["utility"].update(best_trivial_spearman=0.9)
    analysis["utility"]["merge_lead"].update(lead=-0.1, low=-0.4, high=-0.02)
    text = validation_verdict({"analysis": analysis})
    assert "the best of the trivial rankings is ahead on these mixtures (picked as the best" in text
    assert "beyond which mixtures were drawn" not in text  # 15 % at 5 % nominal: review 38
    assert validation_table(analysis)["merge beats trivial"].tolist() == ["no"]
    # a ranking undefined in every resample (constant scores) is stored as null: no interval
    analysis["utility"]["merge_lead"] = {"lead": None, "low": None, "high": None, "level": 0.9}
    assert "Its lead" not in validation_verdict({"analysis": analysis})
    assert validation_table(analysis)["lead over trivial [90 %]"].tolist() == ["n/a"]


def test_the_merges_rho_is_given_with_its_interval_in_the_verdict_and_the_table():
    lead = {"lead": 0.2, "low": -0.1, "high": 0.5, "rho": 0.8, "rho_low": 0.52, "rho_high": 0.93}
    analysis = _led(lead)
    text = validation_verdict({"analysis": analysis}, emphasis="")
    assert text.startswith(
        "On the utility, the merge ranks mixtures at ρ = 0.80 (0.52–0.93 at 90 %, resampling "
        "the 13 mixtures) against the real runs; the best trivial ranking reaches 0.60"
    )
    assert validation_table(analysis)["merge ρ 90 %"].tolist() == ["0.52–0.93"]
    analysis["utility"]["merge_lead"] = {"lead": None, "low": None, "high": None, "level": 0.9}
    assert "ρ = 0.80 against the real runs" in validation_verdict({"analysis": analysis})
    assert validation_table(analysis)["merge ρ 90 %"].tolist() == ["n/a"]


def test_long_domain_names_are_shortened_on_every_label(monkeypatch, tmp_path):
    """Names may run to 64 characters: the heat maps shrank to ~40 px and corner labels ran
    together. Labels keep 11 characters and an ellipsis; the bars stay one per domain."""
    names = ["a_very_long_domain_name_for_plots", "a_very_long_domain_name_too", "code"]
    drawn: list[str] = []
    save = plots._save

    def capture(fig, out):
        drawn.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return save(fig, out)

    monkeypatch.setattr(plots, "_save", capture)
    k = len(names)
    assert_png(plots.plot_interference(names, np.eye(k), np.eye(k), tmp_path / "i.png"))
    alpha = dict(zip(names, (0.5, 0.3, 0.2), strict=True))
    assert_png(plots.plot_choice(alpha, {"chosen": {"g": 1.0}}, tmp_path / "c.png"))
    assert "a_very_long\u2026" in drawn and "code" in drawn
    assert not [t for t in drawn if t.startswith("a_very_long_")]
    assert plots.short("x" * 12) == "x" * 12 and plots.short("x" * 13) == "x" * 11 + "\u2026"
