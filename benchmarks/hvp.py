"""HVP cost against a gradient, on CPU with one thread.

For the default model (ModelConfig() shapes, vocab 2048, batch 8 x 128) and a ~27M-parameter
Llama (hidden 512, 6 layers, vocab 8192, batch 2 x 128) this prints:

- wall time of one HVP (forward-over-reverse, and double backward) / one gradient on the same
  batch (goal <= 2.5x for forward-over-reverse);
- K=4 vectors through one vmap call against 4 sequential single-vector HVPs (goal >= 1.5x);
- peak memory of each operation, each in a fresh subprocess: the process's peak resident set
  (VmHWM) after the op minus the resident set just before it. VmHWM is reset to the current
  resident set before the op (`/proc/self/clear_refs`), so building the model does not count.
  (`ru_maxrss` is no use here: a child inherits its parent's high-water mark across fork/exec.)

Times are medians of --repeats runs after one warm-up.

    python benchmarks/hvp.py [--repeats 3] [--only default|large]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from parammix_core.config import ModelConfig
from parammix_core.hvp import flat_params, gradient, hvp
from parammix_core.model import build_model, parameter_count

MODELS = {
    "default": (ModelConfig(), 2048, (8, 128)),
    "large": (
        ModelConfig(
            hidden_size=512, num_layers=6, num_heads=8, num_kv_heads=8, intermediate_size=1376
        ),
        8192,
        (2, 128),
    ),
}
K = 4


def setup(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    cfg, vocab, (b, t) = MODELS[name]
    model = build_model(cfg, vocab, t, 0, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(1, vocab, (b, t), generator=gen)  # (B, T)
    vectors = torch.randn(K, flat_params(model).numel(), generator=gen)  # (K, P)
    return model, batch, vectors


def operations(
    model: torch.nn.Module, batch: torch.Tensor, vectors: torch.Tensor
) -> dict[str, Callable[[], object]]:
    one = vectors[:1]
    return {
        "gradient": lambda: gradient(model, [batch]),
        "hvp_fwd_rev_1": lambda: hvp(model, batch, one, "forward_over_reverse"),
        "hvp_double_1": lambda: hvp(model, batch, one, "double_backward"),
        "hvp_vmap_4": lambda: hvp(model, batch, vectors, "forward_over_reverse"),
        "hvp_seq_4": lambda: [
            hvp(model, batch, vectors[i : i + 1], "forward_over_reverse") for i in range(K)
        ],
        "hvp_double_4": lambda: hvp(model, batch, vectors, "double_backward"),
    }


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status ("VmRSS", "VmHWM") in MiB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB -> MiB


def measure_memory(name: str, op: str) -> None:
    """Run in a fresh process: one operation, print its peak memory above the start as JSON."""
    torch.set_num_threads(1)
    model, batch, vectors = setup(name)
    fn = operations(model, batch, vectors)[op]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = status_mb("VmRSS")
    fn()
    peak = status_mb("VmHWM")
    print(json.dumps({"before_mb": before, "peak_mb": peak, "extra_mb": peak - before}))


def memory_in_subprocess(name: str, op: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory", name, op],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(name: str, repeats: int) -> None:
    model, batch, vectors = setup(name)
    ops = operations(model, batch, vectors)
    cfg, vocab, (b, t) = MODELS[name]
    print(
        f"\n## {name}: {parameter_count(model) / 1e6:.2f}M params, hidden {cfg.hidden_size}, "
        f"{cfg.num_layers} layers, vocab {vocab}, batch {b} x {t}, "
        f"attn {cfg.attn_implementation}"
    )
    secs = {op: median_seconds(fn, repeats) for op, fn in ops.items()}
    mem = {op: memory_in_subprocess(name, op) for op in ops}
    grad_s, grad_mb = secs["gradient"], mem["gradient"]["extra_mb"]
    print(f"{'operation':<16}{'median s':>10}{'x gradient':>12}{'extra MB':>10}{'x gradient':>12}")
    for op in ops:
        extra = mem[op]["extra_mb"]
        print(
            f"{op:<16}{secs[op]:>10.3f}{secs[op] / grad_s:>12.2f}"
            f"{extra:>10.0f}{extra / grad_mb if grad_mb > 0 else float('nan'):>12.2f}"
        )
    print(
        f"HVP(fwd-over-rev)/gradient = {secs['hvp_fwd_rev_1'] / grad_s:.2f}x (goal <= 2.5x); "
        f"4 sequential / vmap of 4 = {secs['hvp_seq_4'] / secs['hvp_vmap_4']:.2f}x "
        "(goal >= 1.5x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--memory", nargs=2, metavar=("MODEL", "OP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        measure_memory(*args.memory)
        return
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, CPU")
    for name in [args.only] if args.only else list(MODELS):
        bench(name, args.repeats)


if __name__ == "__main__":
    main()
