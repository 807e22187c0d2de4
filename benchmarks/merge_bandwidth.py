"""In-memory merge speed against the machine's copy bandwidth, measured side by side.

    python benchmarks/merge_bandwidth.py [--params 25000000] [--experts 3] [--repeats 20]

A model of a few Linear layers with `--params` float32 parameters gets an `InMemoryMerger` over
K random experts; `apply(alpha)` is timed against `dst.copy_(src)` of a buffer the size of the
model (the same number of bytes written), against the obvious per-parameter Python loop and
against `torch.addmv(base, deltas.T, alpha, out=flat)` (the merger's former formulation, base as
the bias: the output is first a copy of the base), all called in turn so they share the
machine's load.

Two ratios are printed. `merged/copy` is merged bytes per second over copied bytes per second,
as issue 8 words it; a merge has to read K+1 buffers to write one, so a memory-bound merge tops
out at 2/(K+2) of a copy there. `traffic/copy` divides the bytes each one moves through memory
(merge: (K+2)·4P, copy: 2·4P) by its time: the fraction of the copy's memory throughput the
merge reaches (goal >= 0.8).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from parammix_core.merge import InMemoryMerger


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, called in turn so all see the same load."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats + 1):  # the first round warms up
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", type=int, default=25_000_000)
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    width = 1024
    layers = max(1, args.params // (width * width + width))
    model = torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(layers)))
    base = {n: t.clone() for n, t in model.state_dict().items()}
    experts = [
        {n: t + torch.randn_like(t) * 0.01 for n, t in base.items()} for _ in range(args.experts)
    ]
    merger = InMemoryMerger(model, base, experts)
    size = sum(t.numel() for t in base.values())
    alphas = np.random.default_rng(0).dirichlet(np.ones(args.experts), size=args.repeats + 1)
    it = iter(np.concatenate([alphas] * 4))

    src, dst = torch.randn(size), torch.empty(size)

    params = list(model.parameters())
    bases = [base[n] for n in base]
    deltas = [[e[n] - base[n] for n in base] for e in experts]
    base_flat = torch.cat([b.reshape(-1) for b in bases])  # (P,)
    delta_rows = torch.stack([torch.cat([t.reshape(-1) for t in d]) for d in deltas])  # (K, P)
    out = torch.empty(size)

    @torch.no_grad()
    def loop() -> None:
        alpha = next(it).tolist()
        for i, param in enumerate(params):
            param.copy_(bases[i])
            for a, d in zip(alpha, deltas, strict=True):
                param.add_(d[i], alpha=a)

    secs = timed(
        {
            "copy": lambda: dst.copy_(src),
            "merge": lambda: merger.apply(next(it)),
            "loop": loop,
            "addmv": lambda: torch.addmv(
                base_flat, delta_rows.T, torch.from_numpy(next(it)).float(), out=out
            ),
        },
        args.repeats,
    )
    copy_s, merge_s, loop_s, addmv_s = (secs[n] for n in ("copy", "merge", "loop", "addmv"))
    merger.apply(alphas[0])
    check = torch.cat([q.detach().reshape(-1) for q in params])
    expected = torch.cat([b.reshape(-1) for b in bases]) + sum(
        a * torch.cat([t.reshape(-1) for t in d])
        for a, d in zip(alphas[0].tolist(), deltas, strict=True)
    )
    err = (check - expected).abs().max().item()

    k, nbytes = args.experts, size * 4
    print(f"parameters: {size:,} float32 ({nbytes / 1e6:.0f} MB), K = {k}, threads {args.threads}")
    print(f"copy  : {copy_s * 1e3:7.2f} ms  {nbytes / copy_s / 1e9:5.2f} GB/s copied")
    print(f"merge : {merge_s * 1e3:7.2f} ms  {nbytes / merge_s / 1e9:5.2f} GB/s merged (apply)")
    print(f"loop  : {loop_s * 1e3:7.2f} ms  {nbytes / loop_s / 1e9:5.2f} GB/s merged (Python loop)")
    print(
        f"addmv : {addmv_s * 1e3:7.2f} ms  {nbytes / addmv_s / 1e9:5.2f} GB/s merged (base as bias)"
    )
    print(f"merged/copy  : {copy_s / merge_s:.2f} (memory-bound limit 2/(K+2) = {2 / (k + 2):.2f})")
    print(f"traffic/copy : {(k + 2) * copy_s / (2 * merge_s):.2f} (goal >= 0.8)")
    print(f"per-parameter loop / apply time: {loop_s / merge_s:.2f}x")
    print(f"addmv with the base as bias / apply time: {addmv_s / merge_s:.2f}x")
    print(f"max |apply - float32 reference|: {err:.1e}")


if __name__ == "__main__":
    main()
