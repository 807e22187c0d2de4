"""InMemoryMerger: merges in place in a live model, equal to the reference math."""

import pytest
import torch

from parammix_core.merge import InMemoryMerger, MergeError, linear_merge
from parammix_core.simplex import SimplexError
from tests.parammix_core.merge.common import ALPHAS, TOKENS, logits_of, pico


def test_in_memory_merge_equals_reference(states):
    base, experts = states
    model = pico()
    merger = InMemoryMerger(model, base, experts)
    with torch.no_grad():
        torch.testing.assert_close(model(TOKENS).logits, logits_of(base), rtol=0, atol=1e-6)
        for alpha in [*ALPHAS, [1.5, -0.25, -0.25]]:  # the last one extrapolates
            merger.apply(alpha)
            expected = logits_of(linear_merge(base, experts, alpha))
            torch.testing.assert_close(model(TOKENS).logits, expected, rtol=0, atol=1e-6)


def test_in_memory_merge_is_in_place_and_repeatable(states):
    base, experts = states
    model = pico()
    merger = InMemoryMerger(model, base, experts)
    params = list(model.parameters())
    # every parameter is a view into one storage that holds exactly the parameters
    assert len({p.untyped_storage().data_ptr() for p in params}) == 1
    assert params[0].untyped_storage().nbytes() == sum(p.numel() * 4 for p in params)
    pointers = [p.data_ptr() for p in params]

    merger.apply(ALPHAS[4])
    first = [p.detach().clone() for p in params]
    merger.apply(ALPHAS[5])
    assert not torch.equal(params[0], first[0])
    merger.apply(ALPHAS[4])
    assert all(torch.equal(p, f) for p, f in zip(params, first, strict=True))
    assert [p.data_ptr() for p in model.parameters()] == pointers
    with pytest.raises(SimplexError, match=r"sum to 1\.5"):
        InMemoryMerger(pico(), base, experts, names=["math", "code", "web"]).apply([1.5, 0, 0])


def test_in_memory_merger_checks_the_models(states):
    base, experts = states
    broken = {k: v for k, v in experts[1].items() if k != "model.norm.weight"}
    with pytest.raises(MergeError, match=r"code: missing tensor\(s\) 'model.norm.weight'"):
        InMemoryMerger(pico(), base, [experts[0], broken], names=["math", "code"])
    short = {k: v for k, v in base.items() if k != "lm_head.weight"}
    with pytest.raises(MergeError, match=r"base: missing tensor\(s\) 'lm_head.weight'"):
        InMemoryMerger(pico(), short, [short])


class TiedWithBuffer(torch.nn.Module):
    """Embedding and head share one weight; a persistent buffer scales the output."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(6, 4)
        self.head = torch.nn.Linear(4, 6, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(x)) * self.scale


def test_tied_parameters_and_buffers():
    torch.manual_seed(0)
    model = TiedWithBuffer()
    base = {"emb.weight": torch.randn(6, 4), "scale": torch.tensor(2.0)}  # tied alias omitted
    experts = [{**base, "emb.weight": base["emb.weight"] + k + 1} for k in range(2)]
    merger = InMemoryMerger(model, base, experts)
    merger.apply([0.25, 0.75])
    expected = linear_merge(base, experts, [0.25, 0.75])["emb.weight"]
    torch.testing.assert_close(model.emb.weight, expected, rtol=0, atol=1e-6)
    assert model.head.weight is model.emb.weight
    assert len(list(model.parameters())) == 1
    odd = {**experts[1], "scale": torch.tensor(3.0)}
    with pytest.raises(MergeError, match="expert 1: buffer 'scale' differs from the base"):
        InMemoryMerger(TiedWithBuffer(), base, [experts[0], odd])


def test_correction_adds_its_directions_to_the_merge(states):
    base, experts = states
    model = pico()
    merger = InMemoryMerger(model, base, experts)
    params = [p for _, p in model.named_parameters()]
    size = sum(p.numel() for p in params)
    directions = torch.randn(3, size, generator=torch.Generator().manual_seed(0))
    merger.set_correction(directions)
    merger.apply([0.2, 0.3, 0.5])
    before = torch.cat([p.detach().reshape(-1).clone() for p in params])
    merger.correct([0.1, -0.2, 0.3])
    after = torch.cat([p.detach().reshape(-1) for p in params])
    expected = before + directions.T @ torch.tensor([0.1, -0.2, 0.3])
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-6)
    merger.apply([0.2, 0.3, 0.5])  # a fresh apply drops the correction
    torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in params]), before)
    with pytest.raises(MergeError, match="expected"):
        merger.set_correction(torch.zeros(2, size + 1))


def test_in_memory_merger_stacks_task_vectors_as_rows_and_handles_two_dtypes():
    """A bfloat16 layer beside a float32 one: one flat group per dtype, base + 3 rows each."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    model[1].to(torch.bfloat16)
    base = {n: t.clone() for n, t in model.state_dict().items()}
    experts = [{n: t + 0.5 * (k + 1) for n, t in base.items()} for k in range(3)]
    merger = InMemoryMerger(model, base, experts)
    assert [tuple(g.stack.shape) for g in merger._groups] == [(4, 24), (4, 15)]
    assert all(g.stack.is_contiguous() for g in merger._groups)
    merger.apply([0.2, 0.3, 0.5])
    expected = linear_merge(base, experts, [0.2, 0.3, 0.5])
    for name, t in model.state_dict().items():
        assert t.dtype == base[name].dtype
        torch.testing.assert_close(
            t, expected[name], rtol=0, atol=1e-6 if t.dtype == torch.float32 else 0.02
        )
    with pytest.raises(MergeError, match="share one dtype"):
        merger.set_correction(torch.zeros(1, 39))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_in_memory_merge_on_cuda_equals_cpu(states):
    base, experts = states
    model = pico().to("cuda")
    merger = InMemoryMerger(model, base, experts)
    for alpha in ALPHAS:
        merger.apply(alpha)
        expected = linear_merge(base, experts, alpha)
        for name, t in model.state_dict().items():
            torch.testing.assert_close(t.cpu(), expected[name], rtol=0, atol=1e-5)
