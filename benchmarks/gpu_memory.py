"""Expected GPU memory of a config's training step: weights, gradients, Adam, activations.

Static memory comes from the parameter count: fp32 weights, fp32 gradients and two fp32 Adam
moments, 16 bytes per parameter (bf16 autocast keeps all four in fp32). ZeRO-1 shards the Adam
moments over the data-parallel processes, ZeRO-2 also the gradients, ZeRO-3 also the weights.

Activation memory is *measured*: forward passes on the CPU at 1 and 2 rows x block_size
tokens under the config's precision, summing the bytes autograd keeps for the backward pass
(`saved_tensors_hooks`, each storage once, the parameters themselves excluded). The difference
is the cost per row (fp32 logits of the loss included), the rest is per step (autocast's bf16
copies of the weights). CUDA's SDPA kernels keep about what the CPU's do (output and
log-sum-exp, never a T x T matrix). Not included: the CUDA context (~0.5-1 GB), allocator
fragmentation, transient backward buffers and DeepSpeed's communication buckets
(`training.deepspeed.bucket_size` elements in fp32: 0.2 GB at the default 5e7).

    python benchmarks/gpu_memory.py [--config configs/gpu-small.yaml] [--gpus 1 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from parammix_core.config import load_experiment
from parammix_core.engines import autocast
from parammix_core.model import build_model

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9


def saved_activation_bytes(model: torch.nn.Module, rows: torch.Tensor, ctx) -> int:
    """Bytes autograd saves for backward in one forward pass, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
        loss = model(input_ids=rows, labels=rows, use_cache=False).loss
    del loss
    return sum(seen.values())


def static_bytes(n: int, stage: int, gpus: int) -> dict[str, float]:
    shard = {name: gpus if stage >= level else 1 for name, level in (("w", 3), ("g", 2), ("a", 1))}
    return {
        "weights": 4 * n / shard["w"],
        "grads": 4 * n / shard["g"],
        "adam": 8 * n / shard["a"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "gpu-small.yaml"))
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = load_experiment(args.config)
    vocab, block = exp.data.vocab_size, exp.data.block_size
    model = build_model(exp.model, vocab, block, 0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model.train()
    n = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    one, two = (
        saved_activation_bytes(
            model,
            torch.randint(3, vocab, (b, block)),
            autocast(exp.training, torch.device("cpu")),
        )
        for b in (1, 2)
    )
    seconds = time.perf_counter() - start
    per_row, fixed = two - one, 2 * one - two
    batch = exp.training.expert.batch_size
    print(
        f"config {args.config}: {n / 1e6:.1f}M parameters (vocabulary {vocab}), "
        f"block {block}, global batch {batch}, precision {exp.training.precision}"
    )
    print(
        f"saved for backward: {per_row / GB:.3f} GB per row + {fixed / GB:.3f} GB per step "
        f"(measured on the CPU in {seconds:.1f} s)"
    )
    print()
    print("| GPUs | ZeRO | rows/GPU | weights | grads | Adam | activations | total (GB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for gpus in args.gpus:
        micro = batch // gpus
        for stage in (0, 1, 2, 3) if gpus > 1 else (0,):
            s = static_bytes(n, stage, gpus)
            act = per_row * micro + fixed
            total = sum(s.values()) + act
            print(
                f"| {gpus} | {stage} | {micro} | {s['weights'] / GB:.2f} | {s['grads'] / GB:.2f}"
                f" | {s['adam'] / GB:.2f} | {act / GB:.2f} | {total / GB:.2f} |"
            )


if __name__ == "__main__":
    main()
