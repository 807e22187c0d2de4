"""Stages of the multi-fidelity search (`search.strategy: multifidelity`).

Merges are the cheap fidelity, real mixed runs at the experts' budget ("run") the expensive one,
and with `fidelities: [merge, run, long]` real runs at the final training's budget ("long") the
most expensive. A fidelity is the evaluation's training budget in experts' budgets (merge 0, run
1, long final.train.steps / training.expert.steps), which the GP reads divided by the highest
configured one: merge 0 and run 1 by default, run 1/3 and long 1 with the default final budget.
Round 0 is merges: the initial design (the vertices and uniform) and `per_round` bounded
Dirichlet draws, so the surrogates the report draws on have rows; with `fidelities: [run]` (BO
on real runs alone) round 0 trains the initial design (and draws up to `n_init` rows, at least
four) for real, and with `[merge]` no real run is trained. Every later round proposes
`per_round` (mixture, fidelity) pairs from one GP over the fidelities
(`parammix_core.search.multifidelity`). The flow sends merge proposals to merge_and_evaluate,
run ones to train_mixed - the very stage, store keys and retries of the validation's runs - and
long ones to final_run (a long run of a mixture and seed the final training also trains is
trained once), then every run to `evaluate_run`, which scores the trained model with the merges'
evaluator (tasks and held-out loss) and records the run's measured cost: its training seconds
plus its evaluation seconds. Real runs of the validation already in the store join the history
as observations, free of charge.

The budget is counted in real-run equivalents: the measured seconds of the search's own
evaluations over the experts' mean training seconds (a real run trains on an expert's budget).
The unit is fixed once the experts exist, so what is spent only grows round by round (dividing
by the real runs measured so far, as a first version did, let it shrink when a slower run came
in). A round is proposed only while the budget is not spent and fewer than `max_rounds` rounds
ran, and proposes no evaluation at a fidelity whose cost exceeds what is left of the budget
except at the cheapest one: the search ends past its budget by at most a round of the cheapest
fidelity (or, cost being a measured mean, by a run slower than the mean). The choice
(`parammix_core.stages.fidelity_choice`) is the GP's best mixture at the highest fidelity.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from parammix_core import simplex
from parammix_core.config import Experiment
from parammix_core.model import load_state
from parammix_core.search.base import History
from parammix_core.search.common import SearchError, search_bounds
from parammix_core.search.common import utility as group_utility
from parammix_core.search.multifidelity import MultiFidelityStrategy
from parammix_core.stages.common import Progress, dump_config
from parammix_core.stages.evaluate import _bench, evaluation_spec, initial_design, load_rows
from parammix_core.stages.final import baseline_mixtures
from parammix_core.stages.mixed import final_run_ref, mixed_ref
from parammix_core.stages.proposals import measured_costs, round_seed
from parammix_core.stages.validate import validation_mixtures
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store

MERGE, RUN = 0.0, 1.0  # fidelities as stored in rows: training budget in experts' budgets


def budgets(exp: Experiment) -> dict[str, float]:
    """Each fidelity's training budget in experts' budgets, as its rows store it."""
    return {"merge": MERGE, "run": RUN, "long": exp.final.train.steps / exp.training.expert.steps}


def as_levels(exp: Experiment, budget: float | pd.Series) -> float | pd.Series:
    """Budgets as the GP reads them: over the highest configured one, so the top fidelity is 1
    (merges alone: 0)."""
    top = budgets(exp)[exp.search.strategies.multifidelity.fidelities[-1]]
    return budget / top if top else budget


def levels(exp: Experiment) -> tuple[float, ...]:
    """The configured fidelities as the GP reads them, cheapest first."""
    return tuple(
        as_levels(exp, budgets(exp)[f]) for f in exp.search.strategies.multifidelity.fidelities
    )


def run_budget(exp: Experiment, run: ArtifactRef) -> float:
    """The stored fidelity of a trained run: a final run's budget, else the experts'."""
    return budgets(exp)["long"] if run.stage == "final" else RUN


def run_eval_ref(
    exp: Experiment,
    run: ArtifactRef,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
) -> ArtifactRef:
    spec = {
        "run": run.key,
        "evaluation": evaluation_spec(exp),
        "domains": exp.domains,
        "seed": exp.seed,
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
        "probe": probe.key if exp.evaluation.proxy == "corrected" and probe else None,
    }
    return ArtifactRef.for_spec("runevals", "run", spec, code=code_version("runevals"))


def evaluate_run(
    exp: Experiment,
    store: Store,
    run: ArtifactRef,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    probe: ArtifactRef | None = None,
    progress: Progress | None = None,
) -> ArtifactRef:
    """A real mixed run scored as the merges are; one row (its fidelity: its training budget)
    with its cost: the run's training seconds (from its manifest) plus these evaluation
    seconds."""
    ref = run_eval_ref(exp, run, data, base, experts, probe)
    if store.exists(ref):
        return ref
    info = store.manifest(run)["info"]
    bench = _bench(exp, store, data, base, experts, probe)
    start = time.perf_counter()
    state = load_state(store.local_dir(run), exp.model, bench.evaluator.device)
    with torch.no_grad():  # the next merge rewrites every parameter, so the bench stays valid
        for name, p in bench.evaluator.model.named_parameters():
            p.copy_(state[name])
    metrics, per_doc = bench.evaluator.evaluate_docs()
    row = {f"alpha.{d}": float(a) for d, a in zip(exp.domains, info["alpha"], strict=True)}
    seconds = info["seconds"] + time.perf_counter() - start
    device = str(bench.evaluator.device)
    row.update(metrics, fidelity=run_budget(exp, run), seconds=seconds, device=device)
    docs = {f"{t}.{j}": v for t, values in per_doc.items() for j, v in enumerate(values)}
    out = store.staging(ref)
    pd.DataFrame([{**row, "run": run.key}]).to_parquet(out / "rows.parquet", index=False)
    pd.DataFrame([docs]).astype("float32").to_parquet(out / "docs.parquet", index=False)
    if progress is not None:
        progress(1, 1, "real run scored")
    return store.publish(ref, out, info={"seconds": seconds})


def joined_runs(
    exp: Experiment, store: Store, data: ArtifactRef, base: ArtifactRef
) -> list[ArtifactRef]:
    """Real runs already in the store, free observations on the experiment's seed (the chosen
    mixture's depend on this search): the validation's (uniform and the draws) at the experts'
    budget when `run` is a fidelity; when `long` is, final training's uniform and natural runs
    and the validation's at the final budget (`validation.budget: final`)."""
    fidelities = exp.search.strategies.multifidelity.fidelities
    mixtures = validation_mixtures(exp)
    refs = []
    if "run" in fidelities:
        refs += [mixed_ref(exp, m, exp.seed, data, base) for m in mixtures]
    if "long" in fidelities:
        baselines = baseline_mixtures(exp, store.load_json(data, "stats.json"))
        refs += [
            final_run_ref(exp, m, exp.seed, data, base) for m in (*mixtures, *baselines.values())
        ]
    unique = {r.key: r for r in refs}  # uniform is both a validation run and a baseline
    return [r for r in unique.values() if store.exists(r)]


def round_ref(
    exp: Experiment,
    round_index: int,
    merges: Sequence[ArtifactRef],
    runs: Sequence[ArtifactRef],
    joined: Sequence[ArtifactRef],
    experts: Sequence[ArtifactRef],
) -> ArtifactRef:
    cfg = exp.search
    spec = {
        "settings": cfg.strategies.multifidelity.model_dump(
            mode="json", exclude=set(cfg.strategies.multifidelity.CHOICE)
        ),
        "bounds": {d: dump_config(b) for d, b in cfg.bounds.items()},
        "groups": exp.evaluation.groups,
        "group_weights": cfg.group_weights,
        "domains": exp.domains,
        "seed": exp.seed,
        "round": round_index,
        "merges": [e.key for e in merges],
        "runs": [e.key for e in runs],
        "joined": [e.key for e in joined],
        "experts": [e.key for e in experts],
    }
    return ArtifactRef.for_spec("proposals", "fidelity-round", spec, code=code_version("runevals"))


def history(
    exp: Experiment, store: Store, evals: Sequence[ArtifactRef]
) -> tuple[History, pd.DataFrame]:
    """Utilities, measured costs and fidelities of evaluated merges and runs, and their rows."""
    k = len(exp.domains)
    if not evals:
        return History(np.zeros((0, k)), np.zeros(0), np.zeros(0), np.zeros(0)), pd.DataFrame()
    rows = load_rows(store, evals)
    x = rows[[f"alpha.{d}" for d in exp.domains]].to_numpy(dtype=float)  # (N, K)
    groups = {g: rows[f"group.{g}"].to_numpy(dtype=float) for g in exp.evaluation.groups}
    budget = rows["fidelity"].fillna(MERGE) if "fidelity" in rows else pd.Series(MERGE, rows.index)
    fidelity = as_levels(exp, budget)
    y = group_utility(groups, exp.search.group_weights or None)
    cost = measured_costs(rows)
    if cost is None:
        raise SearchError("multifidelity: every evaluated row needs its measured seconds")
    return History(x, y, cost, fidelity.to_numpy(dtype=float)), rows


def strategy(
    exp: Experiment, store: Store, experts: Sequence[ArtifactRef], seen: History, round_index: int
) -> MultiFidelityStrategy:
    """The configured strategy for round `round_index`, with the cost priors: the measured
    merges', and an expert's training seconds times a run's budget until one is measured."""
    run_prior = run_unit(store, experts)
    merge = np.isclose(seen.fidelities, MERGE)
    merge_prior = float(np.exp(np.log(seen.cost[merge]).mean())) if merge.any() else run_prior
    lo, hi = search_bounds(exp.domains, exp.search.bounds)
    cfg = exp.search.strategies.multifidelity
    at = levels(exp)
    return MultiFidelityStrategy(
        len(exp.domains),
        lo,
        hi,
        round_seed(exp, round_index),
        levels=at,
        prior_costs=[
            run_prior * budgets(exp)[f] if f != "merge" else merge_prior for f in cfg.fidelities
        ],
        iteration=round_index,
        **cfg.model_dump(exclude=set(cfg.LOOP)),
    )


def run_unit(store: Store, experts: Sequence[ArtifactRef]) -> float:
    """Seconds of one real-run equivalent: the experts' mean training seconds."""
    return float(np.mean([store.manifest(e)["info"]["seconds"] for e in experts]))


def spent(
    exp: Experiment,
    store: Store,
    experts: Sequence[ArtifactRef],
    merges: Sequence[ArtifactRef],
    runs: Sequence[ArtifactRef],
) -> float:
    """Real-run equivalents the search's own evaluations cost (joined runs are free)."""
    own, _ = history(exp, store, [*merges, *runs])
    if not own.n or own.cost is None:
        return 0.0
    return float(own.cost.sum() / run_unit(store, experts))


def propose_round(
    exp: Experiment,
    store: Store,
    round_index: int,
    merges: Sequence[ArtifactRef],
    runs: Sequence[ArtifactRef],
    joined: Sequence[ArtifactRef],
    experts: Sequence[ArtifactRef],
) -> ArtifactRef:
    """Round `round_index`'s (mixture, fidelity) pairs from every earlier evaluation; no rows
    (and info done) once the budget is spent or max_rounds rounds ran."""
    ref = round_ref(exp, round_index, merges, runs, joined, experts)
    if store.exists(ref):
        return ref
    cfg = exp.search.strategies.multifidelity
    used = spent(exp, store, experts, merges, runs)
    done = round_index > 0 and (used >= cfg.budget or round_index >= cfg.max_rounds)
    k = len(exp.domains)
    if done:
        x, fidelity = np.zeros((0, k)), np.zeros(0)
    elif round_index == 0:
        lo, hi = search_bounds(exp.domains, exp.search.bounds)
        first = levels(exp)[0]
        n_init = k + 1 if cfg.n_init is None else cfg.n_init
        # real runs alone: the initial design, and draws up to n_init and to the four rows
        # the report's surrogates need for two-fold cross-validation
        n_draws = cfg.per_round if first == MERGE else max(0, n_init - (k + 1), 4 - (k + 1))
        draws = simplex.sample_bounded(k, n_draws, lo, hi, seed=round_seed(exp, 0))
        x = np.vstack([initial_design(k), draws])
        fidelity = np.full(len(x), first)
    else:
        seen, _ = history(exp, store, [*merges, *runs, *joined])
        left = (cfg.budget - used) * run_unit(store, experts)  # seconds, the costs' unit
        gp = strategy(exp, store, experts, seen, round_index)
        pairs = gp.propose_pairs(seen, cfg.per_round, left)
        x, fidelity = pairs.x, pairs.fidelity
    rows = pd.DataFrame(
        {
            "strategy": "multifidelity",
            "source": "initial" if round_index == 0 else "proposed",
            "round": round_index,
            "proposal": range(len(x)),
            "fidelity": fidelity,
            **{f"alpha.{d}": x[:, i] for i, d in enumerate(exp.domains)},
        }
    )
    out = store.staging(ref)
    rows.to_parquet(out / "rows.parquet", index=False)
    info = {"strategy": "multifidelity", "round": round_index, "spent": used, "done": done}
    return store.publish(ref, out, info=info)


def fidelity_names(exp: Experiment, at: np.ndarray) -> np.ndarray:
    """The configured fidelity ("merge", "run", "long") of each proposed level in `at` (N,)."""
    names = np.array(exp.search.strategies.multifidelity.fidelities)
    return names[np.abs(at[:, None] - np.array(levels(exp))).argmin(axis=1)]  # (N,)


def round_work(exp: Experiment, store: Store, ref: ArtifactRef) -> tuple[list, list, list, bool]:
    """A round's merges (one merge_and_evaluate batch each), the mixtures of its real runs at
    the experts' budget and of its long ones, and whether the search is done."""
    rows = store.load_parquet(ref, "rows.parquet")
    alphas = rows[[f"alpha.{d}" for d in exp.domains]].to_numpy(dtype=float)
    kind = fidelity_names(exp, rows["fidelity"].to_numpy(dtype=float))
    done = bool(store.manifest(ref)["info"]["done"])
    merges = [[a] for a in alphas[kind == "merge"].tolist()]
    return merges, alphas[kind == "run"].tolist(), alphas[kind == "long"].tolist(), done
