"""(context, continuation) pairs: padded batches score each pair as a lone forward pass does,
truncation as lm-eval's HFLM cuts, and MergeMix's pair objective is the weighted answer NLL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from parammix_core.config import ModelConfig
from parammix_core.merge import linear_merge
from parammix_core.model import build_model
from parammix_core.search import SearchError
from parammix_core.search.mergemix import merged_pair_objective
from parammix_core.search.pairs import pair_batches, pair_logprobs

MAX_LENGTH = 16


@pytest.fixture(scope="module")
def pico():
    cfg = ModelConfig(
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=2,
        intermediate_size=32,
        attn_implementation="eager",
    )
    model = build_model(cfg, 32, MAX_LENGTH, seed=0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return model.eval()


def pairs_of(seed: int, n: int) -> list[tuple[list[int], list[int]]]:
    """Contexts of 1..20 tokens (some longer than the model's context), answers of 1..4."""
    g = np.random.default_rng(seed)
    return [
        (
            g.integers(3, 32, g.integers(1, 21)).tolist(),
            g.integers(3, 32, g.integers(1, 5)).tolist(),
        )
        for _ in range(n)
    ]


def direct_logprob(model, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) by one unpadded forward pass on lm-eval's window: the last
    MAX_LENGTH + 1 tokens, the input all but the last."""
    whole = (context + continuation)[-(MAX_LENGTH + 1) :]
    with torch.no_grad():
        logits = model(torch.tensor([whole[:-1]])).logits[0].double()  # (L, V)
    log_p = torch.log_softmax(logits, dim=-1)
    n = len(continuation)
    return sum(log_p[len(whole) - 1 - n + j, continuation[j]].item() for j in range(n))


def test_padded_batches_score_each_pair_as_alone(pico):
    pairs = pairs_of(0, 7)
    assert any(len(c) + len(a) > MAX_LENGTH + 1 for c, a in pairs)  # truncation is exercised
    batches = pair_batches(pairs, np.full(7, 1 / 7), MAX_LENGTH, batch_size=3)
    assert [b.input_ids.shape[0] for b in batches] == [3, 3, 1]
    got = pair_logprobs(pico, batches, "cpu")  # (7,)
    want = [direct_logprob(pico, c, a) for c, a in pairs]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert (got < 0).all()


def test_pairs_the_model_cannot_score_are_refused():
    with pytest.raises(SearchError, match="document 1's answer has 5 tokens"):
        pair_batches([([3], [4]), ([3], [5] * 5)], np.full(2, 0.5), max_length=4, batch_size=2)
    with pytest.raises(SearchError, match="document 0 has an empty context"):
        pair_batches([([], [4])], np.ones(1), max_length=4, batch_size=2)


def test_merged_pair_objective_is_the_weighted_answer_nll_of_the_merge(pico):
    base = {n: t.detach().clone() for n, t in pico.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    experts = [
        {
            n: t + 0.3 * torch.randn(t.shape, generator=g) if t.is_floating_point() else t
            for n, t in base.items()
        }
        for _ in range(2)
    ]
    pairs = pairs_of(1, 5)
    weights = np.array([0.4, 0.1, 0.1, 0.1, 0.3])
    batches = pair_batches(pairs, weights, MAX_LENGTH, batch_size=2)
    objective = merged_pair_objective(pico, base, experts, batches)
    alpha = torch.tensor([0.7, 0.3], dtype=torch.float64, requires_grad=True)
    loss = objective(alpha)
    (grad,) = torch.autograd.grad(loss, alpha)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    merged = linear_merge(base, experts, [0.7, 0.3])
    with torch.no_grad():
        per_pair = [
            direct_logprob(lambda ids: functional_call(pico, merged, (ids,)), c, a)
            for c, a in pairs
        ]
    assert loss.item() == pytest.approx(-(weights @ np.array(per_pair)), rel=1e-5)
