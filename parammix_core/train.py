"""One training loop for the base, the domain experts and the real mixed-data runs.

Every run draws its batches from per-domain token blocks by a mixture `weights` (a one-hot for
an expert, uniform for the base, alpha for a validation run), so "same steps and
hyper-parameters" is literally the same code.

Checkpoints make a retried task resume instead of restart, and resuming is exact: a run that
crashes and resumes ends with weights bit-identical to an uninterrupted run. A checkpoint is
the directory `step-{step:07d}/` holding

    model.safetensors      the weights (full, whatever the engine)
    optimizer.safetensors  AdamW state tensors and metadata (JSON) in the engine's layout:
                           by parameter index for the plain engine, full moments by
                           parameter name for DeepSpeed (`parammix_core.engines`)
    rng.safetensors        torch CPU RNG state and the batch generator state (uint8)
    average.safetensors    the tail average so far (`average_last` > 0, once the tail began)
    state.json             step, losses so far, seed, tokens seen, the run's identity

It is written under a temporary name, `state.json` last, then renamed: a directory without
`state.json` is never trusted. The newest two complete ones are kept, everything else is
removed. No pickles: everything is safetensors or JSON.

How a step runs is the engine's business (`training.engine`: plain, or DeepSpeed ZeRO across
processes; bf16 autocast, fused AdamW, torch.compile): the loop, the batches and the schedule
are the same for all. Under several processes every one runs this loop; only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import safe_open

from parammix_core import simplex
from parammix_core.averaging import TailAverage, tail_count
from parammix_core.blending import BlendedSampler
from parammix_core.config import TrainConfig, TrainingConfig
from parammix_core.engines import Engine, make_engine, process_device, system_spec

KEEP_CHECKPOINTS = 2
_CHECKPOINT_RE = re.compile(r"^step-(\d{7})$")


class CheckpointError(ValueError):
    """A checkpoint that belongs to another run or cannot be read; names the directory."""


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    losses: list[float]  # one per step, including steps done before a resume
    resumed_from: int | None  # step of the checkpoint this process started from
    tokens_seen: int
    seconds: float  # wall time of this process only


# --- schedule and batches ---------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for the 0-based `step`."""
    # 1) linear warm-up: step 0 gets lr/warmup, the last warm-up step gets the full lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    # 2) cosine from lr down to the floor, reached exactly at the last step (steps - 1)
    floor = cfg.min_lr_ratio * cfg.lr
    span = max(1, cfg.steps - 1 - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - floor)


def sample_batch(
    blocks: list[torch.Tensor], weights: torch.Tensor, batch_size: int, gen: torch.Generator
) -> torch.Tensor:
    """A batch of rows (B, T): per row a domain ~ Categorical(weights), then a uniform block.

    blocks[k] is domain k's (N_k, T) token blocks; all randomness comes from `gen`.
    """
    domain = torch.multinomial(weights, batch_size, replacement=True, generator=gen)  # (B,)
    sizes = torch.tensor([b.shape[0] for b in blocks], dtype=torch.float64)  # (K,)
    u = torch.rand(batch_size, generator=gen, dtype=torch.float64)  # (B,)
    # floor(u * N) is uniform on 0..N-1; the clamp only guards float rounding at u ~ 1
    index = torch.minimum((u * sizes[domain]).long(), sizes[domain].long() - 1)  # (B,)
    return torch.stack(
        [blocks[d][i] for d, i in zip(domain.tolist(), index.tolist(), strict=True)]
    )  # (B, T)


def _check_inputs(
    blocks: dict[str, torch.Tensor], weights: Sequence[float]
) -> tuple[list[torch.Tensor], np.ndarray]:
    names = list(blocks)
    if not names:
        raise ValueError("no domains: blocks is empty")
    alpha = simplex.validate(weights, names)
    widths = set()
    for name, b in blocks.items():
        if b.ndim != 2 or b.is_floating_point() or b.is_complex():
            raise ValueError(
                f"blocks[{name!r}]: expected integer token blocks (N, T), got {b.dtype} "
                f"{tuple(b.shape)}"
            )
        widths.add(b.shape[1])
    if len(widths) != 1:
        raise ValueError(f"blocks have different lengths T: {sorted(widths)}")
    empty = [n for n, a in zip(names, alpha, strict=True) if a > 0 and blocks[n].shape[0] == 0]
    if empty:
        raise ValueError(f"domain(s) {empty} have positive weight but no blocks")
    return [blocks[n] for n in names], alpha


# --- checkpoints ------------------------------------------------------------------------------


def _identity(
    cfg: TrainConfig, system: TrainingConfig, seed: int, names: list[str], alpha: np.ndarray
) -> dict:
    """What a checkpoint must match to be resumed by this run."""
    return {
        "seed": seed,
        "domains": names,
        "weights": [float(a) for a in alpha],
        "config": cfg.model_dump(mode="json", exclude={"checkpoint_every"}),
        "system": system_spec(system),
    }


def _complete_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """(step, dir) of every checkpoint whose state.json exists, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for d in checkpoint_dir.iterdir():
        m = _CHECKPOINT_RE.match(d.name)
        if m and (d / "state.json").is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def _save_checkpoint(
    checkpoint_dir: Path,
    step: int,
    engine: Engine,
    gen: torch.Generator,
    state: dict,
    average: TailAverage | None,
) -> None:
    final = checkpoint_dir / f"step-{step:07d}"
    tmp = checkpoint_dir / f".tmp-step-{step:07d}"
    if engine.is_writer:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    engine.save(tmp)  # collective under DeepSpeed: every process gathers, the writer writes
    if engine.is_writer:
        if average is not None:
            average.save(tmp)
        _finish_checkpoint(checkpoint_dir, tmp, final, gen, state)
    engine.barrier()  # nobody runs ahead of a checkpoint it might have to resume from


def _finish_checkpoint(
    checkpoint_dir: Path, tmp: Path, final: Path, gen: torch.Generator, state: dict
) -> None:
    safetensors.torch.save_file(
        {"torch_cpu": torch.get_rng_state(), "batch": gen.get_state()}, tmp / "rng.safetensors"
    )
    (tmp / "state.json").write_text(json.dumps(state))  # last: marks the checkpoint complete
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    # keep the newest complete checkpoints; drop older ones and leftovers of crashed writes
    keep = {d for _, d in _complete_checkpoints(checkpoint_dir)[-KEEP_CHECKPOINTS:]}
    for d in checkpoint_dir.iterdir():
        if d not in keep and _CHECKPOINT_RE.match(d.name.removeprefix(".tmp-")):
            shutil.rmtree(d)


def _read_state(path: Path, identity: dict) -> dict:
    """The checkpoint's state.json, refused unless this run wrote it."""
    state = json.loads((path / "state.json").read_text())
    if state.get("identity") != identity:
        raise CheckpointError(
            f"{path}: written by a different run (seed, domains, weights, training config or "
            "engine differ); use another checkpoint_dir or delete it"
        )
    return state


def _restore_rng(path: Path, gen: torch.Generator) -> None:
    with safe_open(path / "rng.safetensors", framework="pt") as f:
        torch.set_rng_state(f.get_tensor("torch_cpu"))
        gen.set_state(f.get_tensor("batch"))


# --- the loop ---------------------------------------------------------------------------------


def train(
    model: torch.nn.Module,
    blocks: dict[str, torch.Tensor],
    weights: Sequence[float],
    cfg: TrainConfig,
    seed: int,
    checkpoint_dir: Path,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None = None,
    *,
    system: TrainingConfig | None = None,
) -> TrainResult:
    """Train `model` in place for cfg.steps on batches drawn by `weights` over the domains.

    Args:
        blocks: domain -> (N, T) integer token blocks, tensors or the on-disk
            `TokenBlocks` of a prepared corpus (kept where they are; rows are read and moved to
            `device` per batch). Key order is the order of `weights`.
        weights: a mixture on the simplex over the domains (zero weights allowed).
        checkpoint_dir: resumable checkpoints; a complete one found here is resumed.
        progress: called as progress(step, total, loss) after every step.
        system: the experiment's `training` section, for its engine and GPU settings
            (engine, deepspeed, precision, fused_adamw, compile); None is the plain fp32 engine.
    Returns:
        TrainResult; the model is left on `device`, in eval mode, with the final weights (the
        mean of the last iterates with `cfg.average_last` > 0).
    """
    start_time = time.perf_counter()
    domain_blocks, alpha = _check_inputs(blocks, weights)
    names = list(blocks)
    system = system if system is not None else TrainingConfig()
    identity = _identity(cfg, system, seed, names, alpha)
    checkpoint_dir = Path(checkpoint_dir)
    tokens_per_step = cfg.batch_size * domain_blocks[0].shape[1]
    probs = torch.as_tensor(alpha, dtype=torch.float64)  # (K,)

    device = process_device(system, device)
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG is left as it was
        torch.default_generator.manual_seed(seed)
        step, losses, resumed_from = 0, [], None
        existing = _complete_checkpoints(checkpoint_dir)
        if existing:  # weights first: DeepSpeed shards them when the engine starts
            resumed_from, path = existing[-1]
            state = _read_state(path, identity)
            safetensors.torch.load_model(model, str(path / "model.safetensors"), device=str(device))
            step, losses = state["step"], state["losses"]
        model.train()  # before the engine starts: ZeRO-3 trains a copy of the model
        engine = make_engine(model, cfg, system, device)
        count = tail_count(cfg.average_last, cfg.steps)
        average = TailAverage(count, cfg.steps) if count else None
        if resumed_from is not None:
            engine.load_optimizer(path)
            _restore_rng(path, gen)
            if average is not None:
                average.load(path, step, device)
        blended = None
        if cfg.sampler == "blended":
            sizes = [b.shape[0] for b in domain_blocks]
            blended = BlendedSampler(sizes, alpha, seed, start_row=step * cfg.batch_size)

        while step < cfg.steps:
            engine.set_lr(lr_at(step, cfg))
            # every process draws the same global batch; an engine trains on its share
            if blended is None:
                batch = sample_batch(domain_blocks, probs, cfg.batch_size, gen)  # (B, T)
            else:
                batch = blended.batch(domain_blocks, cfg.batch_size)  # (B, T)
            losses.append(engine.train_step(batch))
            step += 1
            if average is not None and average.averaged(step):
                average.update(step, engine.weights())

            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                state = {
                    "step": step,
                    "losses": losses,
                    "seed": seed,
                    "tokens_seen": step * tokens_per_step,
                    "identity": identity,
                }
                _save_checkpoint(checkpoint_dir, step, engine, gen, state, average)
            if progress is not None:
                progress(step, cfg.steps, losses[-1])
        engine.finish()
        if average is not None:
            average.apply(model)
    model.eval()
    return TrainResult(
        steps=step,
        final_loss=losses[-1],
        losses=losses,
        resumed_from=resumed_from,
        tokens_seen=step * tokens_per_step,
        seconds=time.perf_counter() - start_time,
    )
