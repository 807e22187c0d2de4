"""The `refit-surrogates` flow: more rows, new surrogates, a new choice and report.

New rows are mixtures evaluated now with the config's experts, and/or runs made elsewhere
(`search.import_runs`). The config's planned mixtures come from the store when an earlier run
evaluated them. More rows where the surrogates were unsure is the cheap way to a
better-founded choice.
"""

from __future__ import annotations

from prefect import flow

from flows.evaluate_mixtures import evaluate_mixtures
from parammix_core import simplex
from parammix_core.config import Experiment, resolve_experiment
from parammix_core.store import ArtifactRef
from tasks.proposals import import_runs
from tasks.report import report, summarise
from tasks.search import optimise_mixture
from tasks.surrogates import fit_surrogates


@flow(name="refit-surrogates", log_prints=True, validate_parameters=True)
def refit_surrogates(
    exp: Experiment | None = None,
    mixtures: list[dict[str, float]] | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, ArtifactRef]:
    """Surrogates on the planned plus `mixtures` ({domain: weight}) rows; the new choice.
    The experiment as in `param_mix`."""
    exp = resolve_experiment(exp, config, overrides)
    if mixtures is not None:  # refused before the planned mixtures train and score
        simplex.from_mappings(mixtures, exp.domains)
    planned = evaluate_mixtures(exp)
    evals = list(planned["evals"])
    if mixtures is not None:
        evals += evaluate_mixtures(exp, mixtures)["evals"]
    imported = import_runs(exp) if exp.search.import_runs is not None else None
    probe = planned["probe"]
    surrogates = fit_surrogates(exp, evals, probe, None, imported)
    choice = optimise_mixture(exp, surrogates, planned["data"], evals)
    final = report(exp, surrogates, choice, probe)
    refs = {"surrogates": surrogates, "choice": choice, "report": final}
    summarise(exp, refs)
    return refs
