"""Task-vector geometry: Gram matrices and cosines of the task vectors theta_k - theta_base,
for the whole model and per layer, holding at most two experts at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from parammix_core.interference.probing import CHUNK_ELEMENTS, ProbeError

LAYER = re.compile(r"^(.*\blayers\.\d+)\.")  # "model.layers.3.mlp.up_proj.weight" -> layer 3


def task_vector_grams(
    base: Mapping[str, Tensor], expert: Callable[[int], Mapping[str, Tensor]], k: int
) -> dict[str, Tensor]:
    """Per layer group (`layer_group`), the (K, K) float64 Gram matrix of the task vectors
    theta_k - theta_base; the whole model's is their sum.

    At most two experts are held at once: `expert(i)` is called K(K+1)/2 times (expert j again
    for every i > j), trading loads for memory. Groups appear in the order of their first
    tensor in `base`.
    """
    if k < 1:
        raise ProbeError("need at least one expert")
    grams: dict[str, Tensor] = {}
    for i in range(k):
        first = _checked(base, expert(i), i)
        for j in range(i + 1):
            second = first if j == i else _checked(base, expert(j), j)
            for group, dot in _task_dots(base, first, second).items():
                gram = grams.setdefault(group, torch.zeros(k, k, dtype=torch.float64))
                gram[i, j] = gram[j, i] = dot
            del second
        del first  # before the next expert loads
    return grams


def _checked(base: Mapping[str, Tensor], expert: Mapping[str, Tensor], i: int) -> Mapping:
    for name, b in base.items():
        if name not in expert:
            raise ProbeError(f"expert {i} lacks tensor {name!r} of the base")
        if expert[name].shape != b.shape:
            raise ProbeError(
                f"expert {i} tensor {name!r} has shape {tuple(expert[name].shape)}, "
                f"base has {tuple(b.shape)}"
            )
    return expert


def _task_dots(
    base: Mapping[str, Tensor], a: Mapping[str, Tensor], b: Mapping[str, Tensor]
) -> dict[str, float]:
    """Per layer group, <a - base, b - base> in float64, a slice of each tensor at a time."""
    dots: dict[str, float] = {}
    for name, t in base.items():
        flat, x, y = t.reshape(-1), a[name].reshape(-1), b[name].reshape(-1)
        dot = 0.0
        for s in range(0, flat.numel(), CHUNK_ELEMENTS):
            origin = flat[s : s + CHUNK_ELEMENTS].double()
            dx = x[s : s + CHUNK_ELEMENTS].double() - origin
            dy = dx if y is x else y[s : s + CHUNK_ELEMENTS].double() - origin
            dot += float(dx @ dy)
        group = layer_group(name)
        dots[group] = dots.get(group, 0.0) + dot
    return dots


def gram_cosines(gram: Tensor) -> np.ndarray:
    """(K, K) cosines from a Gram matrix; NaN where a task vector is zero."""
    norms = gram.diagonal().sqrt()  # (K,)
    return (gram / (norms[:, None] * norms[None, :])).cpu().numpy()


def task_vector_cosines(
    base: Mapping[str, Tensor], experts: Sequence[Mapping[str, Tensor]]
) -> np.ndarray:
    """(K, K) cosine similarity of the whole-model task vectors theta_k - theta_base."""
    grams = task_vector_grams(base, experts.__getitem__, len(experts))
    return gram_cosines(sum(grams.values()))


def layer_group(name: str) -> str:
    """'model.layers.3.mlp.up_proj.weight' -> 'model.layers.3'; other tensors by their module
    ('model.embed_tokens', 'model.norm', 'lm_head')."""
    match = LAYER.match(name)
    return match.group(1) if match else name.rsplit(".", 1)[0]


def per_layer_cosines(
    base: Mapping[str, Tensor], experts: Sequence[Mapping[str, Tensor]]
) -> dict[str, np.ndarray]:
    """Task-vector cosines (K, K) per transformer layer, embeddings and head as their own groups.

    Groups appear in the order of their first tensor in `base`.
    """
    grams = task_vector_grams(base, experts.__getitem__, len(experts))
    return {g: gram_cosines(m) for g, m in grams.items()}
