"""Merge + evaluate one candidate in memory vs through a checkpoint on disk, side by side.

    python benchmarks/merge_vs_disk.py --store DIR [--candidates 6]

DIR is the store of a finished `parammix run` (e.g. from benchmarks/run_default.py) with the
same config. In memory (what Param-Mix does): `InMemoryMerger.apply` writes the candidate into
the live model, the same `Evaluator` scores it. Through disk (what a merge tool that writes
checkpoints does): the merged checkpoint is written (`streaming_merge`), loaded back, and a new
`Evaluator` is built around the loaded model. Prints the mean time per candidate of each, the
split into merge/IO and evaluation, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from parammix_core import simplex, stages
from parammix_core.config import load_experiment
from parammix_core.data import load_prepared
from parammix_core.evaluate import Evaluator
from parammix_core.merge import InMemoryMerger, streaming_merge
from parammix_core.model import load_model


def refs_of(exp, store):
    data = stages.data_ref(exp)
    base = stages.base_ref(exp, data)
    experts = [stages.expert_ref(exp, d, data, base) for d in exp.domains]
    for ref in (data, base, *experts):
        if not store.exists(ref):
            raise SystemExit(f"{ref.path} is not in {store.url}: run `parammix run` first")
    return data, base, experts


def evaluator_for(exp, model, prepared, suite):
    return Evaluator(
        model,
        prepared.tokenizer,
        exp.evaluation.tasks,
        suite,
        exp.evaluation.batch_size,
        torch.device("cpu"),
        exp.evaluation.num_fewshot,
        heldout=prepared.heldout if exp.evaluation.heldout_loss else None,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config")
    p.add_argument("--store", required=True)
    p.add_argument("--candidates", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(1)
    exp = load_experiment(args.config)
    exp = exp.model_copy(update={"store": exp.store.model_copy(update={"url": args.store})})
    store = stages.open_store(exp)
    data, base, experts = refs_of(exp, store)
    prepared = load_prepared(store.local_dir(data))
    suite = stages._include_paths(exp, store, data, prepared.heldout_texts)
    alphas = simplex.dirichlet(len(exp.domains), args.candidates, seed=123)
    base_dir = store.local_dir(base)
    expert_dirs = [store.local_dir(e) for e in experts]

    # In memory: one live model, weights rewritten in place, one evaluator.
    model = load_model(str(base_dir), exp.model, torch.device("cpu"))
    merger = InMemoryMerger(
        model,
        store.load_tensors(base, "model.safetensors"),
        [store.load_tensors(e, "model.safetensors") for e in experts],
    )
    evaluator = evaluator_for(exp, model, prepared, suite)
    memory_merge, memory_eval, memory_scores = [], [], []
    for alpha in alphas:
        t0 = time.perf_counter()
        merger.apply(alpha)
        t1 = time.perf_counter()
        memory_scores.append(evaluator.evaluate())
        memory_merge.append(t1 - t0)
        memory_eval.append(time.perf_counter() - t1)

    # Through disk: write the merged checkpoint, load it, build an evaluator around it.
    disk_io, disk_eval, disk_scores = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, alpha in enumerate(alphas):
            out = Path(tmp) / f"merged-{i}"
            t0 = time.perf_counter()
            streaming_merge(base_dir, expert_dirs, alpha, out)
            merged = load_model(str(out), exp.model, torch.device("cpu"))
            t1 = time.perf_counter()
            disk_scores.append(evaluator_for(exp, merged, prepared, suite).evaluate())
            disk_io.append(t1 - t0)
            disk_eval.append(time.perf_counter() - t1)

    worst = max(
        abs(m[k] - d[k])
        for m, d in zip(memory_scores, disk_scores, strict=True)
        for k in m
        if not k.endswith(".stderr")
    )
    memory = statistics.mean(a + b for a, b in zip(memory_merge, memory_eval, strict=True))
    disk = statistics.mean(a + b for a, b in zip(disk_io, disk_eval, strict=True))
    n_tasks = len(exp.evaluation.tasks)
    print(f"candidates: {len(alphas)}, domains: {len(exp.domains)}, tasks: {n_tasks}")
    print(
        f"in memory : {memory:.3f} s/candidate (merge {statistics.mean(memory_merge) * 1e3:.1f} ms,"
        f" evaluate {statistics.mean(memory_eval):.3f} s)"
    )
    print(
        f"via disk  : {disk:.3f} s/candidate (merge+write+load {statistics.mean(disk_io):.3f} s,"
        f" evaluator+evaluate {statistics.mean(disk_eval):.3f} s)"
    )
    print(f"ratio disk/memory: {disk / memory:.2f}x")
    print(f"max |score difference| between the two paths: {worst:.2e}")


if __name__ == "__main__":
    main()
