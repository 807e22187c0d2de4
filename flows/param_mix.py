"""The `param_mix` flow: the whole pipeline of DESIGN.md as one DAG.

preflight -> prepare_domains -> evaluation_suite -> base_model -> train_expert[domain] -> rounds of
(propose_mixtures[round] -> merge_and_evaluate[batch]) -> fit_surrogates -> optimise_mixture
-> validate_proxy (real mixed runs) -> final_training -> report, with interference_probe
beside the fan-out. With search.strategy multifidelity the rounds also train real mixed runs
(flows.multifidelity) and the choice is the multi-fidelity GP's at fidelity 1 instead of
optimise_mixture's. With search.utility.calibrate, validate_proxy (without the choice) runs
beside the merges and feeds optimise_mixture the line from each group's merge scores to its
real runs'.
"""

from __future__ import annotations

from prefect import flow, unmapped

from flows.multifidelity import multifidelity_search
from flows.runners import ExperimentTaskRunner
from parammix_core import stages
from parammix_core.config import Experiment, resolve_experiment
from parammix_core.store import ArtifactRef
from tasks.base import base_model
from tasks.data import prepare_domains
from tasks.evaluate import evaluation_suite, merge_and_evaluate
from tasks.experts import train_expert
from tasks.final import run_final
from tasks.preflight import preflight
from tasks.probe import interference_probe
from tasks.proposals import import_runs, propose_mixtures, search_inputs
from tasks.report import report, summarise
from tasks.search import optimise_mixture
from tasks.surrogates import fit_surrogates
from tasks.validate import run_validation


@flow(name="param-mix", task_runner=ExperimentTaskRunner(), log_prints=True)
def param_mix(
    exp: Experiment | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, ArtifactRef]:
    """Find a data mixture by merging per-domain experts; returns the refs of every stage.

    The experiment: `config` (a preset such as `micro`, or a YAML file) or `exp` (a whole
    experiment; default the embedded one), then `overrides` (`search.n_mixtures=48`, ...).
    """
    exp = resolve_experiment(exp, config, overrides)
    preflight(exp, config or "the experiment")
    data = prepare_domains(exp)
    evaluation_suite(exp, data)
    base = base_model(exp, data)
    experts = train_expert.map(unmapped(exp), exp.domains, unmapped(data), unmapped(base))
    probe = (
        interference_probe.submit(exp, data, base, experts.result()) if exp.probe.enabled else None
    )
    inputs = search_inputs(exp, data, base, experts.result()) if stages.needs_inputs(exp) else None
    imported = import_runs(exp) if exp.search.import_runs is not None else None
    corrected = exp.evaluation.proxy == "corrected"  # the probe's Delta(alpha) joins the merge
    merge_probe = probe.result() if corrected else None
    before = None  # search.utility.calibrate: the validation's real runs set the groups' scale
    if exp.search.strategy == "multifidelity":  # merges and real runs, chosen at fidelity 1
        evaluated, choice = multifidelity_search(exp, data, base, experts.result(), merge_probe)
        probe = probe.result() if probe is not None else None
        surrogates = fit_surrogates(exp, evaluated, probe, None, imported)  # for the report
    else:
        if exp.search.utility.calibrate:  # submitted first: trains beside the merges
            before = run_validation(exp, None, data, base, experts.result(), probe)
        evaluated, rounds = merge_rounds(
            exp, data, base, experts.result(), merge_probe, inputs, imported
        )
        probe = probe.result() if probe is not None else None
        surrogates = fit_surrogates(exp, evaluated, probe, rounds, imported)
        calibration = before.result() if before is not None else None
        choice = optimise_mixture(exp, surrogates, data, evaluated, calibration)
    validation = (
        before
        if before is not None
        else run_validation(exp, choice, data, base, experts.result(), probe)
    )
    final_model = run_final(exp, choice, data, base)  # trains while validation scores
    validation = validation.result() if validation is not None else None
    final_model = final_model.result() if final_model is not None else None
    final = report(exp, surrogates, choice, probe, validation, final_model)
    refs = {
        "data": data,
        "base": base,
        **{f"expert.{d}": e for d, e in zip(exp.domains, experts.result(), strict=True)},
        "surrogates": surrogates,
        "choice": choice,
        "report": final,
        **({"probe": probe} if probe is not None else {}),
        **({"validation": validation} if validation is not None else {}),
        **({"final": final_model} if final_model is not None else {}),
    }
    summarise(exp, refs)
    return refs


def merge_rounds(
    exp: Experiment,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    merge_probe: ArtifactRef | None,
    inputs: ArtifactRef | None,
    imported: ArtifactRef | None,
) -> tuple[list[ArtifactRef], list[ArtifactRef]]:
    """Rounds of search.strategy: random's are fixed, so all are submitted at once; an adaptive
    round waits for the scores of every round before it. The evaluations and the rounds."""
    rounds, evals = [], []
    for r in range(stages.n_rounds(exp)):
        seen = [e.result() for e in evals] if stages.adaptive(exp) else []
        proposed = propose_mixtures(exp, r, seen, inputs, imported)
        rounds.append(proposed.ref)
        evals += merge_and_evaluate.map(
            unmapped(exp),
            proposed.batches,
            unmapped(data),
            unmapped(base),
            unmapped(experts),
            unmapped(merge_probe),
            index=range(len(evals), len(evals) + len(proposed.batches)),
        )
    return [e.result() for e in evals], rounds
