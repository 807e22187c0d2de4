"""Tail averaging: a run returns the mean of its weights after each of its last steps.

The weights a short run ends on carry the noise of its last few batches; the mean of the
iterates over the run's tail (stochastic weight averaging, Izmailov et al. 2018; LAWA,
Kaddour 2022) keeps the run's progress and averages part of that noise away. The average is
uniform over the last `count` iterates (those after steps total - count + 1 ... total, 1-based)
and is kept in fp32 beside the weights, so a run that resumes mid-tail continues it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch

FILE = "average.safetensors"


def tail_count(fraction: float, steps: int) -> int:
    """Iterates averaged for `fraction` of a run of `steps` steps: 0 when off, else >= 1."""
    return 0 if fraction == 0 else min(steps, max(1, round(fraction * steps)))


class TailAverage:
    """The running mean of the weights after each of a run's last `count` steps."""

    def __init__(self, count: int, steps: int):
        self.first = steps - count + 1  # the first 1-based step whose weights are averaged
        self.mean: dict[str, torch.Tensor] = {}

    def averaged(self, step: int) -> int:
        """How many iterates the mean holds once `step` steps are done."""
        return max(0, step - self.first + 1)

    def update(self, step: int, weights: Mapping[str, torch.Tensor]) -> None:
        """Add the weights after `step` steps (1-based) if that step is in the tail."""
        n = self.averaged(step)
        if n == 0:
            return
        if n == 1:
            self.mean = {k: w.detach().to(torch.float32).clone() for k, w in weights.items()}
            return
        for k, w in weights.items():
            self.mean[k].lerp_(w.detach().to(self.mean[k]), 1.0 / n)  # mean += (w - mean) / n

    def save(self, out_dir: Path) -> None:
        if self.mean:
            cpu = {k: v.to("cpu").contiguous() for k, v in self.mean.items()}
            safetensors.torch.save_file(cpu, Path(out_dir) / FILE)

    def load(self, ckpt_dir: Path, step: int, device: torch.device) -> None:
        """The mean a checkpoint of `step` steps holds (none before the tail starts)."""
        if self.averaged(step) == 0:
            return
        path = Path(ckpt_dir) / FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the checkpoint is mid-tail of an average")
        self.mean = safetensors.torch.load_file(path, device=str(device))

    @torch.no_grad()
    def apply(self, model: torch.nn.Module) -> None:
        """Put the mean into `model`'s parameters (buffers are left as they are)."""
        params = dict(model.named_parameters())
        if set(params) != set(self.mean):
            raise ValueError(
                f"the average holds {len(self.mean)} tensors, the model {len(params)} parameters"
            )
        for name, p in params.items():
            p.copy_(self.mean[name].to(p))
