"""MergeMix: learn the mixture by gradient descent on a dev-set loss through its merge.

theta(alpha) = theta_base + sum_k w_k(alpha) tau_k is differentiable in the data mixture alpha
(w = alpha for experts trained on one domain, affine in alpha with `training.replay`:
`merge.replay`), so a held-out loss of the merged model can be minimised over alpha directly -
a few hundred forward/backward passes, no retraining, no surrogate. The weights stay on the
simplex by mirror descent (exponentiated gradient; a KL projection keeps per-domain floors and
caps), the constraint-respecting counterpart of alpha = softmax(w). Steps are AdaGrad-
normalised by the gradient's largest entry, so `lr` means the same for a loss of any scale; the
best alpha seen is returned (the objective is not convex in general).

`merged_loss_objective` (LM loss on token blocks) and `merged_pair_objective` (the NLL of
benchmark answers given their prompts) build such a loss for a transformers causal LM with
`torch.func.functional_call`: the merged tensors are passed in, the model's own weights are never
written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.func import functional_call

from parammix_core import simplex
from parammix_core.objective import lm_inputs
from parammix_core.search.base import OneShotStrategy, kl_project, project
from parammix_core.search.common import SearchError
from parammix_core.search.pairs import PairBatch, continuation_logprobs

Objective = Callable[[torch.Tensor], torch.Tensor]  # alpha (K,) float64 -> scalar loss


def learn_merge_weights(
    objective: Objective,
    k: int,
    steps: int = 200,
    lr: float = 0.5,
    seed: int = 0,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> np.ndarray:
    """The alpha (K,) with the lowest objective seen along mirror descent from the uniform mix.

    Args:
        objective: differentiable loss of alpha (a float64 tensor (K,)); lower is better.
        k: number of experts.
        steps: gradient steps.
        lr: step size in units of the (normalised) gradient.
        seed: seeds torch's RNG around the run (dropout or batch sampling in the objective).
        lo, hi: per-domain floors and caps (K,); None means [0, 1].
    """
    if steps < 1 or not lr > 0:
        raise SearchError(f"mergemix: need steps >= 1 and lr > 0; got steps={steps}, lr={lr}")
    lo = np.zeros(k) if lo is None else np.asarray(lo, dtype=float)
    hi = np.ones(k) if hi is None else np.asarray(hi, dtype=float)
    alpha = kl_project(simplex.uniform(k), lo, hi)
    best, best_loss = alpha, np.inf
    sum_sq = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(steps + 1):
            a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
            loss = objective(a)
            if loss.ndim != 0 or not torch.isfinite(loss):
                raise SearchError(f"mergemix: objective gave {loss!r} at alpha={alpha.tolist()}")
            if loss.item() < best_loss:
                best, best_loss = alpha, loss.item()
            if step == steps:
                break
            (grad,) = torch.autograd.grad(loss, a)
            g = grad.numpy()  # (K,)
            sum_sq += float(np.abs(g).max()) ** 2
            if sum_sq == 0.0:  # flat: every alpha is as good
                break
            alpha = kl_project(alpha * np.exp(-lr * (g - g.min()) / np.sqrt(sum_sq)), lo, hi)
    return best


MergedParams = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # alpha (K,) -> theta(alpha)


def merged_params(
    base_state: Mapping[str, torch.Tensor],
    expert_states: Sequence[Mapping[str, torch.Tensor]],
    replay: float = 0.0,
) -> MergedParams:
    """theta(alpha) as a state dict, differentiable in the data mixture alpha: every
    floating-point tensor of the base merged at alpha's merge weights (the experts' `replay`,
    `merge.replay`), the rest (integer buffers) taken from the base."""
    if not expert_states:
        raise SearchError("mergemix: no expert states")
    names = [n for n, t in base_state.items() if t.is_floating_point()]
    for i, e in enumerate(expert_states):
        missing = [n for n in names if n not in e]
        if missing:
            raise SearchError(f"mergemix: expert {i} lacks tensor(s) {missing[:5]}")
        bad = [n for n in names if e[n].shape != base_state[n].shape]
        if bad:
            raise SearchError(f"mergemix: expert {i} differs in shape for tensor(s) {bad[:5]}")
    base = {n: base_state[n].detach() for n in names}
    taus = {n: torch.stack([e[n].detach() - base[n] for e in expert_states]) for n in names}
    fixed = {n: t for n, t in base_state.items() if not t.is_floating_point()}

    def params(alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        if alpha.shape != (len(expert_states),):
            raise SearchError(
                f"mergemix: alpha has shape {tuple(alpha.shape)}; expected ({len(expert_states)},)"
            )
        w = (alpha - replay / len(alpha)) / (1.0 - replay)  # merge_weights, in torch
        out = dict(fixed)
        for n, b in base.items():
            out[n] = b + torch.tensordot(w.to(b.dtype), taus[n], dims=1)  # base shape
        return out

    return params


def merged_loss_objective(
    model: torch.nn.Module,
    base_state: Mapping[str, torch.Tensor],
    expert_states: Sequence[Mapping[str, torch.Tensor]],
    batches: Sequence[torch.Tensor | Mapping[str, torch.Tensor]],
    replay: float = 0.0,
) -> Objective:
    """Mean causal-LM loss of theta(alpha) on `batches`, differentiable in alpha.

    Args:
        model: a transformers causal LM with the base's architecture (its weights are unused
            for every merged tensor, never modified); put it in eval mode to switch off dropout.
        base_state, expert_states: state dicts keyed as the model names its tensors (each tied
            parameter once; `parammix_core.model.load_state`); see `merged_params`.
        batches: token ids (B, T) (labels = the ids; the LM loss alone, no MoE router loss),
            or dicts of model inputs with `labels`.
        replay: the experts' `training.replay` (see `merged_params`).
    """
    if not batches:
        raise SearchError("mergemix: no batches to compute the loss on")
    params = merged_params(base_state, expert_states, replay)
    inputs = [b if isinstance(b, Mapping) else lm_inputs(model, b) for b in batches]

    def objective(alpha: torch.Tensor) -> torch.Tensor:
        theta = params(alpha)
        losses = [functional_call(model, theta, args=(), kwargs=dict(x)).loss for x in inputs]
        return torch.stack(losses).mean()

    return objective


def merged_pair_objective(
    model: torch.nn.Module,
    base_state: Mapping[str, torch.Tensor],
    expert_states: Sequence[Mapping[str, torch.Tensor]],
    batches: Sequence[PairBatch],
    replay: float = 0.0,
) -> Objective:
    """sum_s w_s * -log p(continuation_s | context_s) under theta(alpha): the weighted NLL of
    the gold answers (weights summing to 1), the quantity MixMin mixes; differentiable in alpha.

    Args:
        model, base_state, expert_states: see `merged_loss_objective`.
        batches: the target pairs on the model's device (`pairs.pair_batches`).
        replay: the experts' `training.replay` (see `merged_params`).
    """
    if not batches:
        raise SearchError("mergemix: no batches to compute the loss on")
    params = merged_params(base_state, expert_states, replay)

    def objective(alpha: torch.Tensor) -> torch.Tensor:
        theta = params(alpha)
        total = torch.zeros((), dtype=torch.float64, device=batches[0].weights.device)
        for b in batches:
            kwargs = {"input_ids": b.input_ids, "attention_mask": b.attention_mask}
            logits = functional_call(model, theta, args=(), kwargs={**kwargs, "use_cache": False})
            total = total - (b.weights * continuation_logprobs(logits.logits, b)).sum()
        return total

    return objective


class MergeMixStrategy(OneShotStrategy):
    """Proposes the learned merge weights for a differentiable objective.

    Args:
        objective: e.g. `merged_loss_objective(...)` on benchmark-like dev data.
        steps, lr: see `learn_merge_weights`.
        optimum: weights learned before, instead of `objective`: learning costs `steps`
            forward/backward passes of the merged model, so the flow learns them once per
            experiment and proposes from them round after round.
    """

    name = "mergemix"

    def __init__(
        self,
        k: int,
        lo=None,
        hi=None,
        seed: int = 0,
        objective: Objective | None = None,
        steps: int = 200,
        lr: float = 0.5,
        optimum: np.ndarray | None = None,
    ):
        super().__init__(k, lo, hi, seed)
        if (objective is None) == (optimum is None):
            raise SearchError("mergemix: needs a differentiable objective of alpha or an optimum")
        if optimum is not None:
            w = np.asarray(optimum, dtype=float)
            if w.shape != (k,):
                raise SearchError(f"mergemix: optimum has shape {w.shape}; expected ({k},)")
            self.optimum = project(w, self.lo, self.hi)[0]  # (K,)
        else:
            self.optimum = learn_merge_weights(objective, k, steps, lr, seed, self.lo, self.hi)
