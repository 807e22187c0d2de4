"""The DeepSpeed engine runs the plain engine's optimisation; GPU settings keep their meaning.

DeepSpeed runs on the CPU over gloo here: one process inside pytest, two under torchrun in a
subprocess. No C++ op is compiled (client torch AdamW; the shm comm op is skipped).
"""

import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from safetensors import safe_open

from parammix_core.config import (
    DeepSpeedConfig,
    TrainConfig,
    TrainingConfig,
    load_experiment,
    parse_experiment,
)
from parammix_core.engines import LAUNCHER_ENV, base, micro_batch
from parammix_core.model import build_model, parameter_count
from parammix_core.train import CheckpointError, train
from tests.parammix_core.test_train import CPU, corpus, pico

CFG = TrainConfig(steps=8, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=3)
PLAIN = TrainingConfig()
OFFLOAD_ALL = {"offload_optimizer": True, "offload_param": True}
WORKER = Path(__file__).with_name("engines_worker.py")
ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def deepspeed_system(stage: int, **kw) -> TrainingConfig:
    return TrainingConfig(engine="deepspeed", deepspeed=DeepSpeedConfig(zero_stage=stage), **kw)


def trained(tmp_path: Path, system: TrainingConfig, cfg: TrainConfig = CFG, **kw):
    model = pico()
    result = train(model, corpus(), [0.6, 0.4], cfg, 3, tmp_path, CPU, system=system, **kw)
    return model, result


def assert_close_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 2e-5) -> None:
    theirs = dict(b.named_parameters())
    for name, p in a.named_parameters():
        torch.testing.assert_close(p, theirs[name], atol=atol, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("plain"), PLAIN)


@pytest.mark.parametrize(
    ("stage", "offload"),
    [(0, {}), (1, {}), (2, {}), (3, {}), (2, {"offload_optimizer": True}), (3, OFFLOAD_ALL)],
    ids=["zero0", "zero1", "zero2", "zero3", "zero2-offload", "zero3-offload"],
)
def test_deepspeed_single_process_matches_plain(tmp_path, plain_run, stage, offload):
    pytest.importorskip("deepspeed")
    plain_model, plain = plain_run
    ds = DeepSpeedConfig(zero_stage=stage, **offload)
    model, result = trained(tmp_path, TrainingConfig(engine="deepspeed", deepspeed=ds))
    assert result.losses == pytest.approx(plain.losses, rel=1e-5)
    assert_close_weights(model, plain_model)
    assert not model.training
    # the returned model is an ordinary module again: a plain backward reaches every weight
    batch = corpus()["a"][:2].long()
    model(input_ids=batch, labels=batch).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # the checkpoint is consolidated safetensors: full weights by name, loadable as-is
    ckpt = tmp_path / "step-0000008"
    reloaded = pico(seed=1)
    safetensors.torch.load_model(reloaded, str(ckpt / "model.safetensors"))
    assert_close_weights(reloaded, model, atol=0)
    with safe_open(ckpt / "optimizer.safetensors", framework="pt") as f:
        names = {n for n, _ in model.named_parameters()}
        assert set(f.keys()) == {f"{n}.{k}" for n in names for k in ("exp_avg", "exp_avg_sq")}
        meta = json.loads(f.metadata()["deepspeed"])
        emb = f.get_tensor("model.embed_tokens.weight.exp_avg")
        assert emb.shape == model.model.embed_tokens.weight.shape and emb.abs().sum() > 0
    wrapper = {0: "AdamW", 1: "DeepSpeedZeroOptimizer", 2: "DeepSpeedZeroOptimizer"}
    assert meta == {
        "step": 8,
        "zero_stage": stage,
        "world": 1,
        "optimizer": wrapper.get(stage, "DeepSpeedZeroOptimizer_Stage3"),
    }


@pytest.mark.parametrize("stage", [1, 3])
def test_deepspeed_resume_after_crash_equals_uninterrupted(tmp_path, stage):
    pytest.importorskip("deepspeed")
    system = deepspeed_system(stage)
    full_model, full = trained(tmp_path / "full", system)

    def crash_at_5(step, total, loss):
        if step == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        trained(tmp_path / "run", system, progress=crash_at_5)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step-0000003"]
    model, resumed = trained(tmp_path / "run", system)
    assert resumed.resumed_from == 3
    assert resumed.losses == full.losses
    assert_close_weights(model, full_model, atol=0)


def test_deepspeed_runs_in_concurrent_threads_match_plain(tmp_path, plain_run):
    """The flow's task runner trains experts in threads of one process: each run is right."""
    pytest.importorskip("deepspeed")
    plain_model, plain = plain_run
    models = [pico(), pico()]  # built first: model init seeds the global RNG

    def run(i: int):
        system = deepspeed_system(2 + i)
        return train(models[i], corpus(), [0.6, 0.4], CFG, 3, tmp_path / str(i), CPU, system=system)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    for model, result in zip(models, results, strict=True):
        assert result.losses == pytest.approx(plain.losses, rel=1e-5)
        assert_close_weights(model, plain_model)


def test_checkpoint_of_another_engine_is_refused(tmp_path):
    pytest.importorskip("deepspeed")
    trained(tmp_path, PLAIN)
    with pytest.raises(CheckpointError, match="engine differ"):
        trained(tmp_path, deepspeed_system(2))


def test_batch_must_split_evenly_over_processes():
    assert micro_batch(8, 2) == 4
    with pytest.raises(ValueError, match="batch_size 4 is not divisible by the 3 processes"):
        micro_batch(4, 3)


def _torchrun(n: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_two_processes_under_torchrun_match_plain_and_resume(tmp_path, plain_run):
    """ZeRO-2 and ZeRO-3 over 2 gloo processes: the plain run's losses and weights, and a
    ZeRO-3 run that crashes and resumes from its checkpoint ends the same."""
    pytest.importorskip("deepspeed")
    plain_model, plain = plain_run
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    out = subprocess.run(
        [*TORCHRUN, "--standalone", "--nproc_per_node=2", str(WORKER), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["world"] == 2
    assert results["zero3"]["resumed_from"] == 3
    for stage in ("zero2", "zero3"):
        assert results[stage]["losses"] == pytest.approx(plain.losses, rel=1e-5), stage
        model = pico(seed=1)
        safetensors.torch.load_model(model, str(tmp_path / stage / "model.safetensors"))
        assert_close_weights(model, plain_model)


def test_deepspeed_bf16_autocast_matches_plain_bf16(tmp_path):
    pytest.importorskip("deepspeed")
    plain_model, plain = trained(tmp_path / "plain", TrainingConfig(precision="bf16"))
    model, result = trained(tmp_path / "ds", deepspeed_system(2, precision="bf16"))
    assert result.losses == pytest.approx(plain.losses, rel=1e-3)
    assert_close_weights(model, plain_model, atol=2e-3)


@pytest.mark.cuda
@cuda
def test_cuda_deepspeed_single_gpu_matches_plain(tmp_path):
    pytest.importorskip("deepspeed")
    dev = torch.device("cuda")
    runs = []
    for system in (TrainingConfig(fused_adamw=True), deepspeed_system(2, fused_adamw=True)):
        model = pico()
        result = train(
            model, corpus(), [0.6, 0.4], CFG, 3, tmp_path / system.engine, dev, system=system
        )
        runs.append((model.cpu(), result))
    assert runs[1][1].losses == pytest.approx(runs[0][1].losses, rel=1e-4)
    assert_close_weights(runs[1][0], runs[0][0], atol=1e-4)


# --- GPU settings that have a CPU equivalent ---------------------------------------------------


def test_fused_adamw_matches_foreach(tmp_path, plain_run):
    plain_model, plain = plain_run
    model, result = trained(tmp_path, TrainingConfig(fused_adamw=True))
    assert result.losses == pytest.approx(plain.losses, rel=1e-5)
    assert_close_weights(model, plain_model)


def test_bf16_autocast_trains_fp32_weights_close_to_fp32(tmp_path, plain_run):
    _, plain = plain_run
    model, result = trained(tmp_path, TrainingConfig(precision="bf16"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.losses != plain.losses  # really computed in bf16
    assert result.losses == pytest.approx(plain.losses, rel=2e-2)
    assert result.losses[-1] < result.losses[0] - 0.1
    assert all(math.isfinite(x) for x in result.losses)


@pytest.mark.parametrize(("emulated", "warned"), [(True, 1), (False, 0)])
def test_bf16_on_a_cpu_that_emulates_it_warns_once(monkeypatch, caplog, emulated, warned):
    monkeypatch.setattr(base, "cpu_emulates_bf16", lambda: emulated)
    base._warn_emulated_bf16.cache_clear()
    with caplog.at_level("WARNING", logger=base.__name__):
        for _ in range(3):
            with base.autocast(TrainingConfig(precision="bf16"), CPU):
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        with base.autocast(PLAIN, CPU):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == warned
    assert all("training.precision: bf16" in line and "precision: fp32" in line for line in lines)


@pytest.mark.cuda
@cuda
def test_cuda_bf16_fused_compiled_run_trains(tmp_path):
    cfg = TrainConfig(steps=20, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=10)
    system = TrainingConfig(precision="bf16", fused_adamw=True, compile=True)
    model = pico()
    dev = torch.device("cuda")
    result = train(model, corpus(), [0.5, 0.5], cfg, 0, tmp_path, dev, system=system)
    assert next(model.parameters()).device.type == "cuda"
    assert result.losses[-1] < result.losses[0] - 0.5


def test_deepspeed_config_errors_name_the_field():
    with pytest.raises(ValueError, match="offload_param needs zero_stage 3"):
        DeepSpeedConfig(zero_stage=2, offload_param=True)
    with pytest.raises(ValueError, match="offload_optimizer needs zero_stage 1, 2 or 3"):
        DeepSpeedConfig(zero_stage=0, offload_optimizer=True)


def test_gpu_small_preset_is_a_100m_model_on_deepspeed():
    exp = load_experiment(ROOT / "configs" / "gpu-small.yaml")
    with torch.device("meta"):  # shapes only: no 440 MB of weights
        model = build_model(
            exp.model,
            exp.data.vocab_size,
            exp.data.block_size,
            0,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    n = parameter_count(model)
    assert 100e6 <= n <= 120e6, n
    t = exp.training
    assert (t.engine, t.deepspeed.zero_stage, t.precision, t.fused_adamw) == (
        "deepspeed",
        2,
        "bf16",
        True,
    )
    assert micro_batch(t.expert.batch_size, 8) == 4
    assert exp.model.attn_implementation == "sdpa"


def test_docs_example_is_a_valid_training_section():
    text = (ROOT / "docs" / "scale.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, flags=re.S)
    assert block, "no yaml example in docs/scale.md"
    exp = parse_experiment(yaml.safe_load(block.group(1)), "docs/scale.md example")
    assert exp.training.engine == "deepspeed" and exp.training.deepspeed.zero_stage == 2


def test_zero3_leaves_torch_functional_linear_alone(tmp_path):
    """A ZeRO-3 run must not patch F.linear for the rest of the process (it breaks HVPs)."""
    pytest.importorskip("deepspeed")
    trained(tmp_path, deepspeed_system(3))
    assert torch.nn.functional.linear is torch._C._nn.linear


@pytest.mark.parametrize("stage", [1, 3])
def test_deepspeed_tail_average_matches_plain(tmp_path, stage):
    """Iterates 5-8 averaged; the run crashes at step 7 and resumes mid-tail from step 6."""
    pytest.importorskip("deepspeed")
    cfg = CFG.model_copy(update={"average_last": 0.5})
    plain_model, _ = trained(tmp_path / "plain", PLAIN, cfg)
    last_model, _ = trained(tmp_path / "last", PLAIN)

    def crash_at_7(step, total, loss):
        if step == 7:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        trained(tmp_path / "ds", deepspeed_system(stage), cfg, progress=crash_at_7)
    model, result = trained(tmp_path / "ds", deepspeed_system(stage), cfg)
    assert result.resumed_from == 6
    assert_close_weights(model, plain_model)
    gap = (model.lm_head.weight - last_model.lm_head.weight).abs().max()
    assert gap > 1e-3  # the average is not the last iterate
