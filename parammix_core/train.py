"""One training loop for the base, the domain experts and the real mixed-data runs.

Every run draws its batches from per-domain token blocks by a mixture `weights` (a one-hot for
an expert, uniform for the base, alpha for a validation run), so "same steps and
hyper-parameters" is literally the same code.

Checkpoints make a retried task resume instead of restart, and resuming is exact: a run that
crashes and resumes ends with weights bit-identical to an uninterrupted run. A checkpoint is
the directory `step-{step:07d}/` holding

    model.safetensors      the weights
    optimizer.safetensors  AdamW state tensors; param groups in the header metadata (JSON)
    rng.safetensors        torch CPU RNG state and the batch generator state (uint8)
    state.json             step, losses so far, seed, tokens seen, the run's identity

It is written under a temporary name, `state.json` last, then renamed: a directory without
`state.json` is never trusted. The newest two complete ones are kept, everything else is
removed. No pickles: everything is safetensors or JSON.
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
from parammix_core.config import TrainConfig

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


def _identity(cfg: TrainConfig, seed: int, names: list[str], alpha: np.ndarray) -> dict:
    """What a checkpoint must match to be resumed by this run."""
    return {
        "seed": seed,
        "domains": names,
        "weights": [float(a) for a in alpha],
        "config": cfg.model_dump(mode="json", exclude={"checkpoint_every"}),
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


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten the optimizer state: tensors as 'param_index.name', the rest as JSON."""
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["optimizer"])
        state: dict[int, dict] = {}
        names = f.keys()
        for name in names:
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = f.get_tensor(name)
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(
    checkpoint_dir: Path,
    step: int,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    state: dict,
) -> None:
    final = checkpoint_dir / f"step-{step:07d}"
    tmp = checkpoint_dir / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
    tensors, meta = _optimizer_tensors(opt)
    safetensors.torch.save_file(
        tensors, tmp / "optimizer.safetensors", metadata={"optimizer": json.dumps(meta)}
    )
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


def _resume(
    path: Path,
    identity: dict,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    device: torch.device,
) -> dict:
    """Restore weights, optimizer and RNG from `path`; return its state.json."""
    state = json.loads((path / "state.json").read_text())
    if state.get("identity") != identity:
        raise CheckpointError(
            f"{path}: written by a different run (seed, domains, weights or training config "
            "differ); use another checkpoint_dir or delete it"
        )
    safetensors.torch.load_model(model, str(path / "model.safetensors"), device=str(device))
    _load_optimizer(opt, path / "optimizer.safetensors")
    with safe_open(path / "rng.safetensors", framework="pt") as f:
        torch.set_rng_state(f.get_tensor("torch_cpu"))
        gen.set_state(f.get_tensor("batch"))
    return state


# --- the loop ---------------------------------------------------------------------------------


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    # nanoGPT's split: decay matrices and embeddings, never norm gains or biases
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # foreach on the CPU: measured slightly faster there (torch picks it itself on CUDA)
    foreach = True if device.type == "cpu" else None
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=foreach)


def train(
    model: torch.nn.Module,
    blocks: dict[str, torch.Tensor],
    weights: Sequence[float],
    cfg: TrainConfig,
    seed: int,
    checkpoint_dir: Path,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train `model` in place for cfg.steps on batches drawn by `weights` over the domains.

    Args:
        blocks: domain -> (N, T) integer token blocks (kept where they are; rows are moved to
            `device` per batch). Key order is the order of `weights`.
        weights: a mixture on the simplex over the domains (zero weights allowed).
        checkpoint_dir: resumable checkpoints; a complete one found here is resumed.
        progress: called as progress(step, total, loss) after every step.
    Returns:
        TrainResult; the model is left on `device`, in eval mode, with the final weights.
    """
    start_time = time.perf_counter()
    domain_blocks, alpha = _check_inputs(blocks, weights)
    names = list(blocks)
    identity = _identity(cfg, seed, names, alpha)
    checkpoint_dir = Path(checkpoint_dir)
    tokens_per_step = cfg.batch_size * domain_blocks[0].shape[1]
    probs = torch.as_tensor(alpha, dtype=torch.float64)  # (K,)

    model.to(device)
    opt = _make_optimizer(model, cfg, device)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG is left as it was
        torch.default_generator.manual_seed(seed)
        step, losses, resumed_from = 0, [], None
        existing = _complete_checkpoints(checkpoint_dir)
        if existing:
            resumed_from, path = existing[-1]
            state = _resume(path, identity, model, opt, gen, device)
            step, losses = state["step"], state["losses"]

        model.train()
        while step < cfg.steps:
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = sample_batch(domain_blocks, probs, cfg.batch_size, gen)
            batch = batch.to(device=device, dtype=torch.long)  # (B, T)
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())  # .item() syncs with the device once per step
            step += 1

            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                state = {
                    "step": step,
                    "losses": losses,
                    "seed": seed,
                    "tokens_seen": step * tokens_per_step,
                    "identity": identity,
                }
                _save_checkpoint(checkpoint_dir, step, model, opt, gen, state)
            if progress is not None:
                progress(step, cfg.steps, losses[-1])
    model.eval()
    return TrainResult(
        steps=step,
        final_loss=losses[-1],
        losses=losses,
        resumed_from=resumed_from,
        tokens_seen=step * tokens_per_step,
        seconds=time.perf_counter() - start_time,
    )
