"""HVP cost against an ordinary training gradient, on CPU with one thread.

For the default model (ModelConfig() shapes, vocab 2048, batch 8 x 128) and a ~27M-parameter
Llama (hidden 512, 6 layers, vocab 8192, batch 2 x 128) this prints, side by side in one run:

- the baseline: the training gradient, `loss.backward()` on the model as the trainer runs it
  (flash SDPA); the probe's flat `gradient()` next to it for reference;
- one HVP by each kernel / the gradient (goal <= 2.5x), and which kernel "auto" runs;
- K=4 vectors in one batched call (vmap for forward-over-reverse; one kept graph for double
  backward) against 4 sequential single-vector HVPs of the same kernel (goal >= 1.5x);
- FLOPs of each operation (`torch.utils.flop_counter`: matmuls and attention; a sequential
  op counts K single ones), whose ratios are the floor the time ratios can reach when matmuls
  dominate;
- peak memory of each operation, each in a fresh subprocess: the process's peak resident set
  (VmHWM) after the op minus the resident set just before it. VmHWM is reset to the current
  resident set before the op (`/proc/self/clear_refs`), so building the model does not count.
  (`ru_maxrss` is no use here: a child inherits its parent's high-water mark across fork/exec.)

Timing runs in rounds, every operation once per round after one warm-up round, so all of them
see the same load on a shared machine. Each ratio is taken within a round against that round's
gradient; the median over --repeats rounds is printed with its min-max spread. Times are wall
clock; the CPU time of the process's thread is printed beside them (less sensitive to other
processes on a shared machine, not to cache contention).

    python benchmarks/hvp.py [--repeats 5] [--only default|large]
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
from torch.utils.flop_counter import FlopCounterMode

from parammix_core.config import ModelConfig
from parammix_core.hvp import auto_order, flat_params, gradient, hvp
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
MEMORY_OPS = ("gradient", "flat_gradient", "fwd_rev_1", "double_1", "fwd_rev_4", "double_4")


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

    def training_gradient() -> None:
        model.zero_grad(set_to_none=True)
        model(input_ids=batch, labels=batch, use_cache=False).loss.backward()

    def sequential(method: str) -> Callable[[], object]:
        return lambda: [hvp(model, batch, vectors[i : i + 1], method) for i in range(K)]

    return {
        "gradient": training_gradient,
        "flat_gradient": lambda: gradient(model, [batch]),
        "fwd_rev_1": lambda: hvp(model, batch, one, "forward_over_reverse"),
        "double_1": lambda: hvp(model, batch, one, "double_backward"),
        "fwd_rev_4": lambda: hvp(model, batch, vectors, "forward_over_reverse"),
        "double_4": lambda: hvp(model, batch, vectors, "double_backward"),
        "fwd_rev_seq_4": sequential("forward_over_reverse"),
        "double_seq_4": sequential("double_backward"),
    }


def timed_rounds(
    ops: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and thread-CPU seconds of every op, one run of each per round, after a warm-up."""
    wall: dict[str, list[float]] = {op: [] for op in ops}
    cpu: dict[str, list[float]] = {op: [] for op in ops}
    for fn in ops.values():
        fn()
    for _ in range(repeats):
        for op, fn in ops.items():
            w, c = time.perf_counter(), time.thread_time()
            fn()
            cpu[op].append(time.thread_time() - c)
            wall[op].append(time.perf_counter() - w)
    return wall, cpu


def flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


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


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}x [{min(xs):.2f}-{max(xs):.2f}]"


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios: both operations timed in the same round."""
    return [n / d for n, d in zip(num, den, strict=True)]


def bench(name: str, repeats: int) -> None:
    model, batch, vectors = setup(name)
    ops = operations(model, batch, vectors)
    cfg, vocab, (b, t) = MODELS[name]
    auto_ran = hvp(model, batch, vectors[:1]).method
    print(
        f"\n## {name}: {parameter_count(model) / 1e6:.2f}M params, hidden {cfg.hidden_size}, "
        f"{cfg.num_layers} layers, vocab {vocab}, batch {b} x {t}, "
        f"attn {cfg.attn_implementation}; auto runs {auto_ran} "
        f"(order on cpu: {' then '.join(auto_order(torch.device('cpu')))})"
    )
    fl = {op: flops(fn) for op, fn in ops.items() if "seq" not in op}
    fl |= {op: K * fl[op.replace("_seq_4", "_1")] for op in ops if "seq" in op}
    wall, cpu = timed_rounds(ops, repeats)
    mem = {op: memory_in_subprocess(name, op) for op in MEMORY_OPS}
    grad_mb = mem["gradient"]["extra_mb"]
    print(
        f"{'operation':<15}{'wall s':>8}{'min-max':>14}{'cpu s':>8}{'x grad':>8}{'cpu x':>7}"
        f"{'GFLOP':>8}{'x grad':>8}{'extra MB':>10}{'x grad':>8}"
    )
    for op in ops:
        w, c = wall[op], cpu[op]
        row = (
            f"{op:<15}{statistics.median(w):>8.3f}{f'{min(w):.3f}-{max(w):.3f}':>14}"
            f"{statistics.median(c):>8.3f}{statistics.median(ratios(w, wall['gradient'])):>8.2f}"
            f"{statistics.median(ratios(c, cpu['gradient'])):>7.2f}"
            f"{fl[op] / 1e9:>8.2f}{fl[op] / fl['gradient']:>8.2f}"
        )
        if op in mem:
            extra = mem[op]["extra_mb"]
            row += f"{extra:>10.0f}{extra / grad_mb if grad_mb > 0 else float('nan'):>8.2f}"
        print(row)

    def line(label: str, num: str, den: str, goal: str) -> None:
        print(
            f"{label:<44} wall {spread(ratios(wall[num], wall[den]))}, "
            f"cpu {spread(ratios(cpu[num], cpu[den]))}, FLOPs {fl[num] / fl[den]:.2f}x  {goal}"
        )

    auto_1 = "double_1" if auto_ran == "double_backward" else "fwd_rev_1"
    auto_4 = auto_1.replace("_1", "_4")
    auto_seq = auto_1.replace("_1", "_seq_4")
    print(f"# ratios, median [min-max] over {repeats} rounds")
    line(f"HVP (auto: {auto_ran}) / gradient", auto_1, "gradient", "(goal <= 2.5x)")
    line("HVP forward-over-reverse / gradient", "fwd_rev_1", "gradient", "(goal <= 2.5x)")
    line("HVP double backward / gradient", "double_1", "gradient", "(goal <= 2.5x)")
    line(f"{K} sequential / batched of {K}, auto", auto_seq, auto_4, "(goal >= 1.5x)")
    line(f"{K} sequential / vmap of {K}, fwd-over-rev", "fwd_rev_seq_4", "fwd_rev_4", "")
    line(f"{K} sequential / one graph, double backward", "double_seq_4", "double_4", "")
    line(f"best sequential / best batched of {K}", _best(wall, "seq"), _best(wall, "_4"), "")
    per_vector = ratios([x / K for x in wall[auto_4]], wall["gradient"])
    print(f"HVP per vector in a batch of {K} (auto) / gradient: wall {spread(per_vector)}")
    hvp_mb = mem[auto_1]["extra_mb"]
    print(f"peak extra memory, HVP (auto) / gradient: {hvp_mb / grad_mb:.2f}x")


def _best(wall: dict[str, list[float]], kind: str) -> str:
    """The HVP op of `kind` ("seq" or "_4", batched) with the lowest median wall time."""
    names = [op for op in wall if op.endswith("_4") and ("seq" in op) == (kind == "seq")]
    return min(names, key=lambda op: statistics.median(wall[op]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
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
