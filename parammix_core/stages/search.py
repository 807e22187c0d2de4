"""Stage optimise_mixture: the chosen mixture from the surrogates, and how sure it is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parammix_core.config import Experiment
from parammix_core.data import natural_weights
from parammix_core.search import Choice, choose_mixture, normaliser
from parammix_core.search.choice import candidate_pool, mapped_noise, on_real_scale
from parammix_core.search.common import Transform
from parammix_core.search.real_scale import GroupLine, fit_real_scale, lines_to_json
from parammix_core.search.uncertainty import gain_intervals, verdict
from parammix_core.stages.common import dump_config
from parammix_core.stages.evaluate import load_doc_scores, load_rows, more_documents
from parammix_core.stages.surrogates import load_surrogates
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json
from parammix_core.surrogate import SurrogateSet, lightgbm_predictor, linear_fit


def choice_ref(
    exp: Experiment,
    surrogates: ArtifactRef,
    data: ArtifactRef,
    evals: Sequence[ArtifactRef] = (),
    validation: ArtifactRef | None = None,
) -> ArtifactRef:
    spec = {
        "search": dump_config(exp.search),
        "groups": exp.evaluation.groups,
        "seed": exp.seed,
        "surrogates": surrogates.key,  # covers the evaluated rows the interval resamples
        "data": data.key,
        "validation": validation.key if validation is not None else None,
    }
    return ArtifactRef.for_spec("choice", "mixture", spec, code=code_version("choice"))


def optimise(
    exp: Experiment,
    store: Store,
    surrogates: ArtifactRef,
    data: ArtifactRef,
    evals: Sequence[ArtifactRef] = (),
    validation: ArtifactRef | None = None,
) -> ArtifactRef:
    """The chosen mixture; with the evaluated batches, its gain over the baselines gets a
    bootstrap interval and a plain verdict. With `validation` (`search.utility.calibrate`),
    every group's merge scores are first mapped onto its real runs' scale."""
    ref = choice_ref(exp, surrogates, data, evals, validation)
    if store.exists(ref):
        return ref
    lines = real_scale(store, validation, exp.evaluation.groups) if validation else None
    fitted = load_surrogates(store, surrogates)
    groups = exp.evaluation.groups
    rows = store.load_parquet(surrogates, "rows.parquet")
    measured = {g: rows[f"group.{g}"].to_numpy() for g in groups if f"group.{g}" in rows}
    noise = store.load_json(surrogates, "noise.json")
    paired = {g: n["paired_stderr"] for g, n in noise.items()}
    choice = choose_mixture(
        fitted,
        exp.domains,
        groups,
        exp.search,
        exp.seed,
        natural=natural_weights(store.load_json(data, "stats.json")),
        measured=measured,
        paired_se=paired,
        real_scale=lines,
    )
    if lines:
        choice.real_scale = lines_to_json(lines)
    if evals and exp.search.interval.replicates > 0:
        to_real = on_real_scale(exp.evaluation.groups, lines)
        scale = normaliser(choice.normalise, *mapped_noise(to_real, measured, paired))
        _interval(exp, store, choice, fitted, evals, lambda g, y: scale(g, to_real(g, y)))
    out = store.staging(ref)
    (out / "choice.json").write_text(canonical_json(choice.to_json()))
    return store.publish(ref, out, info={"alpha": choice.alpha})


def real_scale(store: Store, validation: ArtifactRef, groups: list[str]) -> dict[str, GroupLine]:
    """Per group, the line from the plain merge's score to the real runs' mean score over the
    validation's mixtures (each mixture's runs, reruns included, averaged)."""
    rows = store.load_parquet(validation, "rows.parquet")
    merged = rows[rows["kind"] == "merge"].groupby("mixture").mean(numeric_only=True)
    real = rows[rows["kind"].isin(["mix", "rerun"])].groupby("mixture").mean(numeric_only=True)
    both = merged.index.intersection(real.index)
    return fit_real_scale(
        {g: merged.loc[both, f"group.{g}"].to_numpy() for g in groups},
        {g: real.loc[both, f"group.{g}"].to_numpy() for g in groups},
    )


# Candidates the chosen mixture's interval is simultaneous over, beside the top ones it averages
# (a sample of the pool it was picked from, the same distribution).
BAND = 512


def _interval(
    exp: Experiment,
    store: Store,
    choice: Choice,
    fitted: SurrogateSet,
    evals: Sequence[ArtifactRef],
    transform: Transform,
) -> None:
    """Set `choice.intervals` and `choice.verdict` from a bootstrap over the evaluated
    mixtures and their documents, simultaneous over the candidates it was picked among."""
    tasks = exp.evaluation.tasks
    per_doc = load_doc_scores(store, evals, tasks)
    if any(t.name not in per_doc for t in tasks):
        return  # runs imported from elsewhere carry no per-document scores
    alphas = load_rows(store, evals)[[f"alpha.{d}" for d in exp.domains]].to_numpy()
    fits = {
        g: linear_fit if fitted.uses_linear(f"group.{g}") else lightgbm_predictor(exp.seed)
        for g in exp.evaluation.groups
    }
    baselines = {
        b: np.array([p["alpha"][d] for d in exp.domains]) for b, p in choice.baselines.items()
    }
    point = {
        b: choice.predicted_utility - p["predicted_utility"] for b, p in choice.baselines.items()
    }
    picked = [[p["alpha"][d] for d in exp.domains] for p in choice.top_k]
    candidates = np.vstack([candidate_pool(exp.domains, exp.search, exp.seed, BAND), picked])
    intervals = gain_intervals(
        alphas,
        per_doc,
        tasks,
        choice.weights,
        np.array([choice.alpha[d] for d in exp.domains]),
        baselines,
        point,
        fits,
        transform,
        seed=exp.seed,
        replicates=exp.search.interval.replicates,
        level=exp.search.interval.level,
        candidates=candidates,
    )
    choice.intervals = {b: iv.to_json() for b, iv in intervals.items()}
    advice = more_documents(exp)
    choice.verdict = verdict(
        intervals,
        f"{advice[0].upper()}{advice[1:]}, longer experts (training.expert.steps, "
        f"{exp.training.expert.steps} now) or a larger model may narrow it.",
        on_merges=True,
    )


def load_choice(store: Store, ref: ArtifactRef) -> Choice:
    return Choice.from_json(store.load_json(ref, "choice.json"))
