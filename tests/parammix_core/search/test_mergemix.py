"""MergeMix: gradient through the merge finds known merge weights (quadratic and pico Llama)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from parammix_core.config import ModelConfig
from parammix_core.merge import linear_merge
from parammix_core.model import build_model
from parammix_core.search import History, SearchError, get_strategy
from parammix_core.search.mergemix import learn_merge_weights, merged_loss_objective

TRUE = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)


def test_learns_the_minimiser_of_a_quadratic():
    a = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alpha = learn_merge_weights(lambda w: ((a @ (w - TRUE)) ** 2).sum(), k=3, steps=300)
    np.testing.assert_allclose(alpha, TRUE.numpy(), atol=0.01)


def test_bounds_hold_and_bind():
    lo, hi = np.array([0.0, 0.25, 0.0]), np.array([0.5, 1.0, 1.0])
    alpha = learn_merge_weights(lambda w: ((w - TRUE) ** 2).sum(), k=3, steps=300, lo=lo, hi=hi)
    assert (alpha >= lo - 1e-9).all() and (alpha <= hi + 1e-9).all()
    np.testing.assert_allclose(alpha, [0.5, 0.25, 0.25], atol=0.01)


@pytest.fixture(scope="module")
def pico():
    """A pico Llama, three experts = base + random task vectors, and token batches."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=2,
        intermediate_size=32,
        attn_implementation="eager",
    )
    model = build_model(cfg, 32, 16, seed=0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    base = {n: t.detach().clone() for n, t in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    experts = [
        {
            n: t + 0.3 * torch.randn(t.shape, generator=g) if t.is_floating_point() else t
            for n, t in base.items()
        }
        for _ in range(3)
    ]
    batches = [torch.randint(3, 32, (4, 16), generator=g) for _ in range(2)]
    return model, base, experts, batches


def loaded_loss(model, merged, batches) -> torch.Tensor:
    """The mean LM loss of the model with the merged weights passed in."""
    with torch.no_grad():
        return torch.stack(
            [
                functional_call(model, merged, args=(), kwargs={"input_ids": b, "labels": b}).loss
                for b in batches
            ]
        ).mean()


def test_merged_loss_matches_the_loaded_merge_and_leaves_the_model_alone(pico):
    model, base, experts, batches = pico
    before = {n: t.clone() for n, t in model.state_dict().items()}
    objective = merged_loss_objective(model, base, experts, batches)
    alpha = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64, requires_grad=True)
    loss = objective(alpha)
    (grad,) = torch.autograd.grad(loss, alpha)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    for n, t in model.state_dict().items():
        assert torch.equal(t, before[n]), n
    merged = linear_merge(base, experts, [0.2, 0.5, 0.3])
    want = loaded_loss(model, merged, batches)
    assert abs(loss.item() - want.item()) < 1e-5


def test_with_replay_the_objective_of_a_mixture_is_the_loss_of_its_merge(pico):
    model, base, experts, batches = pico
    objective = merged_loss_objective(model, base, experts, batches, replay=0.3)
    loss = objective(torch.tensor([0.8, 0.2, 0.0], dtype=torch.float64))
    # merged at (alpha - 0.3 / 3) / 0.7: (1, 1/7, -1/7), past the third expert
    merged = linear_merge(base, experts, [1.0, 1 / 7, -1 / 7])
    want = loaded_loss(model, merged, batches)
    assert abs(loss.item() - want.item()) < 1e-5
    plain = merged_loss_objective(model, base, experts, batches)  # merged at alpha itself
    assert (
        abs(plain(torch.tensor([0.8, 0.2, 0.0], dtype=torch.float64)).item() - want.item()) > 1e-3
    )


def test_learns_known_merge_weights_on_a_pico_llama(pico):
    """Dev loss = KL from the model merged at TRUE: its only minimiser is TRUE."""
    model, base, experts, batches = pico
    target = linear_merge(base, experts, TRUE.numpy())
    with torch.no_grad():
        want = [functional_call(model, target, (b,)).logits.log_softmax(-1) for b in batches]
    names = [n for n, t in base.items() if t.is_floating_point()]

    def objective(alpha):
        params = {
            n: base[n]
            + sum(a.float() * (e[n] - base[n]) for a, e in zip(alpha, experts, strict=True))
            for n in names
        }
        kls = [
            torch.nn.functional.kl_div(
                functional_call(model, params, (b,)).logits.log_softmax(-1),
                w,
                log_target=True,
                reduction="batchmean",
            )
            for b, w in zip(batches, want, strict=True)
        ]
        return torch.stack(kls).mean()

    s = get_strategy("mergemix", k=3, seed=0, objective=objective, steps=200, lr=0.5)
    np.testing.assert_allclose(s.optimum, TRUE.numpy(), atol=0.03)
    np.testing.assert_allclose(s.propose(History.empty(3), 1)[0], s.optimum, atol=1e-12)


def test_merged_loss_names_the_missing_tensor(pico):
    model, base, experts, batches = pico
    broken = dict(experts[1])
    name = next(iter(broken))
    del broken[name]
    with pytest.raises(SearchError, match=rf"expert 1 lacks tensor\(s\) \['{name}'\]"):
        merged_loss_objective(model, base, [experts[0], broken], batches)
