"""Per-domain held-out loss: the cheapest, least noisy signal of what a merge has learned.

Benchmarks answer "can it do X"; the held-out cross-entropy of each domain answers "how much
of domain k is in these weights", with a standard error small enough to rank close mixtures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class HeldoutError(ValueError):
    """Held-out blocks that cannot be scored; the message names the problem and the shape."""


def heldout_loss(
    model: torch.nn.Module, blocks: torch.Tensor, batch_size: int, device: torch.device | str
) -> tuple[float, float]:
    """Mean next-token cross-entropy (nats) over packed blocks, and its standard error.

    Each block of T tokens contributes T-1 predictions. The standard error is taken over blocks
    (std of the per-block means / sqrt(N)), because tokens within a block are correlated; with a
    single block it is NaN.

    Returns:
        (mean loss, standard error of the mean).
    """
    return mean_and_stderr(block_losses(model, blocks, batch_size, device))


def mean_and_stderr(means: torch.Tensor) -> tuple[float, float]:
    """Mean of the (N,) per-block losses and its standard error over blocks (NaN for N = 1)."""
    stderr = (means.std() / math.sqrt(len(means))).item() if len(means) > 1 else math.nan
    return means.mean().item(), stderr


def block_losses(
    model: torch.nn.Module, blocks: torch.Tensor, batch_size: int, device: torch.device | str
) -> torch.Tensor:
    """(N,) float64 mean next-token cross-entropy of each block: the loss's per-document values.

    Args:
        model: a causal LM whose forward returns `.logits` of shape (B, T, V).
        blocks: (N, T) integer token ids, T >= 2.
        batch_size: blocks per forward pass.
        device: where the model lives; blocks are moved there batch by batch.
    """
    if blocks.ndim != 2 or blocks.shape[0] < 1 or blocks.shape[1] < 2:
        raise HeldoutError(f"held-out blocks must be (N>=1, T>=2), got {tuple(blocks.shape)}")
    if blocks.dtype.is_floating_point or blocks.dtype == torch.bool:
        raise HeldoutError(f"held-out blocks must hold integer token ids, got {blocks.dtype}")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab is not None and (blocks.min() < 0 or blocks.max() >= vocab):
        raise HeldoutError(
            f"held-out token ids span [{blocks.min()}, {blocks.max()}], outside the model's "
            f"vocabulary of {vocab}"
        )
    if batch_size < 1:
        raise HeldoutError(f"batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    per_block = []
    try:
        with torch.inference_mode():
            for start in range(0, blocks.shape[0], batch_size):
                batch = blocks[start : start + batch_size].to(device, torch.long)  # (B, T)
                logits = model(batch).logits[:, :-1].float()  # (B, T-1, V)
                # Flattened (B*(T-1), V) rows: ~4x faster on CPU than the (B, V, T-1) layout.
                losses = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none"
                ).view(batch.shape[0], -1)  # (B, T-1)
                per_block.append(losses.mean(dim=1).cpu())  # (B,)
    finally:
        model.train(was_training)
    return torch.cat(per_block).double()  # (N,)
