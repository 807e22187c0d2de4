"""What a finished `parammix run` published, found from the config alone, without running.

Every stage's address is computed from the config and the upstream addresses, so the refs a
run produced can be walked again in the flow's order (`flows/param_mix.py`): the prepared data,
the base and the experts, then the search's rounds (a round's proposals are read back from the
store to address its evaluations), the surrogates and the chosen mixture. A missing artifact
means the run did not finish with this config and this code: the error says to run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from parammix_core.config import Experiment
from parammix_core.stages.base import base_ref
from parammix_core.stages.data import data_ref
from parammix_core.stages.evaluate import eval_ref
from parammix_core.stages.experts import expert_ref
from parammix_core.stages.imports import imports_ref
from parammix_core.stages.probe import probe_ref
from parammix_core.stages.proposals import adaptive, n_rounds, proposals_ref, round_batches
from parammix_core.stages.search import choice_ref
from parammix_core.stages.search_inputs import inputs_ref, needs_inputs
from parammix_core.stages.surrogates import surrogate_ref
from parammix_core.store import ArtifactRef, Store, StoreError


class NotPublished(StoreError):
    """An artifact a finished run of this config would have published is not in the store."""


@dataclass(frozen=True)
class Models:
    """The prepared data (its tokenizer), the base and one expert per domain, in config order."""

    data: ArtifactRef
    base: ArtifactRef
    experts: dict[str, ArtifactRef]


def require(store: Store, ref: ArtifactRef, what: str) -> ArtifactRef:
    """`ref` if the store holds it, else an error naming it and saying how to make it."""
    if not store.exists(ref):
        raise NotPublished(
            f"{what} ({ref.path}): not in the store {store.url}; run `parammix run` with "
            "this config first"
        )
    return ref


def published_models(exp: Experiment, store: Store) -> Models:
    data = require(store, data_ref(exp), "the prepared data")
    base = require(store, base_ref(exp, data), "the base model")
    experts = {
        d: require(store, expert_ref(exp, d, data, base), f"the expert of domain {d!r}")
        for d in exp.domains
    }
    return Models(data, base, experts)


def published_choice(exp: Experiment, store: Store, models: Models) -> ArtifactRef:
    """The chosen mixture's artifact, walked as the flow computes it."""
    data, base, experts = models.data, models.base, list(models.experts.values())
    probe = None
    if exp.probe.enabled:
        probe = require(store, probe_ref(exp, data, base, experts), "the interference probe")
    inputs = None
    if needs_inputs(exp):
        inputs = require(store, inputs_ref(exp, data, base, experts), "the search inputs")
    imported = None
    if exp.search.import_runs is not None:
        imported = require(store, imports_ref(exp), "the imported runs")
    merge_probe = probe if exp.evaluation.proxy == "corrected" else None
    rounds: list[ArtifactRef] = []
    evals: list[ArtifactRef] = []
    for r in range(n_rounds(exp)):
        seen = list(evals) if adaptive(exp) else []  # random's rounds see no scores
        ref = proposals_ref(exp, r, seen, inputs, imported)
        rounds.append(require(store, ref, f"the proposals of search round {r}"))
        for batch in round_batches(exp, store, ref):
            ref = eval_ref(exp, batch, data, base, experts, merge_probe)
            evals.append(require(store, ref, f"the evaluation of batch {len(evals)}"))
    surrogates = surrogate_ref(exp, evals, probe, rounds, imported)
    require(store, surrogates, "the surrogates")
    return require(store, choice_ref(exp, surrogates, data, evals), "the chosen mixture")
