"""The multi-fidelity search's choice: the GP's best mixture at the highest fidelity, with each
capability group predicted there by a GP of its own so the report reads it as any choice, and
its gain over uniform and natural with an interval from the GP's posterior widened by its
held-out errors (`parammix_core.search.multifidelity`). It says the choice beats a baseline only
when that interval excludes zero and the GP predicts held-out runs better than every shuffle of
their utilities among their mixtures (`HeldOutRuns`), and otherwise why it cannot tell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
from scipy.stats import norm

from parammix_core.config import Experiment
from parammix_core.config.search import FIDELITY_ORDER, significance
from parammix_core.search import Choice, History, resolve_weights, search_bounds
from parammix_core.search import utility as group_utility
from parammix_core.search.held_out import MIN_HELD_OUT, HeldOutRuns
from parammix_core.search.multifidelity import MultiFidelityStrategy
from parammix_core.search.uncertainty import GainInterval
from parammix_core.search.uncertainty import verdict as uncertainty_verdict
from parammix_core.stages.common import Progress, dump_config
from parammix_core.stages.evaluate import more_documents
from parammix_core.stages.final import baseline_mixtures
from parammix_core.stages.multifidelity import history, levels
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json


def choice_ref(
    exp: Experiment,
    data: ArtifactRef,
    evals: Sequence[ArtifactRef],
) -> ArtifactRef:
    spec = {
        "search": dump_config(exp.search),
        "groups": exp.evaluation.groups,
        "seed": exp.seed,
        "data": data.key,
        "evals": [e.key for e in evals],
    }
    return ArtifactRef.for_spec("choice", "fidelity", spec, code=code_version("choice"))


def choose(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    evals: Sequence[ArtifactRef],
    progress: Progress | None = None,
) -> ArtifactRef:
    """The mixture the GP ranks first at fidelity 1, its groups and the uniform and natural
    baselines predicted there by one GP per group; written as any choice is. `progress` follows
    the held-out check (up to `held_out_folds` x (1 + `shuffles`) GP refits)."""
    ref = choice_ref(exp, data, evals)
    if store.exists(ref):
        return ref
    seen, rows = history(exp, store, evals)
    lo, hi = search_bounds(exp.domains, exp.search.bounds)
    cfg = exp.search.strategies.multifidelity
    settings = cfg.model_dump(
        include={"num_restarts", "raw_samples", "held_out_folds", "shuffles", "choice"}
    )
    gp = MultiFidelityStrategy(
        len(exp.domains), lo, hi, exp.seed, levels(exp), level=exp.search.interval.level, **settings
    )
    best = gp.choose(seen)
    baselines = baseline_mixtures(exp, store.load_json(data, "stats.json"))
    intervals, checked = _intervals(exp, gp, seen, best.alpha, baselines, progress)
    names = ["chosen", *baselines]
    points = np.stack([best.alpha, *baselines.values()])  # (3, K)
    groups = exp.evaluation.groups
    per_group = {
        g: gp.predict(
            History(seen.x, rows[f"group.{g}"].to_numpy(dtype=float), None, seen.fidelity), points
        )
        for g in groups
    }  # group -> (3,)
    predicted = {name: {g: float(per_group[g][i]) for g in groups} for i, name in enumerate(names)}
    weights = resolve_weights(groups, exp.search.group_weights or None)
    total = sum(weights.values())

    def point(name: str) -> dict:
        u = float(group_utility({g: np.array([v]) for g, v in predicted[name].items()}, weights)[0])
        alpha = dict(zip(exp.domains, map(float, points[names.index(name)]), strict=True))
        return {"alpha": alpha, "predicted": predicted[name], "predicted_utility": u}

    chosen = point("chosen")
    choice = Choice(
        alpha=chosen["alpha"],
        predicted=chosen["predicted"],
        predicted_utility=chosen["predicted_utility"],
        weights=weights,
        baselines={b: point(b) for b in baselines},
        contributions={
            g: weights[g] * (predicted["chosen"][g] - predicted["uniform"][g]) / total
            for g in groups
        },
        intervals={b: iv.to_json() for b, iv in intervals.items()},
        verdict=_verdict(exp, seen, intervals, checked),
        held_out={} if checked is None else asdict(checked),
    )
    out = store.staging(ref)
    (out / "choice.json").write_text(canonical_json(choice.to_json()))
    return store.publish(ref, out, info={"alpha": choice.alpha, "gp_mean": best.mean})


def _intervals(
    exp: Experiment,
    gp: MultiFidelityStrategy,
    seen: History,
    chosen: np.ndarray,
    baselines: dict[str, np.ndarray],
    progress: Progress | None = None,
) -> tuple[dict[str, GainInterval], HeldOutRuns | None]:
    """The chosen mixture's predicted gain over each baseline at the highest fidelity, with
    the central `search.interval.level` share of the GP's joint posterior (normal), widened
    by the GP's held-out errors, and how the GP predicts held-out rows; none when the highest
    fidelity has too few rows to judge it."""
    if np.isclose(seen.fidelities, gp.levels[-1]).sum() < MIN_HELD_OUT:
        return {}, None
    mean, sd = gp.gains(seen, chosen, np.stack(list(baselines.values())))  # choose's GP
    checked = gp.held_out(seen, significance(exp.search), progress)
    level = exp.search.interval.level
    half = norm.ppf((1 + level) / 2) * sd * checked.widen
    intervals = {
        b: GainInterval(b, float(m), float(m - h), float(m + h), level, replicates=0)
        for b, m, h in zip(baselines, mean, half, strict=True)
    }
    return intervals, checked


def _verdict(
    exp: Experiment,
    seen: History,
    intervals: dict[str, GainInterval],
    checked: HeldOutRuns | None,
) -> str:
    """Whether the choice beats the baselines beyond the GP's uncertainty (only when the GP
    predicts held-out evaluations at the highest fidelity better than their mean and than
    shuffles of them), where it was made and from how many evaluations of each fidelity."""
    names = exp.search.strategies.multifidelity.fidelities
    at = dict(zip(names, levels(exp), strict=True))
    count = {f: int(np.isclose(seen.fidelities, at.get(f, -1.0)).sum()) for f in FIDELITY_ORDER}
    counts = [f"{count['long']} long run(s)"] * ("long" in names)
    counts += [f"{count['run']} real run(s)", f"{count['merge']} merge(s)"]
    where = {"merge": "merges", "run": "real runs", "long": "long real runs"}[names[-1]]
    source = (
        f"Chosen by the GP at fidelity {at[names[-1]]:g} ({where}) from "
        f"{', '.join(counts[:-1])} and {counts[-1]}"
    )
    cfg = exp.search.strategies.multifidelity
    budget = f"A larger budget (search.strategies.multifidelity.budget, {cfg.budget:g} real-run "
    if names[-1] == "merge":  # merges share one data order: their noise is their documents'
        helps = f"{budget}equivalents now), {more_documents(exp)} or longer runs may help."
    else:  # a real run's noise is mostly its data order's on the default (RESULTS.md)
        helps = (
            f"{budget}equivalents now) or longer runs may help; whether more evaluation "
            "documents would, the validation's split of the real runs' noise says."
        )
    if checked is None:
        return f"{source}; too few {where} (under {MIN_HELD_OUT}) to say how sure it is. {helps}"
    held = (
        f"{where} held out in {checked.folds} groups: R² {checked.r2:+.2f} over {checked.n}, "
        f"errors {checked.scale:.2f} times the GP's standard deviation"
    )
    alpha = significance(exp.search)
    if checked.predicts(alpha):
        return (
            f"{uncertainty_verdict(intervals, helps)} {source}; the interval is the GP's "
            f"posterior of the gain widened by its held-out errors ({held}; better than all "
            f"{checked.shuffled} shuffles of their utilities, p {checked.p:.2f})."
        )
    if math.factorial(checked.n) * alpha < 1 - 1e-9:
        why = (
            f"cannot be told from shuffles of {checked.n} {where}: they have "
            f"{math.factorial(checked.n)} orderings, too few for one-sided {alpha:.3g} ({held})"
        )
    elif checked.r2 <= 0:
        why = f"does not predict held-out {where} better than their mean ({held})"
    else:
        why = (
            f"predicts held-out {where} no better than shuffles of their utilities among their "
            f"mixtures ({held}; {checked.reached} of {checked.shuffled} shuffles predicted as "
            f"well, p {'≥ ' * (checked.shuffled < cfg.shuffles)}{checked.p:.2f} against "
            f"one-sided {alpha:.3g})"
        )
    return (
        f"No mixture is distinguishable from uniform at this budget: the GP {why}. {helps} "
        f"{source}."
    )
