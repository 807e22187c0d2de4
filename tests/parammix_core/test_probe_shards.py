"""The probe at any size: vectors streamed to files, every reduction over parameter slices.

Each streamed or sliced computation is checked against the whole-vector computation the
probe did before (all K^2 vectors in memory, one float64 product), on a small model.
"""

import json
import weakref

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from parammix_core.hvp import flat_params, gradient, hvp
from parammix_core.interference import (
    ProbeError,
    layer_group,
    off_diagonal,
    pair_weights,
    predicted_delta_norms,
    probe,
    task_vector_grams,
)
from parammix_core.probe_shards import INDEX, ProbeShards, grad_name, hg_name, probe_to_shards
from parammix_core.simplex import dirichlet
from tests.parammix_core.test_interference import domain_batches, pico

K = 3


def whole_vector_probe(model, batches):
    """The probe as it was: the K gradients stacked, then H_k of all of them at once, summed
    over domain k's batches and divided by their number."""
    g = torch.stack([gradient(model, bs) for bs in batches.values()])  # (K, P)
    hg = []
    for bs in batches.values():
        acc = torch.zeros_like(g)
        for b in bs:
            acc += hvp(model, b, g).values
        hg.append(acc / len(bs))
    return g, torch.stack(hg)  # (K, P), (K, K, P)


def whole_v(hg: torch.Tensor) -> torch.Tensor:
    """(K^2, P) float64: v_kj = hg_kj - hg_kk formed in float32, then widened, as before."""
    return (hg - hg.diagonal(dim1=0, dim2=1).T[:, None, :]).reshape(K * K, -1).double()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = pico(torch.float32)
    batches = domain_batches(n=2)
    shards = probe_to_shards(model, batches, tmp_path_factory.mktemp("probe"))
    return model, batches, shards, whole_vector_probe(model, batches)


def stored_hg(shards: ProbeShards) -> torch.Tensor:
    return torch.stack([torch.stack([shards.hg(k, j) for j in range(K)]) for k in range(K)])


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_streamed_vectors_equal_the_whole_vector_probe(setup, tmp_path, chunk_size):
    """Files hold exactly what the in-memory probe computed, whatever the group of vectors
    summed at once (chunk_size 2 of K = 3: groups of 2 and 1)."""
    model, batches, first, (g, hg) = setup
    shards = first
    if chunk_size is not None:
        shards = probe_to_shards(model, batches, tmp_path, chunk_size=chunk_size)
    assert shards.domains == ["d0", "d1", "d2"] and shards.method == "double_backward"
    assert shards.n_params == flat_params(model).numel()
    assert torch.equal(shards.grads(), g)
    assert torch.equal(stored_hg(shards), hg)
    in_memory = probe(model, batches, chunk_size=chunk_size)
    assert torch.equal(in_memory.hg, hg) and torch.equal(in_memory.grads, g)
    assert not torch.allclose(hg[0], hg[1], rtol=0.1)


@pytest.mark.parametrize("length", [7, 1000, None])
def test_sliced_norms_and_gram_match_the_whole_vector_product(setup, length):
    _, _, shards, (_, hg) = setup
    flat = whole_v(hg)  # (K^2, P)
    gram = flat @ flat.T
    norms = torch.linalg.vector_norm(hg.double(), dim=-1)  # (K, K)
    summary = shards.summary(length)
    torch.testing.assert_close(summary.gram, gram, rtol=1e-12, atol=1e-12 * float(gram.max()))
    torch.testing.assert_close(summary.hg_norms, norms, rtol=1e-12, atol=0)
    expected = (norms / norms.diagonal()[:, None]).numpy()
    np.testing.assert_allclose(summary.relative_curvature(), expected, rtol=1e-12)
    assert summary.gram.diagonal().reshape(K, K).diagonal().abs().max() == 0  # v_kk = 0
    assert float(summary.gram[1 * K + 2, 1 * K + 2]) > 0


def test_deltas_and_correction_match_whole_vector_combinations(setup):
    _, _, shards, (_, hg) = setup
    flat = whole_v(hg)  # (K^2, P)
    alphas = dirichlet(K, 5, seed=2)  # (5, K)
    weights = torch.from_numpy(np.stack([np.outer(a, a).reshape(-1) for a in alphas]))
    expected = (weights @ flat).float()  # (5, P): d(alpha) as validation formed it
    deltas = shards.deltas(alphas, length=7)
    torch.testing.assert_close(deltas, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
    norms = predicted_delta_norms(alphas, shards.summary(7).gram, 1.0)
    np.testing.assert_allclose(norms, (weights @ flat).norm(dim=1).numpy(), rtol=1e-10)

    correction = shards.correction(torch.float64, "cpu", length=5)  # (K(K-1), P)
    pairs = off_diagonal(K)
    assert correction.shape == (K * (K - 1), flat.shape[1]) and len(pairs) == 6
    for row, (k, j) in zip(correction, pairs, strict=True):
        assert torch.equal(row, flat[k * K + j])
    for a, d in zip(alphas, weights @ flat, strict=True):  # the corrected proxy's addmv
        torch.testing.assert_close(correction.T @ torch.from_numpy(pair_weights(a)), d)


def test_bad_probe_folders_are_named(setup, tmp_path):
    _, _, shards, _ = setup
    with pytest.raises(ProbeError, match=r"no readable .*vectors\.json"):
        ProbeShards(tmp_path)
    (tmp_path / INDEX).write_text('{"domains": ["a", "b", "c"], "method": "double_backward"}')
    with pytest.raises(ProbeError, match=r"no readable .*'parameters'"):
        ProbeShards(tmp_path)
    index = {"domains": ["a", "b", "c"], "method": "x", "parameters": shards.n_params}
    (tmp_path / INDEX).write_text(json.dumps(index))
    (tmp_path / "grads").mkdir()
    (tmp_path / "hg").mkdir()
    for k in range(K):
        save_file({"grad": shards.grads()[k].clone()}, tmp_path / grad_name(k))
        for j in range(K):
            save_file({"hg": shards.hg(k, j)}, tmp_path / hg_name(k, j))
    assert ProbeShards(tmp_path).domains == ["a", "b", "c"]
    (tmp_path / hg_name(1, 2)).unlink()
    with pytest.raises(ProbeError, match=r"hg/1-2\.safetensors is no readable safetensors"):
        ProbeShards(tmp_path)
    save_file({"hg": shards.hg(1, 2)[:-1]}, tmp_path / hg_name(1, 2))
    with pytest.raises(ProbeError, match=r"'hg' has shape \(\d+,\), the probe has \d+ param"):
        ProbeShards(tmp_path)
    save_file({"other": shards.hg(1, 2)}, tmp_path / hg_name(1, 2))
    with pytest.raises(ProbeError, match=r"no tensor 'hg'"):
        ProbeShards(tmp_path)


class State(dict):
    """A state dict whose lifetime can be watched (plain dicts take no weak references)."""


def test_task_vector_grams_hold_two_experts_and_match_float64(tmp_path):
    base = {k: v.clone() for k, v in pico(torch.float32).state_dict().items()}
    g = torch.Generator().manual_seed(3)
    experts = [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()}]
    experts += [{k: v + 0.3 * (experts[0][k] - v) for k, v in base.items()}]
    experts += [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()}]
    alive, peak, loads = set(), [0], []

    def load(i: int) -> State:  # a fresh copy per call, as loading a checkpoint gives
        state = State({k: t.clone() for k, t in experts[i].items()})
        alive.add(id(state))
        weakref.finalize(state, alive.discard, id(state))
        peak[0], _ = max(peak[0], len(alive)), loads.append(i)
        return state

    grams = task_vector_grams(base, load, K)
    assert peak[0] == 2 and len(loads) == K * (K + 1) // 2
    expected: dict[str, torch.Tensor] = {}
    for name, b in base.items():  # the whole-tensor float64 product, per layer group
        d = torch.stack([e[name].double().reshape(-1) - b.double().reshape(-1) for e in experts])
        group = layer_group(name)
        expected[group] = expected.get(group, 0) + d @ d.T
    assert list(grams) == list(expected)  # groups in the order of their first tensor
    for group, gram in grams.items():
        torch.testing.assert_close(gram, expected[group], rtol=1e-12, atol=0)
    whole = sum(grams.values())
    cosine = whole[0, 1] / (whole[0, 0] * whole[1, 1]).sqrt()
    assert float(cosine) == pytest.approx(1.0, abs=1e-12)  # expert 1 = 0.3 x expert 0
