"""Stage interference_probe: curvature and gradients at the base (the second-order analysis)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from parammix_core.config import Experiment
from parammix_core.data import load_prepared
from parammix_core.interference import (
    gram_cosines,
    step_scale,
    task_vector_grams,
)
from parammix_core.model import load_model, load_state, resolve_device
from parammix_core.plots import plot_interference
from parammix_core.probe_shards import ProbeShards, probe_to_shards
from parammix_core.stages.common import Progress, check_experts_fit, dump_config
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json
from parammix_core.train import lr_at, sample_batch


def probe_ref(
    exp: Experiment, data: ArtifactRef, base: ArtifactRef, experts: Sequence[ArtifactRef]
) -> ArtifactRef:
    spec = {
        "probe": dump_config(exp.probe),
        "seed": exp.seed,
        "expert_train": dump_config(exp.training.expert),
        "data": data.key,
        "base": base.key,
        "experts": [e.key for e in experts],
    }
    return ArtifactRef.for_spec("probe", "interference", spec, code=code_version("probe"))


def interference_probe(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    progress: Progress | None = None,
) -> ArtifactRef:
    """g_k and H_k g_j at the base, task-vector cosines, and the heat maps of both.

    The K^2 vectors H_k g_j go to files in the artifact as they are computed
    (`probe_shards`); their norms and Gram matrix are reduced from those files slice by slice
    into probe.safetensors, so later stages read a small file unless they need the vectors.
    """
    ref = probe_ref(exp, data, base, experts)
    if store.exists(ref):
        return ref
    start = time.perf_counter()
    out = store.staging(ref)
    shards = _probe_base(exp, store, data, base, out, progress)
    summary = shards.summary()
    check_experts_fit(store, base, experts)
    base_state = load_state(store.local_dir(base), exp.model, "cpu")
    grams = task_vector_grams(
        base_state,
        lambda i: load_state(store.local_dir(experts[i]), exp.model, "cpu"),
        len(experts),
    )
    del base_state
    cosines = gram_cosines(sum(grams.values()))
    curvature = summary.relative_curvature()
    expert = exp.training.expert
    info = {
        "domains": exp.domains,
        "method": shards.method,
        "step_scale": step_scale([lr_at(t, expert) for t in range(expert.steps)]),
        "relative_curvature": np.asarray(curvature).tolist(),
        "task_vector_cosines": np.asarray(cosines).tolist(),
        "per_layer_cosines": {k: gram_cosines(v).tolist() for k, v in grams.items()},
        "seconds": time.perf_counter() - start,
    }
    save_file(summary.to_tensors(), out / "probe.safetensors")
    (out / "probe.json").write_text(canonical_json(info))
    plot_interference(exp.domains, curvature, cosines, out / "interference.png")
    return store.publish(ref, out, info={"method": shards.method, "seconds": info["seconds"]})


def _probe_base(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    base: ArtifactRef,
    out: Path,
    progress: Progress | None,
) -> ProbeShards:
    """The probe at the base model, written to `out`; the model is released on return."""
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    model = load_model(str(store.local_dir(base)), exp.model, device)
    gen = torch.Generator().manual_seed(exp.seed)
    one = torch.ones(1)
    batches = {
        d: [
            sample_batch([prepared.train[d]], one, exp.probe.batch_size, gen).long().to(device)
            for _ in range(exp.probe.batches_per_domain)
        ]
        for d in exp.domains
    }
    return probe_to_shards(model, batches, out, exp.probe.method, exp.probe.chunk_size, progress)
