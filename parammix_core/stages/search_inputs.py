"""Stage search_inputs: what MixMin, MergeMix and DeMix need beyond the scores, computed once.

Target data (`search.target`, `stages.search_target`): by default the evaluation tasks'
documents, each one's gold answer given its prompt, weighted so every capability group counts
as in the utility: both strategies then optimise what the utility measures (the MixMin paper's
"NLL of target-task data"). `heldout` is the even mixture of the domains' held-out blocks (the
first `search.target_sequences` of each; before targets were configurable, the only one, and
on it a merge of near-uniform weights is about the best: the target is itself uniform); a
corpus of your own is packed into blocks like the domain corpora.

- mixmin: `logprobs.safetensors`, the log-probability (K, S) of each target sequence under each
  expert: a block's summed over its predicted tokens, a task document's over its gold answer's
  tokens only, with `weights` (S,) beside it for the tasks target. The MixMin objective over
  alpha is convex in these numbers; solving it takes milliseconds, so each round solves it
  again.
- mergemix: `mergemix.json`, the mixture learned by gradient descent through its merge on
  the target's loss (blocks: the mean LM loss, also stored as `dev.safetensors` (S, T); task
  documents: the weighted NLL of their gold answers). Learning costs `steps`
  forward/backward passes of the merged model, so it happens here, once; the rounds propose
  from the stored weights.
- demix: `prior.json`, the domains' natural proportions (`data.natural_weights` of the prepared
  corpora, the "natural" baseline of the choice), which DeMix samples around and caps usage by.
  It depends on the prepared data only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from parammix_core.config import Experiment
from parammix_core.data import load_prepared, natural_weights
from parammix_core.model import load_model, resolve_device
from parammix_core.search.base import strategy_from_config
from parammix_core.search.common import SearchError
from parammix_core.search.mergemix import merged_loss_objective, merged_pair_objective
from parammix_core.search.mixmin import mixture_nll, sequence_logprobs
from parammix_core.search.pairs import pair_logprobs
from parammix_core.stages.common import dump_config, merge_states
from parammix_core.stages.search_target import Target, load_target, target_spec
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json

NEEDS_INPUTS = ("mixmin", "mergemix", "demix")


def needs_inputs(exp: Experiment) -> bool:
    return exp.search.strategy in NEEDS_INPUTS


def inputs_ref(
    exp: Experiment, data: ArtifactRef, base: ArtifactRef, experts: Sequence[ArtifactRef]
) -> ArtifactRef:
    strategy = exp.search.strategy
    if strategy not in NEEDS_INPUTS:
        raise SearchError(f"search.strategy {strategy!r} needs no inputs from the experts")
    if strategy == "demix":  # the natural proportions depend on the prepared data alone
        prior_spec = {"data": data.key}
        return ArtifactRef.for_spec(
            "search_inputs", strategy, prior_spec, code=code_version("search_inputs")
        )
    spec: dict[str, Any] = {
        "strategy": strategy,
        "sequences": exp.search.target_sequences,
        "target": target_spec(exp),
        "batch_size": exp.evaluation.batch_size,
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
    }
    if strategy == "mergemix":  # the learned weights are part of the artifact
        spec.update(
            settings=dump_config(exp.search.strategies.mergemix),
            bounds={d: dump_config(b) for d, b in exp.search.bounds.items()},
            seed=exp.seed,
        )
    return ArtifactRef.for_spec("search_inputs", strategy, spec, code=code_version("search_inputs"))


def search_inputs(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
) -> ArtifactRef:
    ref = inputs_ref(exp, data, base, experts)
    if store.exists(ref):
        return ref
    if exp.search.strategy == "demix":
        return _publish_prior(exp, store, data, ref)
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    base_model = load_model(str(store.local_dir(base)), exp.model, device)
    target = load_target(exp, store, data, prepared, base_model)
    out = store.staging(ref)
    info: dict[str, Any] = {"target": _target_name(exp), "sequences": target.size}
    if target.blocks is not None:
        info["tokens"] = int(target.blocks.shape[1])
    if exp.search.strategy == "mixmin":
        logprobs = np.stack([_logprobs(exp, store, e, target, device) for e in experts])  # (K, S)
        tensors = {"logprobs": torch.from_numpy(logprobs)}
        if target.weights is not None:
            tensors["weights"] = torch.from_numpy(target.weights)
        save_file(tensors, str(out / "logprobs.safetensors"))
        info["mean_logprob"] = dict(zip(exp.domains, logprobs.mean(axis=1).tolist(), strict=True))
        uniform = np.full(len(experts), 1 / len(experts))
        info["uniform_nll"] = mixture_nll(logprobs, uniform, target.weights)
    else:
        if target.blocks is not None:
            save_file({"input_ids": target.blocks}, str(out / "dev.safetensors"))
        objective = _dev_objective(exp, store, base, experts, base_model, target, device)
        strategy = strategy_from_config(exp.search, exp.domains, exp.seed, objective=objective)
        optimum = strategy.optimum.tolist()
        with torch.no_grad():
            uniform = objective(torch.full((len(experts),), 1 / len(experts), dtype=torch.float64))
            learned = objective(torch.tensor(optimum, dtype=torch.float64))
        learned_json = {"optimum": optimum, "dev_loss": learned.item()}
        (out / "mergemix.json").write_text(canonical_json(learned_json))
        info.update(alpha=dict(zip(exp.domains, optimum, strict=True)))
        info.update(dev_loss=learned.item(), uniform_dev_loss=uniform.item())
    return store.publish(ref, out, info=info)


def _publish_prior(
    exp: Experiment, store: Store, data: ArtifactRef, ref: ArtifactRef
) -> ArtifactRef:
    """DeMix's prior: the natural proportions of the prepared domains, as `prior.json`."""
    natural = natural_weights(store.load_json(data, "stats.json"))
    prior = {d: natural[d] for d in exp.domains}
    out = store.staging(ref)
    (out / "prior.json").write_text(canonical_json({"prior": prior}))
    return store.publish(ref, out, info={"prior": prior})


def _target_name(exp: Experiment) -> str:
    return exp.search.target if isinstance(exp.search.target, str) else "corpus"


def _logprobs(
    exp: Experiment, store: Store, expert: ArtifactRef, target: Target, device: torch.device
) -> np.ndarray:
    """One expert's log-probability of every target sequence, (S,)."""
    model = load_model(str(store.local_dir(expert)), exp.model, device)
    if target.blocks is not None:
        return sequence_logprobs(model, target.blocks, exp.evaluation.batch_size, device)
    return pair_logprobs(model, target.batches, device)


def _dev_objective(
    exp: Experiment,
    store: Store,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    model: torch.nn.Module,
    target: Target,
    device: torch.device,
):
    """The target's loss under theta(alpha), differentiable in alpha."""
    base_state, states = merge_states(exp, store, base, experts, device)
    replay = exp.training.replay
    if target.blocks is None:
        batches = [b.to(device) for b in target.batches]
        return merged_pair_objective(model, base_state, states, batches, replay)
    size = exp.evaluation.batch_size
    blocks = target.blocks
    batches = [blocks[i : i + size].to(device) for i in range(0, blocks.shape[0], size)]
    return merged_loss_objective(model, base_state, states, batches, replay)


def strategy_inputs(exp: Experiment, store: Store, ref: ArtifactRef | None) -> dict[str, Any]:
    """Keyword inputs of `strategy_from_config` for the configured strategy."""
    if not needs_inputs(exp):
        return {}
    if ref is None:
        raise SearchError(
            f"search.strategy {exp.search.strategy!r} needs the search_inputs stage's artifact"
        )
    if exp.search.strategy == "mixmin":
        tensors = store.load_tensors(ref, "logprobs.safetensors", "cpu")
        weights = tensors.get("weights")
        return {
            "logprobs": tensors["logprobs"].numpy(),
            "weights": None if weights is None else weights.numpy(),
            "replay": exp.training.replay,
        }
    if exp.search.strategy == "demix":
        prior = store.load_json(ref, "prior.json")["prior"]
        return {"prior": np.array([prior[d] for d in exp.domains])}
    return {"optimum": np.asarray(store.load_json(ref, "mergemix.json")["optimum"])}
