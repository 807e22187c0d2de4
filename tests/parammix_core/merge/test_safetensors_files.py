"""Safetensors files read and written by the streaming merge: shards, index, broken files."""

import json

import pytest
import safetensors.torch
import torch

from parammix_core.merge import MergeError, linear_merge, streaming_merge
from parammix_core.model import load_model
from tests.parammix_core.merge.common import ALPHAS, PICO, read_dir


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
