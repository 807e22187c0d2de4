import itertools
import json
import math

import pytest
import torch
from safetensors import safe_open

from parammix_core.config import ModelConfig, TrainConfig
from parammix_core.model import build_model
from parammix_core.simplex import SimplexError
from parammix_core.train import CheckpointError, lr_at, sample_batch, train

PICO = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
CPU = torch.device("cpu")


def pico(seed: int = 0):
    return build_model(PICO, 64, 32, seed, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def corpus(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two small domains of (N, 16) int32 blocks."""
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randint(3, 64, (12, 16), generator=g, dtype=torch.int32),
        "b": torch.randint(3, 64, (8, 16), generator=g, dtype=torch.int32),
    }


SHORT = TrainConfig(steps=10, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=4)


def test_lr_warmup_then_constant():
    cfg = TrainConfig(steps=10, lr=1.0, warmup_steps=4, schedule="constant")
    assert [lr_at(s, cfg) for s in range(10)] == [0.25, 0.5, 0.75] + [1.0] * 7


def test_lr_cosine_reaches_floor_at_last_step():
    cfg = TrainConfig(steps=10, lr=2.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(10)]
    assert lrs[:4] == [0.5, 1.0, 1.5, 2.0]
    assert lrs[4] == pytest.approx(2.0)
    assert lrs[6] == pytest.approx(0.2 + 0.5 * (1 + math.cos(math.pi * 2 / 5)) * 1.8)
    assert lrs[9] == pytest.approx(0.2)
    assert all(x > y for x, y in itertools.pairwise(lrs[4:]))
    assert lr_at(50, cfg) == pytest.approx(0.2)


def test_sample_batch_follows_weights_and_picks_blocks_uniformly():
    # domain k's block i is filled with the token 10 * k + i
    sizes = [4, 2, 3, 5]
    blocks = [
        (10 * k + torch.arange(n, dtype=torch.int32))[:, None].expand(n, 8)
        for k, n in enumerate(sizes)
    ]
    weights = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    rows = torch.cat([sample_batch(blocks, weights, 1000, gen) for _ in range(20)])
    assert rows.shape == (20_000, 8)
    assert torch.equal(rows, rows[:, :1].expand_as(rows))  # whole blocks, never mixed
    token = rows[:, 0]
    n = token.numel()
    for k, (size, p) in enumerate(zip(sizes, weights.tolist(), strict=True)):
        in_domain = token[(token >= 10 * k) & (token < 10 * k + size)]
        assert abs(in_domain.numel() - n * p) <= 3 * math.sqrt(n * p * (1 - p)) + 1e-9
        for i in range(size) if p > 0 else []:
            m, q = in_domain.numel(), 1 / size
            count = int((in_domain == 10 * k + i).sum())
            assert abs(count - m * q) <= 3 * math.sqrt(m * q * (1 - q))
    again = sample_batch(blocks, weights, 1000, torch.Generator().manual_seed(0))
    assert torch.equal(again, rows[:1000])


def test_training_reduces_loss_on_a_repeated_corpus(tmp_path):
    pattern = torch.arange(3, 19, dtype=torch.int32)  # the same 16-token block, over and over
    blocks = {"rep": pattern.repeat(8, 1)}
    cfg = TrainConfig(steps=30, batch_size=4, lr=1e-2, warmup_steps=3, checkpoint_every=100)
    model = pico()
    result = train(model, blocks, [1.0], cfg, seed=0, checkpoint_dir=tmp_path, device=CPU)
    assert result.steps == 30 and len(result.losses) == 30
    assert result.losses[0] > math.log(64) - 0.5  # starts near chance
    assert result.final_loss < 0.25 * result.losses[0]
    assert result.tokens_seen == 30 * 4 * 16
    assert result.resumed_from is None
    assert not model.training


@pytest.mark.parametrize("sampler", ["iid", "blended"])
def test_resume_after_crash_is_bit_identical(tmp_path, sampler):
    blocks, weights = corpus(), [0.7, 0.3]
    cfg = SHORT.model_copy(update={"sampler": sampler})
    reference = pico()
    torch.manual_seed(99)
    rng_before = torch.get_rng_state()
    full = train(reference, blocks, weights, cfg, seed=5, checkpoint_dir=tmp_path / "a", device=CPU)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched

    def crash_at_6(step, total, loss):
        assert total == 10 and math.isfinite(loss)
        if step == 6:
            raise RuntimeError("simulated crash")

    run_dir = tmp_path / "b"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(pico(), blocks, weights, cfg, 5, run_dir, CPU, progress=crash_at_6)
    assert sorted(p.name for p in run_dir.iterdir()) == ["step-0000004"]
    (run_dir / "step-0000009").mkdir()  # a half-written checkpoint: no state.json
    (run_dir / "step-0000009" / "model.safetensors").write_bytes(b"garbage")

    resumed_model = pico()
    resumed = train(resumed_model, blocks, weights, cfg, 5, run_dir, CPU)
    assert resumed.resumed_from == 4
    assert resumed.losses == full.losses
    assert resumed.tokens_seen == full.tokens_seen
    ref_params = dict(reference.named_parameters())
    for name, p in resumed_model.named_parameters():
        assert torch.equal(p, ref_params[name]), name
    # only the newest two complete checkpoints remain
    assert sorted(p.name for p in run_dir.iterdir()) == ["step-0000008", "step-0000010"]


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    train(pico(), corpus(), [0.5, 0.5], SHORT, 1, tmp_path, CPU)
    ckpt = tmp_path / "step-0000010"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 10 and state["seed"] == 1 and len(state["losses"]) == 10
    assert state["tokens_seen"] == 10 * 4 * 16
    with safe_open(ckpt / "optimizer.safetensors", framework="pt") as f:
        groups = json.loads(f.metadata()["optimizer"])["param_groups"]
        assert {"0.exp_avg", "0.exp_avg_sq", "0.step"} <= set(f.keys())
    assert [g["weight_decay"] for g in groups] == [0.0, 0.0]
    with safe_open(ckpt / "rng.safetensors", framework="pt") as f:
        assert f.get_tensor("batch").dtype == torch.uint8
        assert f.get_tensor("torch_cpu").dtype == torch.uint8


def test_finished_run_is_not_repeated(tmp_path):
    first = train(pico(), corpus(), [0.5, 0.5], SHORT, 1, tmp_path, CPU)
    model = pico()
    again = train(model, corpus(), [0.5, 0.5], SHORT, 1, tmp_path, CPU)
    assert again.resumed_from == 10 and again.losses == first.losses
    assert not model.training


def test_checkpoint_of_another_run_is_refused(tmp_path):
    train(pico(), corpus(), [0.5, 0.5], SHORT, 1, tmp_path, CPU)
    with pytest.raises(CheckpointError, match="step-0000010: written by a different run"):
        train(pico(), corpus(), [0.5, 0.5], SHORT, 2, tmp_path, CPU)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(SimplexError, match=r"sum to 0\.9"):
        train(pico(), corpus(), [0.5, 0.4], SHORT, 0, tmp_path, CPU)
    with pytest.raises(SimplexError, match="2 domains"):
        train(pico(), corpus(), [1.0], SHORT, 0, tmp_path, CPU)
    floats = {"a": torch.zeros(4, 16)}
    with pytest.raises(ValueError, match=r"blocks\['a'\]: expected integer token blocks"):
        train(pico(), floats, [1.0], SHORT, 0, tmp_path, CPU)
    empty = {"a": corpus()["a"], "b": torch.zeros(0, 16, dtype=torch.int32)}
    with pytest.raises(ValueError, match=r"\['b'\] have positive weight but no blocks"):
        train(pico(), empty, [0.5, 0.5], SHORT, 0, tmp_path, CPU)
    result = train(pico(), empty, [1.0, 0.0], SHORT, 0, tmp_path, CPU)  # zero weight is fine
    assert result.steps == 10


def test_the_sampler_decides_the_batches(tmp_path):
    losses = {
        s: train(
            pico(),
            corpus(),
            [0.7, 0.3],
            SHORT.model_copy(update={"sampler": s}),
            5,
            tmp_path / s,
            CPU,
        ).losses
        for s in ("iid", "blended")
    }
    assert losses["iid"] != losses["blended"]


def snapshots(model: torch.nn.Module) -> tuple[list[dict[str, torch.Tensor]], object]:
    """A progress callback that keeps the weights after every step (the plain engine trains
    `model` in place)."""
    kept: list[dict[str, torch.Tensor]] = []

    def keep(step, total, loss):
        kept.append({n: p.detach().clone() for n, p in model.named_parameters()})

    return kept, keep


@pytest.mark.parametrize(("fraction", "count"), [(0.0, 0), (0.01, 1), (0.3, 3), (1.0, 10)])
def test_tail_average_is_the_mean_of_the_last_iterates(tmp_path, fraction, count):
    model = pico()
    kept, keep = snapshots(model)
    cfg = SHORT.model_copy(update={"average_last": fraction})
    train(model, corpus(), [0.7, 0.3], cfg, 5, tmp_path, CPU, progress=keep)
    assert len(kept) == 10
    tail = kept[-max(count, 1) :]
    for name, p in model.named_parameters():
        expected = torch.stack([w[name] for w in tail]).mean(0)
        torch.testing.assert_close(p, expected, atol=1e-6, rtol=1e-5, msg=name)
    last = kept[-1]["model.embed_tokens.weight"]
    assert torch.equal(model.model.embed_tokens.weight, last) == (count <= 1)


def test_tail_average_resumes_mid_tail_bit_identical(tmp_path):
    blocks, weights = corpus(), [0.7, 0.3]
    cfg = SHORT.model_copy(update={"average_last": 0.5})  # iterates 6-10; checkpoints 4, 8
    reference = pico()
    full = train(reference, blocks, weights, cfg, 5, tmp_path / "a", CPU)

    def crash_at_9(step, total, loss):
        if step == 9:
            raise RuntimeError("simulated crash")

    run_dir = tmp_path / "b"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(pico(), blocks, weights, cfg, 5, run_dir, CPU, progress=crash_at_9)
    assert (run_dir / "step-0000008" / "average.safetensors").is_file()
    assert not (run_dir / "step-0000004" / "average.safetensors").exists()
    model = pico()
    resumed = train(model, blocks, weights, cfg, 5, run_dir, CPU)
    assert resumed.resumed_from == 8 and resumed.losses == full.losses
    ref_params = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, ref_params[name]), name
    (run_dir / "step-0000010" / "average.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"step-0000010/average\.safetensors: missing"):
        train(pico(), blocks, weights, cfg, 5, run_dir, CPU)
