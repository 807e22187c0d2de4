"""streaming_merge: merged checkpoints on disk, bit for bit the reference math."""

import pytest
import safetensors.torch
import torch

from parammix_core.merge import MergeError, linear_merge, streaming_merge
from parammix_core.model import load_model
from tests.parammix_core.merge.common import ALPHAS, PICO, TOKENS, logits_of, read_dir


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
