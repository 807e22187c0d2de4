"""Stage search_inputs: what MixMin, MergeMix and DeMix need beyond the scores, computed once.

Target data: the first `search.target_sequences` held-out blocks of every domain, the same
blocks the `loss.<domain>` metrics are measured on and whose texts the built-in benchmarks are
generated from, equally many per domain. So the target is the even mixture of the domains'
held-out data: both strategies ask which merge weights best model it.

- mixmin: `logprobs.safetensors`, the log-probability (K, S) of each target block (summed over
  its predicted tokens) under each expert. The MixMin objective over alpha is convex in these
  numbers; solving it takes milliseconds, so each round solves it again.
- mergemix: `dev.safetensors`, the target blocks as dev batches (S, T), and `mergemix.json`,
  the merge weights learned by gradient descent on their loss through the merge. Learning
  costs `steps` forward/backward passes of the merged model, so it happens here, once; the
  rounds propose from the stored weights.
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
from parammix_core.search import SearchError, strategy_from_config
from parammix_core.search.mergemix import merged_loss_objective
from parammix_core.search.mixmin import mixture_nll, sequence_logprobs
from parammix_core.stages.common import dump_config, merge_states
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


def target_blocks(exp: Experiment, heldout: dict[str, torch.Tensor]) -> torch.Tensor:
    """The first `search.target_sequences` held-out blocks of every domain, (S, T) int64."""
    n = exp.search.target_sequences
    empty = [d for d in exp.domains if heldout[d].shape[0] == 0]
    if empty:
        raise SearchError(f"no held-out blocks for domain(s) {empty}: nothing to target")
    return torch.cat([heldout[d][:n] for d in exp.domains]).long()


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
    blocks = target_blocks(exp, load_prepared(store.local_dir(data)).heldout)  # (S, T)
    out = store.staging(ref)
    info: dict[str, Any] = {"sequences": int(blocks.shape[0]), "tokens": int(blocks.shape[1])}
    if exp.search.strategy == "mixmin":
        rows = []
        for e in experts:
            model = load_model(str(store.local_dir(e)), exp.model, device)
            rows.append(sequence_logprobs(model, blocks, exp.evaluation.batch_size, device))
        logprobs = np.stack(rows)  # (K, S)
        save_file({"logprobs": torch.from_numpy(logprobs)}, str(out / "logprobs.safetensors"))
        info["mean_logprob"] = dict(zip(exp.domains, logprobs.mean(axis=1).tolist(), strict=True))
        info["uniform_nll"] = mixture_nll(logprobs, np.full(len(experts), 1 / len(experts)))
    else:
        save_file({"input_ids": blocks}, str(out / "dev.safetensors"))
        objective = _dev_objective(exp, store, base, experts, blocks, device)
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


def _dev_objective(
    exp: Experiment,
    store: Store,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    blocks: torch.Tensor,
    device: torch.device,
):
    """Mean loss of theta(alpha) on the dev blocks, differentiable in alpha."""
    model = load_model(str(store.local_dir(base)), exp.model, device)
    base_state, states = merge_states(exp, store, base, experts, device)
    size = exp.evaluation.batch_size
    batches = [blocks[i : i + size].to(device) for i in range(0, blocks.shape[0], size)]
    return merged_loss_objective(model, base_state, states, batches)


def strategy_inputs(exp: Experiment, store: Store, ref: ArtifactRef | None) -> dict[str, Any]:
    """Keyword inputs of `strategy_from_config` for the configured strategy."""
    if not needs_inputs(exp):
        return {}
    if ref is None:
        raise SearchError(
            f"search.strategy {exp.search.strategy!r} needs the search_inputs stage's artifact"
        )
    if exp.search.strategy == "mixmin":
        logprobs = store.load_tensors(ref, "logprobs.safetensors", "cpu")["logprobs"]
        return {"logprobs": logprobs.numpy()}
    if exp.search.strategy == "demix":
        prior = store.load_json(ref, "prior.json")["prior"]
        return {"prior": np.array([prior[d] for d in exp.domains])}
    return {"optimum": np.asarray(store.load_json(ref, "mergemix.json")["optimum"])}
