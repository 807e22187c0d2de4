"""Stage propose_mixtures: which merges the flow evaluates, round by round.

A run evaluates `search.n_mixtures` merges in rounds of `search.batch_size`: round r holds the
positions [r * B, (r + 1) * B) of the run. The first K + 1 positions are the initial design
(the vertices, i.e. the experts themselves, and uniform; evaluated whatever the bounds); the
others are proposed by the strategy `search.strategy` inside the per-domain bounds from the
history, i.e. every row scored in earlier rounds plus the imported runs, with the utility (the
weighted mean of the capability groups) as the value to maximise.

`random` is blind to the history: its rounds are slices of one fixed plan
(`evaluation_mixtures`, Dirichlet draws from the experiment's seed), so the flow proposes and
evaluates every round at once, one merge_and_evaluate task per round - the very batches, and
store keys, of the flow before strategies were wired in. Every other strategy is adaptive:
round r is proposed from the scores of rounds < r (the strategy's seed is drawn from the
experiment's seed and the round), and each of its proposals is a task of its own, so a round
still keeps every worker busy.

Each round's proposals are an artifact, `proposals/round-<hash>/rows.parquet` with columns
strategy, source (initial or proposed), round, proposal (index in the round), position (in
the run) and alpha.<domain>; its address covers the config slice, the round, the evaluations
it saw and the strategy's inputs, so a rerun finds it and proposes nothing anew. The surrogate
stage joins these rows to the scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from parammix_core.config import Experiment
from parammix_core.search.base import History, strategy_from_config
from parammix_core.search.common import SearchError
from parammix_core.search.common import utility as group_utility
from parammix_core.stages.common import dump_config
from parammix_core.stages.evaluate import evaluation_mixtures, initial_design, load_rows
from parammix_core.stages.imports import load_imported
from parammix_core.stages.search_inputs import strategy_inputs
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store

PROPOSAL_COLUMNS = ["strategy", "source", "round", "proposal", "position"]


def adaptive(exp: Experiment) -> bool:
    """Whether round r needs the scores of rounds < r (every strategy but random)."""
    return exp.search.strategy != "random"


def n_rounds(exp: Experiment) -> int:
    return math.ceil(exp.search.n_mixtures / exp.search.batch_size)


def round_positions(exp: Experiment, round_index: int) -> range:
    """Positions in the run of round `round_index`'s mixtures."""
    if not 0 <= round_index < n_rounds(exp):
        raise SearchError(f"round {round_index} is outside 0..{n_rounds(exp) - 1}")
    size = exp.search.batch_size
    return range(round_index * size, min((round_index + 1) * size, exp.search.n_mixtures))


def round_seed(exp: Experiment, round_index: int) -> int:
    return int(np.random.SeedSequence([exp.seed, round_index]).generate_state(1)[0])


def proposals_ref(
    exp: Experiment,
    round_index: int,
    evals: Sequence[ArtifactRef] = (),
    inputs: ArtifactRef | None = None,
    imported: ArtifactRef | None = None,
) -> ArtifactRef:
    cfg = exp.search
    spec = {
        "strategy": cfg.strategy,
        "settings": dump_config(getattr(cfg.strategies, cfg.strategy)),
        "n_mixtures": cfg.n_mixtures,
        "batch_size": cfg.batch_size,
        "bounds": {d: dump_config(b) for d, b in cfg.bounds.items()},
        "domains": exp.domains,
        "seed": exp.seed,
        "round": round_index,
    }
    if adaptive(exp):  # what random proposes depends on none of these
        spec.update(
            groups=exp.evaluation.groups,
            group_weights=cfg.group_weights,
            evals=[e.key for e in evals],
            inputs=inputs.key if inputs is not None else None,
            imported=imported.key if imported is not None else None,
        )
    return ArtifactRef.for_spec("proposals", "round", spec, code=code_version("proposals"))


def history(
    exp: Experiment,
    store: Store,
    evals: Sequence[ArtifactRef],
    imported: ArtifactRef | None = None,
) -> tuple[History, int]:
    """Evaluated, then imported, mixtures with their utilities and measured costs (seconds,
    when every row has one: imported runs do not); and how many were evaluated."""
    frames = [load_rows(store, evals)] if evals else []
    n_evaluated = len(frames[0]) if frames else 0
    if imported is not None:
        frames.append(load_imported(store, imported))
    if not frames:
        return History.empty(len(exp.domains)), 0
    rows = pd.concat(frames, ignore_index=True)
    x = rows[[f"alpha.{d}" for d in exp.domains]].to_numpy(dtype=float)  # (N, K)
    groups = {g: rows[f"group.{g}"].to_numpy(dtype=float) for g in exp.evaluation.groups}
    y = group_utility(groups, exp.search.group_weights or None)
    return History(x, y, measured_costs(rows)), n_evaluated


def measured_costs(rows: pd.DataFrame) -> np.ndarray | None:
    """Each row's measured seconds (N,), or None unless every row has a positive one."""
    if "seconds" not in rows:
        return None
    seconds = rows["seconds"].to_numpy(dtype=float)
    return seconds if (np.isfinite(seconds) & (seconds > 0)).all() else None


def propose(
    exp: Experiment,
    store: Store,
    round_index: int,
    evals: Sequence[ArtifactRef] = (),
    inputs: ArtifactRef | None = None,
    imported: ArtifactRef | None = None,
) -> ArtifactRef:
    """Round `round_index`'s mixtures; `evals` must be the evaluations of every earlier round
    (adaptive strategies only, in order)."""
    ref = proposals_ref(exp, round_index, evals, inputs, imported)
    if store.exists(ref):
        return ref
    positions = round_positions(exp, round_index)
    k = len(exp.domains)
    if adaptive(exp):
        x = _adaptive_round(exp, store, round_index, positions, evals, inputs, imported)
    else:
        x = evaluation_mixtures(exp)[positions.start : positions.stop]
    rows = pd.DataFrame(
        {
            "strategy": exp.search.strategy,
            "source": ["initial" if p < k + 1 else "proposed" for p in positions],
            "round": round_index,
            "proposal": range(len(positions)),
            "position": list(positions),
            **{f"alpha.{d}": x[:, i] for i, d in enumerate(exp.domains)},
        }
    )
    out = store.staging(ref)
    rows.to_parquet(out / "rows.parquet", index=False)
    return store.publish(ref, out, info={"strategy": exp.search.strategy, "round": round_index})


def _adaptive_round(
    exp: Experiment,
    store: Store,
    round_index: int,
    positions: range,
    evals: Sequence[ArtifactRef],
    inputs: ArtifactRef | None,
    imported: ArtifactRef | None,
) -> np.ndarray:
    """The initial design's share of the round, then the strategy's proposals (n, K)."""
    k = len(exp.domains)
    seen, n_evaluated = history(exp, store, evals, imported)
    if n_evaluated != positions.start:
        raise SearchError(
            f"round {round_index} proposes from the {positions.start} mixture(s) of earlier "
            f"rounds; the {len(evals)} evaluation artifact(s) given hold {n_evaluated}"
        )
    design = initial_design(k)[positions.start : min(positions.stop, k + 1)]
    n_new = len(positions) - len(design)
    if n_new == 0:
        return design
    strategy = strategy_from_config(
        exp.search,
        exp.domains,
        round_seed(exp, round_index),
        **strategy_inputs(exp, store, inputs),
    )
    proposed = strategy.propose(seen, n_new)  # (n_new, K)
    return np.vstack([design, proposed])


def load_proposals(store: Store, refs: Sequence[ArtifactRef]) -> pd.DataFrame:
    return pd.concat([store.load_parquet(r, "rows.parquet") for r in refs], ignore_index=True)


def round_batches(exp: Experiment, store: Store, ref: ArtifactRef) -> list[list[list[float]]]:
    """The round's mixtures as merge_and_evaluate batches: one batch for random (the fixed
    plan's), one mixture per batch for adaptive rounds (all workers busy)."""
    rows = store.load_parquet(ref, "rows.parquet")
    alphas = rows[[f"alpha.{d}" for d in exp.domains]].to_numpy(dtype=float).tolist()
    return [[a] for a in alphas] if adaptive(exp) else [alphas]
