"""The `param_mix` flow: the whole pipeline of DESIGN.md as one DAG.

prepare_domains -> base_model -> train_expert[domain] -> merge_and_evaluate[batch]
-> fit_surrogates -> optimise_mixture -> report, with interference_probe beside the fan-out
"""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.base import base_model
from tasks.data import prepare_domains
from tasks.evaluate import merge_and_evaluate, plan_mixtures
from tasks.experts import train_expert
from tasks.probe import interference_probe
from tasks.report import report
from tasks.search import optimise_mixture
from tasks.surrogates import fit_surrogates


@flow(name="param-mix", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def param_mix(exp: Experiment = Experiment()) -> dict[str, ArtifactRef]:  # noqa: B008
    """Find a data mixture by merging per-domain experts; returns the refs of every stage."""
    data = prepare_domains(exp)
    base = base_model(exp, data)
    experts = train_expert.map(unmapped(exp), exp.domains, unmapped(data), unmapped(base))
    probe = (
        interference_probe.submit(exp, data, base, experts.result()) if exp.probe.enabled else None
    )
    batches = plan_mixtures(exp)
    corrected = exp.evaluation.proxy == "corrected"  # the probe's Delta(alpha) joins the merge
    evals = merge_and_evaluate.map(
        unmapped(exp),
        batches,
        unmapped(data),
        unmapped(base),
        unmapped(experts.result()),
        unmapped(probe.result() if corrected else None),
        index=range(len(batches)),
    )
    probe = probe.result() if probe is not None else None
    surrogates = fit_surrogates(exp, evals.result(), probe)
    choice = optimise_mixture(exp, surrogates, data)
    final = report(exp, surrogates, choice, probe)
    return {
        "data": data,
        "base": base,
        **{f"expert.{d}": e for d, e in zip(exp.domains, experts.result(), strict=True)},
        "surrogates": surrogates,
        "choice": choice,
        "report": final,
        **({"probe": probe} if probe is not None else {}),
    }


def with_workers(max_workers: int):
    """The flow with a thread pool of the configured size."""
    return param_mix.with_options(task_runner=ThreadPoolTaskRunner(max_workers=max_workers))
