"""The `evaluate-mixtures` flow: score given mixtures with the experts of a config.

Every stage before the merge is content-addressed, so with a config that already ran the
experts come from the store at once; with a changed base checkpoint or corpus they are
retrained first. Run it nightly and it costs nothing until something upstream changes.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from flows.runners import ExperimentTaskRunner
from parammix_core import simplex
from parammix_core.config import Experiment, resolve_experiment
from tasks.base import base_model
from tasks.data import prepare_domains
from tasks.evaluate import already_scored, merge_and_evaluate, plan_mixtures
from tasks.experts import train_expert
from tasks.preflight import preflight
from tasks.probe import interference_probe
from tasks.report import summarise_evaluations


@flow(
    name="evaluate-mixtures",
    task_runner=ExperimentTaskRunner(),
    log_prints=True,
    validate_parameters=True,
)
def evaluate_mixtures(
    exp: Experiment | None = None,
    mixtures: list[dict[str, float]] | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Merge and score `mixtures` ({domain: weight}; default: the planned vertices, uniform
    and Dirichlet draws of `stages.mixture_batches`). The experiment as in `param_mix`.

    Returns the refs the caller needs to go on: data, base, experts, probe, evals.
    """
    exp = resolve_experiment(exp, config, overrides)
    preflight(exp, config or "the experiment")
    if mixtures is not None:
        alphas = simplex.from_mappings(mixtures, exp.domains).tolist()
        size = exp.search.batch_size
        batches = [alphas[i : i + size] for i in range(0, len(alphas), size)]
    else:
        batches = plan_mixtures(exp)
    data = prepare_domains(exp)
    base = base_model(exp, data)
    experts = train_expert.map(unmapped(exp), exp.domains, unmapped(data), unmapped(base)).result()
    probe = interference_probe(exp, data, base, experts) if exp.probe.enabled else None
    corrected = exp.evaluation.proxy == "corrected"
    known = already_scored(exp, batches, data, base, experts, probe if corrected else None)
    evals = merge_and_evaluate.map(
        unmapped(exp),
        batches,
        unmapped(data),
        unmapped(base),
        unmapped(experts),
        unmapped(probe if corrected else None),
        index=[f"given-{i}" if mixtures is not None else i for i in range(len(batches))],
    ).result()
    summarise_evaluations(exp, evals, known, given=mixtures is not None)
    return {"data": data, "base": base, "experts": experts, "probe": probe, "evals": evals}
