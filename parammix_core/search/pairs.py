"""(context, continuation) token pairs in padded batches, and the continuation's log-likelihood.

A benchmark document as target data is its gold answer given its prompt: only the
continuation's tokens are scored, as lm-eval scores a log-likelihood request. The pairs are
tokenised by lm-eval (`evaluate.target.encode_pairs`); here they are cut and padded the way
lm-eval's HFLM feeds them to the model: the last max_length + 1 tokens of context +
continuation, the input all but the last token, the continuation's tokens predicted at the
last len(continuation) positions. Rows are right-padded, so every position a row scores sees
exactly the tokens it would see alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from parammix_core.search.common import SearchError

IGNORE = -100  # a target position that is not scored


@dataclass(frozen=True)
class PairBatch:
    """Padded model inputs and per-position targets of B pairs, with each pair's weight."""

    input_ids: torch.Tensor  # (B, L) int64, right-padded
    attention_mask: torch.Tensor  # (B, L) int64, 1 on real tokens
    targets: torch.Tensor  # (B, L) int64: the next token where scored, else IGNORE
    weights: torch.Tensor  # (B,) float64

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.targets.to(device),
            self.weights.to(device),
        )


def pair_batches(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    weights: np.ndarray,
    max_length: int,
    batch_size: int,
) -> list[PairBatch]:
    """Batches of `batch_size` pairs, in order.

    Args:
        pairs: (context ids, continuation ids) per document; the context non-empty.
        weights: (S,) weight of each pair.
        max_length: the model's context, in tokens.
    """
    if not pairs or len(weights) != len(pairs):
        raise SearchError(f"target: {len(pairs)} pairs and {len(weights)} weights")
    rows = [_row(i, ctx, cont, max_length) for i, (ctx, cont) in enumerate(pairs)]
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)  # padding: masked, unscored
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        targets = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        for b, (row_ids, row_targets) in enumerate(chunk):
            ids[b, : len(row_ids)] = torch.tensor(row_ids)
            mask[b, : len(row_ids)] = 1
            targets[b, : len(row_targets)] = torch.tensor(row_targets)
        w = torch.as_tensor(weights[start : start + len(chunk)], dtype=torch.float64)
        out.append(PairBatch(ids, mask, targets, w))
    return out


def _row(
    i: int, context: Sequence[int], continuation: Sequence[int], max_length: int
) -> tuple[list[int], list[int]]:
    """One pair's input ids and targets (IGNORE before the continuation), as HFLM cuts them."""
    n = len(continuation)
    if not context or n == 0:
        raise SearchError(f"target: document {i} has an empty context or continuation")
    if n > max_length:
        raise SearchError(
            f"target: document {i}'s answer has {n} tokens, more than the model's context "
            f"of {max_length}"
        )
    whole = (list(context) + list(continuation))[-(max_length + 1) :]
    ids = whole[:-1]
    targets = [IGNORE] * (len(ids) - n) + whole[-n:]
    return ids, targets


def continuation_logprobs(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """log p(continuation | context) per pair, (B,), from the model's logits (B, L, V)."""
    scored = batch.targets != IGNORE  # (B, L)
    log_p = torch.log_softmax(logits.float(), dim=-1)
    picked = log_p.gather(-1, batch.targets.clamp(min=0)[..., None])[..., 0]  # (B, L)
    return (picked.double() * scored).sum(dim=1)


def pair_logprobs(
    model: torch.nn.Module, batches: Sequence[PairBatch], device: torch.device | str
) -> np.ndarray:
    """log p(continuation | context) of every pair under `model`, shape (S,)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for batch in batches:
                batch = batch.to(device)
                logits = model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
                ).logits
                out.append(continuation_logprobs(logits, batch).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()
