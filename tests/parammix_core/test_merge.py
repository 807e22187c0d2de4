import json

import numpy as np
import pytest
import safetensors.torch
import torch

from parammix_core.config import ModelConfig
from parammix_core.merge import (
    InMemoryMerger,
    MergeError,
    check_compatible,
    linear_merge,
    streaming_merge,
    task_vector,
)
from parammix_core.model import build_model, load_model, save_model
from parammix_core.simplex import SimplexError

PICO = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
ALPHAS = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [1 / 3, 1 / 3, 1 / 3],
    [0.6, 0.1, 0.3],
    [0.0, 0.25, 0.75],
]


def pico():
    return build_model(PICO, 80, 32, 0, bos_token_id=1, eos_token_id=2, pad_token_id=0)


@pytest.fixture(scope="module")
def states():
    """A pico Llama base and three experts: the base plus small perturbations of different sizes."""
    base = {k: v.clone() for k, v in pico().state_dict().items()}
    g = torch.Generator().manual_seed(1)
    experts = [
        {n: v + 0.01 * (k + 1) * torch.randn(v.shape, generator=g) for n, v in base.items()}
        for k in range(3)
    ]
    return base, experts


TOKENS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 40, 41, 42, 43, 44, 45, 79]])


def logits_of(state: dict) -> torch.Tensor:
    model = pico()
    model.load_state_dict(state)
    with torch.no_grad():
        return model(TOKENS).logits


# --- the reference math -------------------------------------------------------------------


def hand_example():
    base = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5])}
    e1 = {"w": torch.tensor([[2.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([1.5])}
    e2 = {"w": torch.tensor([[1.0, 4.0], [3.0, 0.0]]), "b": torch.tensor([0.5])}
    return base, [e1, e2]


def test_linear_merge_by_hand():
    base, (e1, e2) = hand_example()
    assert torch.equal(linear_merge(base, [e1, e2], [1, 0])["w"], e1["w"])
    assert torch.equal(linear_merge(base, [e1, e2], [0, 1])["b"], e2["b"])
    mean = linear_merge(base, [e1, e2], [0.5, 0.5])
    assert torch.equal(mean["w"], torch.tensor([[1.5, 3.0], [3.0, 2.0]]))
    assert torch.equal(mean["b"], torch.tensor([1.0]))
    # base + 0.25 (e1 - base) + 0.75 (e2 - base)
    mixed = linear_merge(base, [e1, e2], [0.25, 0.75])
    assert torch.equal(mixed["w"], torch.tensor([[1.25, 3.5], [3.0, 1.0]]))
    assert torch.equal(mixed["b"], torch.tensor([0.75]))


def test_task_vector_by_hand():
    base, (e1, _) = hand_example()
    tv = task_vector(base, e1)
    assert torch.equal(tv["w"], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(tv["b"], torch.tensor([1.0]))
    half = {k: v.to(torch.bfloat16) for k, v in base.items()}
    assert task_vector(half, half)["w"].dtype == torch.float32


def test_vertices_give_experts_back_exactly_and_uniform_gives_the_mean(states):
    base, experts = states
    for k, expert in enumerate(experts):
        merged = linear_merge(base, experts, np.eye(3)[k])
        assert all(torch.equal(merged[n], expert[n]) for n in base)
    uniform = linear_merge(base, experts, [1 / 3] * 3)
    for n in base:
        mean = torch.stack([e[n].double() for e in experts]).mean(0)
        torch.testing.assert_close(uniform[n].double(), mean, rtol=0, atol=1e-6)
        assert uniform[n].dtype == base[n].dtype


def test_merge_keeps_dtype_and_copies_equal_integer_tensors():
    base = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "i": torch.tensor([3, 4])}
    expert = {"w": torch.tensor([3.0, 2.0], dtype=torch.bfloat16), "i": torch.tensor([3, 4])}
    merged = linear_merge(base, [expert, base], [0.5, 0.5])
    assert merged["w"].dtype == torch.bfloat16
    assert torch.equal(merged["w"].float(), torch.tensor([2.0, 2.0]))
    assert torch.equal(merged["i"], base["i"])
    with pytest.raises(MergeError, match=r"tensor 'i'.*differs between the base and expert 0"):
        linear_merge(base, [{**expert, "i": torch.tensor([3, 5])}], [1.0])


def test_alpha_must_be_on_the_simplex(states):
    base, experts = states
    with pytest.raises(SimplexError, match=r"sum to 1\.1"):
        linear_merge(base, experts, [0.5, 0.3, 0.3])
    with pytest.raises(SimplexError, match=r"negative for domain\(s\) \['expert 0'\]"):
        linear_merge(base, experts, [-0.5, 0.5, 1.0])
    with pytest.raises(SimplexError, match="2 weight"):
        linear_merge(base, experts, [0.5, 0.5])


def test_compatibility_errors_name_expert_and_tensor():
    base, (e1, _) = hand_example()
    with pytest.raises(MergeError, match=r"code: missing tensor\(s\) 'b'"):
        check_compatible(base, {"w": e1["w"]}, "code")
    with pytest.raises(MergeError, match=r"code: tensor\(s\) not in the base: 'extra'"):
        check_compatible(base, {**e1, "extra": e1["b"]}, "code")
    with pytest.raises(
        MergeError, match=r"math: tensor 'w' has shape \[4\], the base has \[2, 2\]"
    ):
        check_compatible(base, {**e1, "w": e1["w"].reshape(4)}, "math")
    with pytest.raises(MergeError, match="web: tensor 'b' has dtype float16, the base has float32"):
        check_compatible(base, {**e1, "b": e1["b"].half()}, "web")
    check_compatible(base, e1, "fine")


# --- in memory ----------------------------------------------------------------------------


def test_in_memory_merge_equals_reference(states):
    base, experts = states
    model = pico()
    merger = InMemoryMerger(model, base, experts)
    with torch.no_grad():
        torch.testing.assert_close(model(TOKENS).logits, logits_of(base), rtol=0, atol=1e-6)
        for alpha in ALPHAS:
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
    with pytest.raises(SimplexError, match=r"negative for domain\(s\) \['code'\]"):
        InMemoryMerger(pico(), base, experts, names=["math", "code", "web"]).apply([1.5, -0.5, 0])


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


# --- streaming on disk --------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(states, tmp_path_factory):
    """The base as a HF checkpoint dir, the experts as bare safetensors files."""
    root = tmp_path_factory.mktemp("ckpts")
    base, experts = states
    model = pico()
    model.load_state_dict(base)
    save_model(model, root / "base")
    paths = []
    for k, expert in enumerate(experts):
        safetensors.torch.save_file(expert, root / f"expert{k}.safetensors")
        paths.append(root / f"expert{k}.safetensors")
    return root / "base", paths


def read_dir(out) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(out.glob("*.safetensors")):
        tensors.update(safetensors.torch.load_file(file))
    return tensors


def test_streaming_merge_single_file(states, checkpoints, tmp_path):
    base, experts = states
    base_dir, paths = checkpoints
    out = streaming_merge(base_dir, paths, ALPHAS[4], tmp_path / "merged")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    merged, expected = read_dir(out), linear_merge(base, experts, ALPHAS[4])
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[n], expected[n]) for n in expected)
    model = load_model(out, PICO, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(model(TOKENS).logits, logits_of(expected), rtol=0, atol=0)


def test_streaming_merge_sharded_in_and_out(states, checkpoints, tmp_path):
    base, experts = states
    base_dir, paths = checkpoints
    limit = 12_000  # bytes: forces many shards; the 80x32 float embeddings (10 kB) fit alone
    # a vertex merge written in shards is expert 0 again, and serves as a sharded input below
    sharded = streaming_merge(base_dir, paths, [1, 0, 0], tmp_path / "e0", max_shard_bytes=limit)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(files) > 3
    assert files == sorted(set(index["weight_map"].values()))
    assert all(f.endswith(f"-of-{len(files):05d}.safetensors") for f in files)
    assert set(index["weight_map"]) == set(base)
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in base.values())
    for f in files:
        sizes = [t.numel() * 4 for t in safetensors.torch.load_file(sharded / f).values()]
        assert sum(sizes) <= limit or len(sizes) == 1
    assert all(torch.equal(t, experts[0][n]) for n, t in read_dir(sharded).items())

    out = streaming_merge(
        base_dir, [sharded, *paths[1:]], ALPHAS[5], tmp_path / "out", max_shard_bytes=limit
    )
    expected = linear_merge(base, experts, ALPHAS[5])
    merged = read_dir(out)
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[n], expected[n]) for n in expected)
    model = load_model(out, PICO, "cpu")  # HF reads the sharded layout
    assert all(torch.equal(t, expected[n]) for n, t in model.state_dict().items())


def test_streaming_merge_errors_name_file_and_tensor(states, checkpoints, tmp_path):
    _, experts = states
    base_dir, paths = checkpoints
    bad = {**experts[1], "model.norm.weight": torch.ones(33)}
    safetensors.torch.save_file(bad, tmp_path / "bad.safetensors")
    with pytest.raises(MergeError, match=r"bad\.safetensors: tensor 'model.norm.weight' has shape"):
        streaming_merge(
            base_dir, [paths[0], tmp_path / "bad.safetensors"], [0.5, 0.5], tmp_path / "o"
        )
    assert not (tmp_path / "o").exists()
    with pytest.raises(MergeError, match="nothing: no such file or directory"):
        streaming_merge(base_dir, [tmp_path / "nothing"], [1.0], tmp_path / "o")
    with pytest.raises(MergeError, match=r"neither model\.safetensors nor"):
        streaming_merge(tmp_path, paths[:1], [1.0], tmp_path / "o")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(MergeError, match="full: output exists"):
        streaming_merge(base_dir, paths[:1], [1.0], tmp_path / "full")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


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
    """A bfloat16 layer beside a float32 one: one flat group per dtype, each its own addmv."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    model[1].to(torch.bfloat16)
    base = {n: t.clone() for n, t in model.state_dict().items()}
    experts = [{n: t + 0.5 * (k + 1) for n, t in base.items()} for k in range(3)]
    merger = InMemoryMerger(model, base, experts)
    assert [tuple(g.stack.shape) for g in merger._groups] == [(3, 24), (3, 15)]
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


def test_streaming_merge_slices_big_tensors_and_keeps_dtypes(tmp_path, monkeypatch):
    """Tensors longer than a slice, bfloat16, a scalar and an integer buffer, merged bit for bit."""
    import parammix_core.merge.streaming as streaming

    monkeypatch.setattr(streaming, "CHUNK_ELEMENTS", 7)
    g = torch.Generator().manual_seed(3)
    base = {
        "w": torch.randn(5, 9, generator=g),
        "h": torch.randn(30, generator=g).to(torch.bfloat16),
        "s": torch.tensor(1.5),
        "i": torch.arange(10),
        "e": torch.zeros(0, 4),
    }
    experts = [
        {
            n: t + torch.randn(t.shape, generator=g).to(t.dtype) if t.is_floating_point() else t
            for n, t in base.items()
        }
        for _ in range(2)
    ]
    for k, state in enumerate([base, *experts]):
        safetensors.torch.save_file(state, tmp_path / f"m{k}.safetensors")
    paths = [tmp_path / f"m{k}.safetensors" for k in (1, 2)]
    out = streaming_merge(tmp_path / "m0.safetensors", paths, [0.3, 0.7], tmp_path / "o")
    merged = safetensors.torch.load_file(out / "model.safetensors")
    expected = linear_merge(base, experts, [0.3, 0.7])
    assert merged.keys() == expected.keys()
    for n in expected:
        assert merged[n].dtype == expected[n].dtype and merged[n].shape == expected[n].shape
        assert torch.equal(merged[n], expected[n]), n
    odd = {**experts[1], "i": torch.arange(10) + 1}
    safetensors.torch.save_file(odd, tmp_path / "odd.safetensors")
    with pytest.raises(MergeError, match=r"tensor 'i' \(torch.int64\) cannot be merged"):
        streaming_merge(
            tmp_path / "m0.safetensors",
            [paths[0], tmp_path / "odd.safetensors"],
            [0.5, 0.5],
            tmp_path / "o2",
        )
    assert not (tmp_path / "o2").exists()


def test_streaming_merge_names_broken_files(checkpoints, tmp_path):
    base_dir, paths = checkpoints
    raw = paths[0].read_bytes()
    (tmp_path / "short.safetensors").write_bytes(raw[:-10])
    with pytest.raises(MergeError, match=r"short\.safetensors: tensor '.*' is truncated"):
        streaming_merge(base_dir, [tmp_path / "short.safetensors"], [1.0], tmp_path / "o")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(MergeError, match=r"junk\.safetensors: not a readable safetensors file"):
        streaming_merge(base_dir, [tmp_path / "junk.safetensors"], [1.0], tmp_path / "o")
    (tmp_path / "huge.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(MergeError, match=r"huge\.safetensors: not a readable.*header of"):
        streaming_merge(base_dir, [tmp_path / "huge.safetensors"], [1.0], tmp_path / "o")
    assert not (tmp_path / "o").exists()
