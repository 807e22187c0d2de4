"""Wiring of the multi-fidelity search inside `param_mix`: rounds of merges and real mixed
runs (at the experts' budget, and at the final one when `long` is a fidelity) until the stage
says the budget is spent, then the choice at the highest fidelity."""

from __future__ import annotations

from prefect import unmapped

from parammix_core.config import Experiment
from parammix_core.store import ArtifactRef
from tasks.evaluate import merge_and_evaluate
from tasks.final import final_run
from tasks.multifidelity import choose_at_fidelity, evaluate_run, joined_runs, propose_fidelities
from tasks.validate import train_mixed


def multifidelity_search(
    exp: Experiment,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: list[ArtifactRef],
    probe: ArtifactRef | None,
) -> tuple[list[ArtifactRef], ArtifactRef]:
    """The merges' evaluations (for the surrogates and the report; the real runs' when no
    merge was evaluated, `fidelities: [run]`) and the choice."""
    scored = evaluate_run.map(
        unmapped(exp),
        joined_runs(exp, data, base),
        unmapped(data),
        unmapped(base),
        unmapped(experts),
        unmapped(probe),
        label="joined run",
    )
    joined = [s.result() for s in scored]
    merges: list[ArtifactRef] = []
    runs: list[ArtifactRef] = []
    round_index = 0
    while True:
        work = propose_fidelities(exp, round_index, merges, runs, joined, experts)
        if work.done:
            break
        evaluated = merge_and_evaluate.map(
            unmapped(exp),
            work.merges,
            unmapped(data),
            unmapped(base),
            unmapped(experts),
            unmapped(probe),
            index=range(len(merges), len(merges) + len(work.merges)),
        )
        labels = [f"round {round_index} run {i}" for i in range(len(work.runs))]
        long_labels = [f"round {round_index} long run {i}" for i in range(len(work.long_runs))]
        seed, same = unmapped(exp.seed), (unmapped(data), unmapped(base))
        trained = train_mixed.map(unmapped(exp), work.runs, seed, *same, label=labels)
        trained_long = final_run.map(unmapped(exp), work.long_runs, seed, *same, label=long_labels)
        scored = evaluate_run.map(
            unmapped(exp),
            [*trained, *trained_long],
            unmapped(data),
            unmapped(base),
            unmapped(experts),
            unmapped(probe),
            label=[*labels, *long_labels],
        )
        merges += [e.result() for e in evaluated]
        runs += [s.result() for s in scored]
        round_index += 1
    return merges or runs, choose_at_fidelity(exp, data, [*merges, *runs, *joined])
