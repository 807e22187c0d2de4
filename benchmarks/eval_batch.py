"""Seconds per evaluation of one merged candidate against `evaluation.batch_size`, one thread.

The fan-out runs one torch thread per task, so what matters on a small CPU is how fast one
thread scores a candidate (five lm-eval tasks + held-out loss). Smaller batches keep the
(B, T, V) logits in cache; the scores must not change with the batch size.

    python benchmarks/eval_batch.py --store <store of a finished default run> [--sizes 64,16,8]

Every size gets its own evaluator; they are timed interleaved (`--repeats` rounds) so machine
noise hits all alike, and the median is printed with the scores' largest difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.stages.evaluate import _bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--sizes", default="64,16,8")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    benches, scores = {}, {}
    for size in (int(s) for s in args.sizes.split(",")):
        exp = Experiment.model_validate(
            {"store": {"url": args.store}, "evaluation": {"batch_size": size}}
        )
        store = stages.open_store(exp)
        data = stages.prepare_domains(exp, store)
        base = stages.build_base(exp, store, data)
        experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
        bench = _bench(exp, store, data, base, experts, None)
        bench.set_mixture(np.full(len(exp.domains), 1 / len(exp.domains)))
        scores[size] = bench.evaluator.evaluate()  # warm-up, and the scores to compare
        benches[size] = bench
    times: dict[int, list[float]] = {size: [] for size in benches}
    for _ in range(args.repeats):
        for size, bench in benches.items():
            start = time.perf_counter()
            bench.evaluator.evaluate()
            times[size].append(time.perf_counter() - start)
    first = next(iter(scores.values()))
    for size, ts in times.items():
        diff = max(abs(scores[size][k] - first[k]) for k in first if not k.endswith("stderr"))
        print(
            f"batch {size:>3}: median {np.median(ts):.2f} s per candidate "
            f"({', '.join(f'{t:.2f}' for t in ts)}); max score difference {diff:.2e}"
        )


if __name__ == "__main__":
    main()
