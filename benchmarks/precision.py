"""Is bf16 autocast faster than fp32 for training on this CPU, and at which model size?

The training engine's `precision: bf16` runs forward and loss under bf16 autocast (fp32 weights
and Adam). Whether that pays on a CPU depends on the CPU: with AMX or AVX512-BF16 units oneDNN
runs bf16 matmuls natively, without them it emulates them. This prints the CPU's capability, then
per model size the time of one training step (`PlainEngine.train_step`, batch 16 x 128) and of
one forward pass in fp32 and in bf16, measured alternately in the same process, and their ratios.

    python benchmarks/precision.py [--threads 1] [--steps 8]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from parammix_core.config import TrainConfig, TrainingConfig
from parammix_core.config.model import ModelConfig
from parammix_core.engines.base import autocast
from parammix_core.engines.plain import PlainEngine
from parammix_core.model import build_model, parameter_count

VOCAB, BLOCK, BATCH = 2048, 128, 16  # the embedded default's tokenizer, block and batch
SIZES = {
    "default": {},
    "h192-l4": {"hidden_size": 192, "num_layers": 4, "intermediate_size": 512},
    "h256-l6": {"hidden_size": 256, "num_layers": 6, "intermediate_size": 688},
}


def capability() -> str:
    """What torch reports of the CPU's vector units (the bf16 probes are x86 only)."""
    flags = {"avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}
    found = {name: getattr(torch.cpu, fn, lambda: None)() for name, fn in flags.items()}
    return (
        f"{platform.machine()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        + ", ".join(f"{name} {value}" for name, value in found.items())
    )


def timings(shape: dict, steps: int) -> dict[str, float]:
    """Median seconds of a training step and of a forward pass, fp32 and bf16 alternately."""
    model = build_model(
        ModelConfig(**shape), VOCAB, BLOCK, 0, bos_token_id=0, eos_token_id=1, pad_token_id=1
    ).train()
    batch = torch.randint(0, VOCAB, (BATCH, BLOCK), generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    engines = {
        p: PlainEngine(model, TrainConfig(), TrainingConfig(precision=p), cpu)
        for p in ("fp32", "bf16")
    }
    seen: dict[str, list[float]] = {}
    for i in range(steps + 2):  # two warm-up rounds
        for p, engine in engines.items():
            start = time.perf_counter()
            engine.train_step(batch)
            step = time.perf_counter() - start
            start = time.perf_counter()
            with torch.no_grad(), autocast(engine.system, cpu):
                model(input_ids=batch)
            forward = time.perf_counter() - start
            if i >= 2:
                seen.setdefault(f"step {p}", []).append(step)
                seen.setdefault(f"forward {p}", []).append(forward)
    out = {k: sorted(v)[len(v) // 2] for k, v in seen.items()}
    out["params"] = parameter_count(model)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(capability(), f"| {args.threads} thread(s), batch {BATCH} x {BLOCK}")
    print(
        "| model | params | step fp32 | step bf16 | bf16 speed-up | forward fp32 | forward bf16 "
        "| bf16 speed-up |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, shape in SIZES.items():
        t = timings(shape, args.steps)
        print(
            f"| {name} | {t['params'] / 1e6:.2f}M | {t['step fp32'] * 1e3:.0f} ms "
            f"| {t['step bf16'] * 1e3:.0f} ms | {t['step fp32'] / t['step bf16']:.2f}x "
            f"| {t['forward fp32'] * 1e3:.0f} ms | {t['forward bf16'] * 1e3:.0f} ms "
            f"| {t['forward fp32'] / t['forward bf16']:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
