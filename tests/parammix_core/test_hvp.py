import logging
from types import SimpleNamespace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from parammix_core import hvp as hvp_module
from parammix_core.config import ModelConfig
from parammix_core.hvp import (
    HVPError,
    auto_order,
    flat_params,
    gradient,
    hvp,
    loss_at,
    param_names,
    unflatten,
)
from parammix_core.model import build_model

NANO = ModelConfig(hidden_size=8, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=16)
PICO = ModelConfig(hidden_size=16, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=32)
VOCAB = 16


def llama(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    return build_model(cfg, VOCAB, 16, 0, bos_token_id=1, eos_token_id=2, pad_token_id=0).to(dtype)


def tokens(b: int, t: int, seed: int) -> torch.Tensor:
    """Blocks without the pad token 0 (whose embedding row gets no gradient), shape (B, T)."""
    return torch.randint(1, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))


def vectors(v: int, p: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return torch.randn(v, p, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


class MLPLM(torch.nn.Module):
    """A float64 bigram LM (embedding, tanh layer, head) with the HF call signature: every op
    is float64, so the HVP can be checked against the exact Hessian to 1e-10."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Parameter(torch.randn(VOCAB, 6, generator=g, dtype=torch.float64))
        self.hidden = torch.nn.Linear(6, 6, dtype=torch.float64)
        self.head = torch.nn.Linear(6, VOCAB, dtype=torch.float64)

    def forward(self, input_ids, labels, use_cache):
        logits = self.head(torch.tanh(self.hidden(self.embed[input_ids])))  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
        )
        return SimpleNamespace(loss=loss)


def explicit_hessian(model, batch):
    flat = flat_params(model)
    with sdpa_kernel([SDPBackend.MATH]):
        return torch.autograd.functional.hessian(
            lambda x: loss_at(model, unflatten(model, x), batch), flat, vectorize=True
        )  # (P, P)


def test_flat_round_trip_in_named_parameter_order():
    model = llama(PICO)
    flat = flat_params(model)
    params = unflatten(model, flat)
    assert list(params) == param_names(model) == [n for n, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert torch.equal(params[name], p.detach())
    with pytest.raises(HVPError, match=r"shape \(3,\)"):
        unflatten(model, flat[:3])


def test_gradient_is_mean_of_model_backward():
    model = llama(PICO)
    batches = [tokens(2, 8, 1), tokens(2, 8, 2)]
    for b in batches:
        model(input_ids=b, labels=b, use_cache=False).loss.backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()]) / 2
    model.zero_grad(set_to_none=True)
    assert rel(gradient(model, batches), expected) < 1e-6


@pytest.mark.parametrize("method", ["forward_over_reverse", "double_backward"])
def test_hvp_equals_exact_hessian_of_float64_mlp(method):
    model = MLPLM().eval()
    batch = tokens(3, 6, 3)
    h = explicit_hessian(model, batch)
    v = vectors(3, h.shape[0], torch.float64)
    result = hvp(model, batch, v, method)
    assert result.method == method
    assert result.values.dtype == torch.float64
    assert rel(result.values, v @ h.T) < 1e-8


@pytest.mark.parametrize("method", ["forward_over_reverse", "double_backward"])
def test_hvp_equals_explicit_hessian_of_float64_llama(method):
    # LlamaRMSNorm computes in float32 even in a float64 model, hence 1e-5, not 1e-8.
    model = llama(NANO, torch.float64)
    batch = tokens(2, 6, 4)
    h = explicit_hessian(model, batch)
    v = vectors(2, h.shape[0], torch.float64)
    assert rel(hvp(model, batch, v, method).values, v @ h.T) < 1e-5


def test_hvp_matches_finite_differences_of_the_gradient():
    model = llama(PICO, torch.float64)
    batch = tokens(2, 8, 5)
    flat = flat_params(model)
    v = vectors(1, flat.numel(), torch.float64, seed=1)[0]
    v = v / v.norm()  # (P,) unit step: third-order error ~eps^2, float32 RMSNorm noise ~1e-7/eps
    eps = 3e-3

    def grad_at(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(loss_at(model, unflatten(model, x), batch), x)[0]

    fd = (grad_at(flat + eps * v) - grad_at(flat - eps * v)) / (2 * eps)  # (P,)
    assert rel(hvp(model, batch, v[None]).values[0], fd) < 1e-3


def test_vmap_chunked_and_double_backward_agree_and_are_symmetric():
    model = llama(PICO)
    batch = tokens(2, 8, 6)
    v = vectors(3, flat_params(model).numel(), torch.float32, seed=2)
    full = hvp(model, batch, v, "forward_over_reverse").values
    for chunk in (1, 2):
        assert rel(hvp(model, batch, v, "forward_over_reverse", chunk).values, full) < 1e-5
    reference = hvp(model, batch, v, "double_backward").values
    assert rel(full, reference) < 1e-4
    # u . H v = v . H u, relative to |u| |Hv|
    u_hv, v_hu = v[0] @ full[1], v[1] @ full[0]
    assert abs(u_hv - v_hu) < 1e-4 * v[0].norm() * full[1].norm()
    # and H is not trivially zero or the identity
    assert rel(full, v) > 0.5


def test_auto_order_is_device_aware():
    assert auto_order(torch.device("cpu")) == ("double_backward", "forward_over_reverse")
    assert auto_order(torch.device("cuda", 0)) == ("forward_over_reverse", "double_backward")


def test_auto_on_cpu_runs_double_backward_and_both_match_eager(caplog):
    sdpa = llama(PICO)
    eager = llama(PICO.model_copy(update={"attn_implementation": "eager"}))
    assert sdpa.config._attn_implementation == "sdpa"
    assert torch.equal(flat_params(sdpa), flat_params(eager))
    batch = tokens(2, 8, 7)
    v = vectors(2, flat_params(sdpa).numel(), torch.float32, seed=3)
    reference = hvp(eager, batch, v, "double_backward").values
    with caplog.at_level(logging.INFO, logger="parammix_core.hvp"):
        result = hvp(sdpa, batch, v)
    assert result.method == "double_backward"
    assert "by double_backward" in caplog.text
    assert rel(result.values, reference) < 1e-4
    assert rel(hvp(sdpa, batch, v, "forward_over_reverse").values, reference) < 1e-4


@pytest.mark.parametrize(
    ("first", "second"),
    [("double_backward", "forward_over_reverse"), ("forward_over_reverse", "double_backward")],
)
def test_auto_falls_back_to_the_other_kernel_and_says_so(monkeypatch, caplog, first, second):
    """Both orders: the CPU one, and the CUDA one simulated by patching `auto_order`."""
    model = llama(PICO)
    batch = tokens(2, 8, 8)
    v = vectors(2, flat_params(model).numel(), torch.float32, seed=4)
    expected = hvp(model, batch, v, second).values

    def broken(*args, **kwargs):
        raise NotImplementedError("no derivative for this op")

    monkeypatch.setattr(hvp_module, "auto_order", lambda device: (first, second))
    monkeypatch.setattr(hvp_module, "_" + first, broken)
    with caplog.at_level(logging.INFO, logger="parammix_core.hvp"):
        result = hvp(model, batch, v, "auto")
    assert result.method == second
    assert f"{first} HVP failed" in caplog.text
    assert f"falling back to {second}" in caplog.text
    assert torch.equal(result.values, expected)
    with pytest.raises(NotImplementedError, match="no derivative"):
        hvp(model, batch, v, first)


def test_auto_fallback_discards_what_the_failed_kernel_added(monkeypatch):
    """A kernel may raise after adding some rows into the output: the fallback starts clean."""
    model = llama(PICO)
    batch = tokens(2, 8, 8)
    v = vectors(2, flat_params(model).numel(), torch.float32, seed=4)
    expected = hvp(model, batch, v, "forward_over_reverse").values

    def half_done(*args):
        out = args[-1]
        out[0].add_(1.0)
        raise RuntimeError("double backward not implemented for this op")

    monkeypatch.setattr(hvp_module, "_double_backward", half_done)
    result = hvp(model, batch, v, "auto")
    assert result.method == "forward_over_reverse"
    assert torch.equal(result.values, expected)


@pytest.mark.parametrize("method", ["forward_over_reverse", "double_backward"])
def test_out_sums_over_batches_in_place(method):
    """`out` adds H_b v into an existing buffer: two batches summed equal the two results."""
    model = llama(PICO)
    batches = [tokens(2, 8, 11), tokens(2, 8, 12)]
    v = vectors(2, flat_params(model).numel(), torch.float32, seed=5)
    separate = [hvp(model, b, v, method).values for b in batches]
    out = separate[0].clone()
    result = hvp(model, batches[1], v, method, out=out)
    assert result.values is out and not out.requires_grad
    torch.testing.assert_close(out, separate[0] + separate[1], rtol=0, atol=0)
    assert not torch.allclose(separate[0], separate[1], rtol=0.1)


def test_out_is_checked():
    model = llama(PICO)
    batch = tokens(2, 8, 10)
    v = vectors(2, flat_params(model).numel(), torch.float32)
    with pytest.raises(HVPError, match="out needs a named method"):
        hvp(model, batch, v, "auto", out=torch.zeros_like(v))
    with pytest.raises(HVPError, match=r"out must be torch.float32 of shape \(2, \d+\)"):
        hvp(model, batch, v, "double_backward", out=torch.zeros_like(v[:1]))
    with pytest.raises(HVPError, match=r"got torch\.float64"):
        hvp(model, batch, v, "double_backward", out=torch.zeros_like(v, dtype=torch.float64))


def test_end_of_text_tokens_in_the_batch_leave_both_methods_equal():
    """The end-of-text id (0 here, also the pad id) trains like any token: no masked row."""
    model = llama(PICO)
    batch = tokens(2, 8, 11)
    batch[:, ::3] = 0
    v = vectors(1, flat_params(model).numel(), torch.float32, seed=6)
    assert unflatten(model, v[0])["model.embed_tokens.weight"][0].abs().sum() > 0
    fwd = hvp(model, batch, v, "forward_over_reverse").values
    rev = hvp(model, batch, v, "double_backward").values
    assert rel(fwd, rev) < 1e-4
    assert unflatten(model, fwd[0])["model.embed_tokens.weight"][0].abs().sum() > 0


def test_bf16_autocast_is_close_to_float32():
    model = llama(PICO)
    batch = tokens(2, 8, 9)
    v = vectors(2, flat_params(model).numel(), torch.float32, seed=5)
    exact = hvp(model, batch, v).values
    result = hvp(model, batch, v, autocast=torch.bfloat16)
    assert result.values.dtype == torch.float32
    assert 0 < rel(result.values, exact) < 0.1


def test_bad_inputs_are_named():
    model = llama(PICO)
    batch = tokens(2, 8, 10)
    p = flat_params(model).numel()
    with pytest.raises(HVPError, match=r"vectors must have shape \(V, \d+\)"):
        hvp(model, batch, torch.zeros(2, p + 1))
    with pytest.raises(HVPError, match="unknown HVP method 'newton'"):
        hvp(model, batch, torch.zeros(1, p), "newton")
    with pytest.raises(HVPError, match="int64 token blocks"):
        hvp(model, batch.float(), torch.zeros(1, p))
    with pytest.raises(HVPError, match="at least one batch"):
        gradient(model, [])
    model.train()
    with pytest.raises(HVPError, match="training mode"):
        hvp(model, batch, torch.zeros(1, p))


@pytest.mark.parametrize("method", ["forward_over_reverse", "double_backward"])
def test_hvp_leaves_the_process_attention_backends_alone(method, monkeypatch):
    """The probe runs beside merges evaluated in other threads: selecting the MATH backend
    for the process made their scores depend on whether the probe overlapped them."""
    model = llama(NANO)
    assert model.config._attn_implementation == "sdpa"
    seen: list[tuple[bool, str]] = []
    forward = model.forward

    def watched(*args, **kwargs):
        seen.append((torch.backends.cuda.flash_sdp_enabled(), model.config._attn_implementation))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", watched)
    batch = tokens(2, 6, 4)
    hvp(model, batch, vectors(1, sum(p.numel() for p in model.parameters()), torch.float32), method)
    assert seen and set(seen) == {(True, "eager")}  # flash stays on for every other thread
    assert model.config._attn_implementation == "sdpa"
