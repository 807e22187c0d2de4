import numpy as np
import pytest
import safetensors.torch
import torch

from parammix_core.config import ModelConfig, TrainConfig
from parammix_core.hvp import flat_params, hvp, loss_at, unflatten
from parammix_core.interference import (
    ProbeError,
    ProbeResult,
    ProbeSummary,
    first_order_loss_effect,
    layer_group,
    outer_weights,
    pair_weights,
    per_layer_cosines,
    predicted_delta,
    predicted_delta_norms,
    probe,
    step_scale,
    task_vector_cosines,
)
from parammix_core.merge.replay import expert_mixtures, merge_weights
from parammix_core.model import build_model
from parammix_core.simplex import dirichlet
from parammix_core.train import lr_at

PICO = ModelConfig(hidden_size=16, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=32)
VOCAB = 24
RANGES = [(3, 10), (8, 17), (15, 24)]  # overlapping token ranges: related but distinct domains
MIXTURES = [np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5]), np.full(3, 1 / 3)]


def pico(dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    return build_model(PICO, VOCAB, 16, 0, bos_token_id=1, eos_token_id=2, pad_token_id=0).to(dtype)


def domain_batches(n: int = 1) -> dict[str, list[torch.Tensor]]:
    """n fixed (4, 8) blocks per domain, without the pad token 0."""
    g = torch.Generator().manual_seed(0)
    return {
        f"d{k}": [torch.randint(lo, hi, (4, 8), generator=g) for _ in range(n)]
        for k, (lo, hi) in enumerate(RANGES)
    }


def synthetic(k: int = 3, p: int = 40, seed: int = 0) -> ProbeResult:
    g = torch.Generator().manual_seed(seed)
    domains = [f"d{i}" for i in range(k)]
    return ProbeResult(
        domains, torch.randn(k, p, generator=g), torch.randn(k, k, p, generator=g), "test"
    )


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def sgd_setup():
    model = pico()
    batches = domain_batches()
    return model, batches, probe(model, batches)


def gd(model, batches, weights, etas):
    """Full-batch gradient descent on sum_k w_k L_k from the model's weights, one step of each
    size in `etas`, flat (P,)."""
    x = flat_params(model)
    for eta in etas:
        step = torch.zeros_like(x)
        for w, bs in zip(weights, batches.values(), strict=True):
            if w:
                leaf = x.clone().requires_grad_(True)
                step += (
                    w * torch.autograd.grad(loss_at(model, unflatten(model, leaf), bs[0]), leaf)[0]
                )
        x = x - eta * step
    return x


def merge_vs_mix_error(model, batches, result, etas):
    """Per mixture: cosine, norm ratio, relative error of predicted vs measured mix - merge."""
    theta0 = flat_params(model)
    experts = [gd(model, batches, np.eye(3)[k], etas) for k in range(3)]
    out = []
    for a in MIXTURES:
        merge = theta0 + sum(a[k] * (experts[k] - theta0) for k in range(3))
        measured = gd(model, batches, a, etas) - merge  # (P,)
        predicted = predicted_delta(a, result.v(), step_scale(etas))  # (P,)
        error = float((predicted - measured).norm() / measured.norm())
        out.append((cos(predicted, measured), float(predicted.norm() / measured.norm()), error))
    return out


def test_probe_predicts_merge_vs_mix_for_plain_gradient_descent(sgd_setup):
    model, batches, result = sgd_setup
    assert result.method == "double_backward"  # "auto" on the CPU
    coarse = merge_vs_mix_error(model, batches, result, [1e-3] * 4)
    for cosine, ratio, _ in coarse:
        assert cosine >= 0.95
        assert 0.8 <= ratio <= 1.2
    # the remainder is third order: ten times smaller steps, about ten times smaller relative error
    fine = merge_vs_mix_error(model, batches, result, [1e-4] * 4)
    for (_, _, e_coarse), (_, _, e_fine) in zip(coarse, fine, strict=True):
        assert e_fine < 0.2 * e_coarse


def test_probe_shapes_progress_and_hvp_consistency():
    model = pico(torch.float32)
    batches = domain_batches(n=2)
    calls = []
    result = probe(model, batches, progress=lambda done, total, msg: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]
    assert result.domains == ["d0", "d1", "d2"]
    p = flat_params(model).numel()
    assert result.grads.shape == (3, p) and result.hg.shape == (3, 3, p)
    # hg[1] is the mean of H g over domain 1's two batches
    direct = sum(hvp(model, b, result.grads).values for b in batches["d1"]) / 2
    assert torch.allclose(result.hg[1], direct, rtol=1e-5, atol=1e-7)
    # H_k symmetric: g_i . H_k g_j = g_j . H_k g_i
    m = torch.einsum("ip,kjp->kij", result.grads.double(), result.hg.double())  # (K, K, K)
    assert torch.allclose(m, m.transpose(1, 2), rtol=1e-4, atol=1e-6 * m.abs().max())
    assert not torch.allclose(result.hg[0], result.hg[1], rtol=0.1)


def test_derived_matrices():
    result = synthetic()
    curvature = result.relative_curvature()
    np.testing.assert_allclose(np.diag(curvature), 1.0)
    expected = result.hg[2, 0].double().norm() / result.hg[2, 2].double().norm()
    assert curvature[2, 0] == pytest.approx(float(expected))
    v = result.v()
    assert torch.equal(v[1, 2], result.hg[1, 2] - result.hg[1, 1])
    assert torch.all(v.diagonal(dim1=0, dim2=1) == 0)
    gram = result.gram()
    assert gram.shape == (9, 9) and gram.dtype == np.float64
    assert gram[1 * 3 + 2, 2 * 3 + 0] == pytest.approx(float(v[1, 2].double() @ v[2, 0].double()))
    np.testing.assert_allclose(gram, gram.T)


def test_probe_predicts_merge_vs_mix_under_a_decaying_schedule(sgd_setup):
    """Steps of unequal size (a warm-up, then a decay) scale the second-order term by
    sum_{s<t} eta_s eta_t; the peak rate's eta^2 T (T-1) / 2 overstates it here 2.7 times."""
    model, batches, result = sgd_setup
    etas = [1e-3, 2e-3, 1.5e-3, 5e-4]
    for cosine, ratio, _ in merge_vs_mix_error(model, batches, result, etas):
        assert cosine >= 0.95
        assert 0.8 <= ratio <= 1.2
    assert step_scale([2e-3] * 4) / step_scale(etas) == pytest.approx(2.74, abs=0.01)


def test_predicted_norms_and_loss_effect_match_direct_computation():
    result = synthetic()
    alphas = dirichlet(3, 20, seed=1)  # (20, 3)
    scale = step_scale([0.05] * 7)
    deltas = torch.stack([predicted_delta(a, result.v(), scale) for a in alphas])  # (N, P)
    norms = predicted_delta_norms(alphas, result.gram(), scale)
    np.testing.assert_allclose(norms, deltas.double().norm(dim=1).numpy(), rtol=1e-5)
    effect = first_order_loss_effect(alphas, result.grads, result.v(), scale)
    direct = (deltas.double() @ result.grads.double().T).numpy()  # (N, K)
    np.testing.assert_allclose(effect, direct, rtol=1e-5, atol=1e-9)
    # a pure mixture is its own expert: no predicted discrepancy
    assert predicted_delta_norms(np.eye(3), result.gram(), scale) == pytest.approx(0.0, abs=1e-12)


def test_step_scale_and_bad_alphas():
    assert step_scale([0.1] * 5) == pytest.approx(0.01 * 5 * 4 / 2)
    assert step_scale([0.1]) == 0.0
    # pairs s < t of (1, 2, 3): 1*2 + 1*3 + 2*3
    assert step_scale([1.0, 2.0, 3.0]) == pytest.approx(11.0)
    # a step of size 0 (a cosine to zero ends on one) adds nothing: 0.1 * 0.1 from the other two
    assert step_scale([0.1, 0.0, 0.1]) == pytest.approx(0.01)
    cosine_to_zero = TrainConfig(steps=120, lr=1e-3, schedule="cosine", min_lr_ratio=0.0)
    etas = [lr_at(t, cosine_to_zero) for t in range(120)]
    assert etas[-1] == 0.0
    pairs = sum(etas[s] * etas[t] for t in range(120) for s in range(t))
    assert step_scale(etas) == pytest.approx(pairs)
    for bad in ([0.1, -0.1], [0.1, float("nan")], []):
        with pytest.raises(ProbeError, match="learning rates >= 0"):
            step_scale(bad)
    result = synthetic()
    with pytest.raises(ProbeError, match=r"row 1 sums to 0\.9"):
        predicted_delta_norms(np.array([[1, 0, 0], [0.5, 0.2, 0.2]]), result.gram(), 1.0)
    with pytest.raises(ProbeError, match=r"shape \(N, 3\)"):
        predicted_delta_norms(np.array([[0.5, 0.5]]), result.gram(), 1.0)
    with pytest.raises(ProbeError, match=r"grads must be \(K, P\)"):
        first_order_loss_effect(np.eye(3), result.grads[:2], result.v(), 1.0)


def test_summary_round_trip_through_safetensors(tmp_path):
    """The stored form of the probe's reductions (probe.safetensors), and shapes checked."""
    result = synthetic()
    path = tmp_path / "probe.safetensors"
    safetensors.torch.save_file(result.summary().to_tensors(), path)
    back = ProbeSummary.from_tensors(3, safetensors.torch.load_file(path))
    np.testing.assert_array_equal(back.gram.numpy(), result.gram())
    np.testing.assert_array_equal(back.relative_curvature(), result.relative_curvature())
    with pytest.raises(ProbeError, match=r"lacks tensor\(s\) \['gram'\]"):
        ProbeSummary.from_tensors(3, {"hg_norms": back.hg_norms})
    with pytest.raises(ProbeError, match=r"of 2 domains has hg_norms \(3, 3\)"):
        ProbeSummary.from_tensors(2, back.to_tensors())
    with pytest.raises(ProbeError, match=r"hg must be \(K, K, P\)"):
        ProbeResult(["a", "b", "c"], result.grads, result.hg[:2], "test")


def test_task_vector_cosines_global_and_per_layer():
    base = {k: v.clone() for k, v in pico(torch.float32).state_dict().items()}
    g = torch.Generator().manual_seed(2)
    a = {k: torch.randn(v.shape, generator=g) for k, v in base.items()}
    b = {k: torch.randn(v.shape, generator=g) for k, v in base.items()}
    layer0 = {
        k: (v if k.startswith("model.layers.0.") else torch.zeros_like(v)) for k, v in b.items()
    }
    experts = [
        {k: base[k] + a[k] for k in base},
        {k: base[k] + 2 * a[k] for k in base},  # same direction as expert 0
        {k: base[k] + a[k] + layer0[k] for k in base},  # differs from expert 0 only in layer 0
    ]
    flat = lambda d: torch.cat([d[k].double().reshape(-1) for k in base])  # noqa: E731
    tau = [flat({k: e[k] - base[k] for k in base}) for e in experts]
    cosines = task_vector_cosines(base, experts)
    assert cosines[0, 1] == pytest.approx(1.0)
    assert cosines[0, 2] == pytest.approx(cos(tau[0], tau[2]), rel=1e-5)
    np.testing.assert_allclose(cosines, cosines.T)
    per_layer = per_layer_cosines(base, experts)
    assert set(per_layer) == {
        "model.embed_tokens",
        "model.layers.0",
        "model.layers.1",
        "model.norm",
        "lm_head",
    }
    assert per_layer["model.layers.1"][0, 2] == pytest.approx(1.0)
    assert per_layer["model.layers.0"][0, 2] < 0.9
    assert layer_group("model.layers.11.mlp.up_proj.weight") == "model.layers.11"
    with pytest.raises(ProbeError, match=r"expert 1 lacks tensor 'lm_head\.weight'"):
        task_vector_cosines(
            base, [experts[0], {k: v for k, v in experts[1].items() if k != "lm_head.weight"}]
        )


def test_with_replay_the_gap_weights_leave_out_what_the_experts_already_hold():
    """Runs that follow theta(m) = T m + sum_kj m_k m_j v_kj exactly: the replay experts'
    merge at w(alpha) misses the mixed run by sum_kj c_kj v_kj, c the `outer_weights`."""
    rng = np.random.default_rng(3)
    k, p, replay = 4, 5, 0.1
    t = rng.normal(size=(p, k))
    v = rng.normal(size=(k, k, p))
    v[np.arange(k), np.arange(k)] = 0.0  # v_kk = 0 by definition

    def run(m: np.ndarray) -> np.ndarray:
        return t @ m + np.einsum("k,j,kjp->p", m, m, v)

    experts = [run(m) for m in expert_mixtures(k, replay)]
    alphas = dirichlet(k, 3, seed=1)
    c = outer_weights(alphas, k, replay)  # (3, K^2)
    for alpha, weights in zip(alphas, c, strict=True):
        merge = sum(w * e for w, e in zip(merge_weights(alpha, replay), experts, strict=True))
        np.testing.assert_allclose(run(alpha) - merge, weights @ v.reshape(k * k, p), atol=1e-12)
    # zero at every expert's own mixture; by hand for alpha = (0.4, 0.3, 0.2, 0.1), pair (0, 1):
    # a_0 a_1 - (1 - r)(r / K)(w_0 + w_1) - r^2 / K^2 with w = (alpha - r / K) / (1 - r)
    np.testing.assert_allclose(outer_weights(expert_mixtures(k, replay), k, replay), 0, atol=1e-15)
    by_hand = 0.12 - 0.9 * 0.025 * (0.375 + 0.275) / 0.9 - 0.025**2
    assert pair_weights([0.4, 0.3, 0.2, 0.1], replay)[0] == pytest.approx(by_hand, abs=1e-15)
    assert pair_weights([0.4, 0.3, 0.2, 0.1])[0] == pytest.approx(0.12, abs=1e-15)
