"""The proxy validation in words: how the merge ranks mixtures against real mixed runs."""

from __future__ import annotations

import math

import pandas as pd

from parammix_core.ranking import MIN_FIT
from parammix_core.report.markdown import markdown_table, num, scale_note
from parammix_core.report.noise_split import documents_advice, task_noise_section

CEILING_WIDE = 0.2  # a ceiling interval wider than this is said to be uncertain
# below this share of its groups' spread the utility is said to be flattened by trade-offs
# (the default's seeds 0 / 8 / 9 kept 0.36 / 0.25 / 0.50 over 12 mixtures each trained twice,
# their utilities spreading 1.8 / 1.8 / 7.0 times a mixture's noise; RESULTS.md)
TRADE_OFF = 0.5
# a utility spread over the mixtures under this many times a mixture's noise is one that real
# runs barely rank (reliability under 1 - 1/4, a Spearman ceiling under ~0.74)
SEPARATED = 2.0


def validation_table(analysis: dict[str, dict]) -> pd.DataFrame:
    """One row per ranked metric: the proxies' and trivial rankings' Spearman, the ceiling."""
    rows = []
    for metric, a in analysis.items():
        proxy = a["proxy"]
        merge = proxy.get("merge", {})
        row = {
            "metric": metric,
            "merge ρ": num(merge.get("spearman")),
            "merge ρ 90 %": _rho_interval(a.get("merge_lead")),
            "merge r": num(merge.get("pearson")),
            "merge τ": num(merge.get("kendall")),
            "top-25 %": num(merge.get("top25")),
            "gap merge − mix": num(merge.get("gap")),
        }
        for kind in ("corrected", "rescaled", "real_scale"):
            if kind in proxy:
                row[f"{kind.replace('_', '-')} ρ"] = num(proxy[kind].get("spearman"))
        for name, b in a["baselines"].items():
            row[f"{name} ρ"] = num(b.get("spearman"))
        ceiling = a.get("ceiling", {})
        row["ceiling ρ"] = num(ceiling.get("spearman"))
        row["ceiling 90 %"] = _interval(ceiling)
        means = num(ceiling.get("truth_runs")) > 1
        if means:
            row["ceiling of means ρ"] = num(ceiling.get("truth_spearman"))
        row["proxy bound ρ"] = num(
            ceiling.get("truth_proxy_spearman" if means else "proxy_spearman")
        )
        lead = a.get("merge_lead")
        row["lead over trivial [90 %]"] = _lead_interval(lead)
        row["merge beats trivial"] = _beats_trivial(
            row["merge ρ"], num(a.get("best_trivial_spearman")), lead
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _lead_interval(lead: dict | None) -> str:
    """`+0.15 [-0.06, +0.22]`, or n/a where a ranking was undefined (a constant score)."""
    values = [num((lead or {}).get(k)) for k in ("lead", "low", "high")]
    if not all(math.isfinite(v) for v in values):
        return "n/a"
    return "{:+.2f} [{:+.2f}, {:+.2f}]".format(*values)


def _rho_interval(lead: dict | None) -> str:
    """`0.52–0.93`: the merge's own Spearman over resamples of the mixtures, or n/a."""
    low, high = (num((lead or {}).get(k)) for k in ("rho_low", "rho_high"))
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"{low:.2f}–{high:.2f}"


def _beats_trivial(rho: float, best: float, lead: dict | None) -> str:
    """yes only when the lead's interval excludes zero; a point lead inside it is noise."""
    if not (math.isfinite(rho) and math.isfinite(best)):
        return "n/a"
    if rho <= best:
        return "no"
    low = num((lead or {}).get("low"))
    return "yes" if not math.isfinite(low) or low > 0 else "within noise"


def validation_section(info: dict) -> str:
    """Markdown: how the merge ranks mixtures against real mixed runs, said plainly."""
    analysis = info["analysis"]
    table = validation_table(analysis)
    n = next(iter(analysis.values()))["n"]
    lines = [
        f"{n} non-vertex mixtures trained for real from the base at {_budget(info)}, "
        "scored exactly like the merges. ρ: Spearman, r: Pearson, "
        "τ: Kendall of the proxy against the real runs (higher-is-better orientation), the "
        "merge's ρ with its 90 % interval from resampling the mixtures; top-25 %: "
        "share of the real top quarter the proxy also puts there; gap: mean merge − mix in the "
        "metric's units. Trivial rankings: own_weight = α of the metric's domain, entropy = "
        "entropy of α, expert_interpolation = α-weighted mean of the experts' scores; "
        "lead over trivial: merge ρ minus the best trivial ρ with its 90 % interval from "
        "resampling the mixtures (the merge beats trivial only when it excludes zero). "
        "real-scale ρ: the utility of the merge's group scores mapped onto the real runs' "
        "scale, a line per group fitted on the other mixtures. A mixture trained twice is "
        "scored by the mean of its two runs (the rerun moved onto the first runs' data-order "
        "seed). Ceiling: expected Spearman between two real runs with different data orders "
        "(from the reruns); ceiling of means: the same for the scores the proxies are ranked "
        "against (shown when some mixtures were trained twice); proxy bound: what a proxy "
        "knowing every mixture's expected score would reach against those scores (a merge is "
        "deterministic, so it may beat the ceiling, not the bound)."
        + scale_note(info.get("utility_scale", "raw")),
        markdown_table(table),
    ]
    head = _validation_head(analysis)
    a = analysis[head]
    rho = num(a["proxy"]["merge"]["spearman"])
    lines.append(validation_verdict(info))
    fit = info.get("step_scale_fit") or {}
    if fit:
        corrected = num(a["proxy"].get("corrected", {}).get("spearman"))
        lines.append(
            "Second-order correction: the measured merge-vs-mix parameter gaps projected on the "
            f"probe's predicted direction give an effective step scale {fit['scale']:.3g} "
            f"({fit['scale_over_theory']:.3g} × the plain-gradient-descent Σ_(s<t) η_s η_t = "
            f"{fit['theory_scale']:.3g}); mean cosine of measured and predicted gap "
            f"{fit['cosine_mean']:.2f}, share of the gap explained {fit['explained']:.2f}, "
            f"Spearman of predicted vs measured ||Δ|| {num(fit['norm_spearman']):.2f}. The merge "
            f"corrected with this scale (fitted leave-one-out) ranks the {head.replace('_', ' ')} "
            f"at ρ = {corrected:.2f} against {rho:.2f} for the plain merge."
        )
    if info.get("task_noise"):
        lines.append(task_noise_section(info["task_noise"], info.get("utility_noise")))
    lines.append("![proxy vs real](validation.png)")
    return "\n\n".join(lines)


def _validation_head(analysis: dict) -> str:
    return "utility" if "utility" in analysis else "mean_loss"


def validation_verdict(info: dict, emphasis: str = "**") -> str:
    """One plain paragraph: the merge's rank correlation against the real runs, the best
    trivial ranking and the noise ceiling, and whether the merge beats them."""
    analysis = info["analysis"]
    head = _validation_head(analysis)
    a = analysis[head]
    rho = num(a["proxy"]["merge"]["spearman"])
    best = num(a["best_trivial_spearman"])
    ceiling_info = a.get("ceiling", {})
    ceiling = num(ceiling_info.get("spearman"))
    agree = f" and two real runs agree at about {ceiling:.2f}" if math.isfinite(ceiling) else ""
    spread = _rho_interval(a.get("merge_lead"))
    within = f" ({spread} at 90 %, resampling the {a.get('n')} mixtures)" if spread != "n/a" else ""
    verdict = (
        f"On the {head.replace('_', ' ')}, the merge ranks mixtures at ρ = {rho:.2f}{within} "
        f"against the real runs; the best trivial ranking reaches {best:.2f}{agree}. "
    )
    runs = num(ceiling_info.get("truth_runs"))
    bound = num(ceiling_info.get("proxy_spearman"))
    if runs > 1:
        ceiling = num(ceiling_info.get("truth_spearman"))
        bound = num(ceiling_info.get("truth_proxy_spearman"))
        verdict += (
            f"The real score of a mixture is the mean of its runs ({runs:.1f} per mixture on "
            f"average), so two such validations would agree at about {ceiling:.2f}. "
        )
    if math.isfinite(best) and not (rho > best):
        verdict += f"{emphasis}The merge is no better than a trivial ranking here.{emphasis} "
    verdict += _lead_sentence(a.get("merge_lead"), a.get("n"), rho > best, emphasis)
    if math.isfinite(bound) and rho < bound - 0.05:
        verdict += (
            f"It stays {bound - rho:.2f} below {bound:.2f}, what a proxy knowing every "
            "mixture's expected score would reach against these runs. "
        )
    low, high = num(ceiling_info.get("spearman_low")), num(ceiling_info.get("spearman_high"))
    if num(ceiling_info.get("reruns")) == 1:
        verdict += (
            "From one rerun the noise holds the data-order seed's shift too, so the ceiling "
            "reads low and has no interval; `validation.reruns: 2` or more separates them. "
        )
    elif math.isfinite(low) and math.isfinite(high) and high - low > CEILING_WIDE:
        reruns = int(num(ceiling_info.get("reruns")))
        verdict += (
            f"The ceiling itself is uncertain: from {reruns} rerun(s) it lies in "
            f"{_interval(ceiling_info)} (90 %); more reruns (`validation.reruns`) narrow it. "
        )
    if "real_scale" in a["proxy"]:
        mapped = num(a["proxy"]["real_scale"]["spearman"])
        verdict += (
            f"With each group's merge scores mapped onto the real runs' scale (lines fitted "
            f"leave-one-out; `search.utility.calibrate`), the merge ranks it at ρ = {mapped:.2f}. "
        )
    if "chosen" in a:
        verdict += _chosen_check(a["chosen"], _budget(info))
    return verdict.strip()


def _lead_sentence(lead: dict | None, n: int | None, ahead: bool, emphasis: str) -> str:
    """Whether the merge's lead over the best trivial ranking survives resampling the mixtures."""
    if _lead_interval(lead) == "n/a":
        return ""
    said = (
        f"Its lead over the best trivial ranking is {_lead_interval(lead)} "
        f"({lead['level'] * 100:.0f} % interval, resampling the {n} mixtures): "
    )
    if lead["low"] > 0:
        return said + "more than which mixtures were drawn. "
    if lead["high"] < 0:  # the best of several noisy trivial rankings is favoured by chance
        return said + (
            "the best of the trivial rankings is ahead on these mixtures (picked as the best "
            "of several, it is favoured by chance, so this does not show it ranks better). "
        )
    return said + (
        f"{emphasis}on these mixtures the merge is not distinguishable from a trivial "
        f"ranking{emphasis}; more validation mixtures (`validation.n_mixtures`) would tell. "
        if ahead
        else "the trivial ranking's lead is within it too. "
    )


def _budget(info: dict) -> str:
    """Where the real runs trained (`validation.budget`; validations stored before it have
    no `budget` and trained at the experts')."""
    budget = info.get("budget") or {"name": "experts"}
    where = "the final budget" if budget["name"] == "final" else "the experts' budget"
    return where + (f" of {budget['steps']} steps" if "steps" in budget else "")


def _chosen_check(c: dict, budget: str) -> str:
    """The chosen mixture's real gain over uniform against the merge's, on one scale."""
    noise = num(c.get("real_gain_sd"))
    text = (
        f"Trained for real at {budget}, the chosen mixture gains "
        f"{c['real_gain']:+.4f} over uniform"
        + (f" ({_runs(c)}, ± {noise:.4f} from run-to-run noise)" if math.isfinite(noise) else "")
        + f" where its merge gained {c['proxy_gain']:+.4f}"
    )
    if "predicted" not in c:
        return text + "."
    inside = c["predicted_low"] <= c["real_gain"] <= c["predicted_high"]
    return text + (
        f"; scaled by the slope of real on merge gains over the other {c['n_fit']} mixtures "
        f"({c['slope']:.2f}), the merge predicted {c['predicted']:+.4f} "
        f"[{c['predicted_low']:+.4f}, {c['predicted_high']:+.4f}] (90 %), and the real run "
        f"falls {'inside' if inside else 'outside'} it."
    )


def real_training_outlook(info: dict) -> str | None:
    """What one real run of the chosen mixture is predicted to gain over one of uniform; None
    when the validation did not train the choice. The search's interval is one of merges,
    which overstate real gains (the slope of real on merge gains was 0.46-0.55 on the
    default) and know nothing of a training run's own noise, so a run leads with this. The
    validation trained the choice too: when its runs fell below an interval that excludes
    zero, the two pieces of evidence disagree and neither is presented as a gain."""
    c = info["analysis"][_validation_head(info["analysis"])].get("chosen", {})
    if "n_fit" not in c:
        return None
    if "predicted" not in c:
        why = (
            f"the line of real on merge gains needs {MIN_FIT} validation mixtures besides "
            f"uniform and the choice, this run trained {c['n_fit']}; raise `validation.n_mixtures`"
            if c["n_fit"] < MIN_FIT
            else "the merges gave every validation mixture the same gain"
        )
        return (
            f"real gain of the chosen mixture over uniform: not predicted ({why}). The "
            f"validation's real training of it gained {c['real_gain']:+.4f} ({_runs(c)})."
        )
    low, high = c["predicted_low"], c["predicted_high"]
    text = (
        f"real gain of the chosen mixture over uniform, {_runs(c)} at {_budget(info)} "
        f"(90% prediction interval): {c['predicted']:+.4f} [{low:+.4f}, {high:+.4f}], "
        f"the merge's {c['proxy_gain']:+.4f} times the slope of real on merge gains over "
        f"{c['n_fit']} validation mixtures ({c['slope']:.2f}), the runs' noise included. "
    )
    measured = f"the validation's real training of it gained {c['real_gain']:+.4f}"
    if low > 0 and c["real_gain"] >= low:
        return (
            text
            + f"A real run of the chosen mixture is expected to beat uniform's too ({measured})."
        )
    if low > 0:
        text += (
            f"But {measured}, below that interval: the two disagree, so the chosen mixture "
            "is not shown to beat uniform in real training; "
        )
    else:
        text += (
            "The interval holds zero: at this budget the chosen mixture is not distinguishable "
            "from uniform in real training; "
        )
    more = (
        "more validation mixtures and reruns (`validation.n_mixtures`, `validation.reruns`) "
        "narrow it; longer experts or a larger model may separate the mixtures more."
    )
    advice = documents_advice(info.get("task_noise") or {}, info.get("utility_noise"))
    return text + _why_indistinguishable(info["analysis"], more) + (f" {advice}" if advice else "")


def _why_indistinguishable(analysis: dict, more: str) -> str:
    """Why the choice is not told apart: whether its groups pull against each other (a utility
    keeping under TRADE_OFF of their spread) and whether the mixtures differ on the utility
    at all (SEPARATED noise sds), and what would help accordingly."""
    flat = analysis[_validation_head(analysis)].get("flatness") or {}
    kept, separation = num(flat.get("kept")), num(flat.get("separation"))
    if not math.isfinite(kept):
        return more
    text = (
        f"over the validation's mixtures the real utility varies by sd {flat['utility_sd']:.4f}"
        + (
            f", {separation:.1f}x the noise of a mixture's score"
            if math.isfinite(separation)
            else ""
        )
        + f", keeping {kept:.0%} of its groups' spread ({flat['groups_sd']:.4f} on average). "
    )
    traded = kept < TRADE_OFF
    if traded:
        text += (
            "Its groups pull against each other: what a mixture gains on some it loses on "
            "others, so group weights (`search.group_weights`) that say which groups matter "
            "more decide the mixture. "
        )
    if not math.isfinite(separation):  # no reruns: no noise to weigh the spread against
        return text + more[0].upper() + more[1:]
    if separation >= SEPARATED:
        return text + (
            "The mixtures differ on the utility beyond a run's noise and this one's gain is "
            "small beside that: " + more
        )
    if traded:
        return text + (
            "The utility is nearly flat over the mixtures at this budget: more runs would "
            "measure that rather than lift it."
        )
    return text + "Its groups move together, but little at this budget: " + more


def _runs(chosen: dict) -> str:
    """How many real runs the chosen mixture's and uniform's scores are means of."""
    mine, uniform = chosen.get("runs", [1, 1])
    if mine == uniform:
        return "one run of each" if mine == 1 else f"the mean of {mine} runs of each"
    return f"the mean of {mine} run(s) of it and {uniform} of uniform"


def _interval(ceiling: dict) -> str:
    low, high = num(ceiling.get("spearman_low")), num(ceiling.get("spearman_high"))
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"{low:.2f}–{high:.2f}"
