"""Stage interference_probe: curvature and gradients at the base (the second-order analysis)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from parammix_core.config import Experiment
from parammix_core.data import load_prepared
from parammix_core.interference import (
    ProbeResult,
    per_layer_cosines,
    probe,
    step_scale,
    task_vector_cosines,
)
from parammix_core.model import load_model, resolve_device
from parammix_core.plots import plot_interference
from parammix_core.stages.common import Progress, dump_config, merge_states
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store, canonical_json
from parammix_core.train import sample_batch


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
    """g_k and H_k g_j at the base, task-vector cosines, and the heat maps of both."""
    ref = probe_ref(exp, data, base, experts)
    if store.exists(ref):
        return ref
    start = time.perf_counter()
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
    result = probe(model, batches, exp.probe.method, exp.probe.chunk_size, progress)
    base_state, expert_states = merge_states(exp, store, base, experts, "cpu")
    cosines = task_vector_cosines(base_state, expert_states)
    per_layer = per_layer_cosines(base_state, expert_states)
    curvature = result.relative_curvature()
    info = {
        "domains": exp.domains,
        "method": result.method,
        "step_scale": step_scale(exp.training.expert.lr, exp.training.expert.steps),
        "relative_curvature": np.asarray(curvature).tolist(),
        "task_vector_cosines": np.asarray(cosines).tolist(),
        "per_layer_cosines": {k: np.asarray(v).tolist() for k, v in per_layer.items()},
        "seconds": time.perf_counter() - start,
    }
    out = store.staging(ref)
    save_file(
        {k: v.contiguous() for k, v in result.to_tensors().items()}, out / "probe.safetensors"
    )
    (out / "probe.json").write_text(canonical_json(info))
    plot_interference(
        exp.domains, np.asarray(curvature), np.asarray(cosines), out / "interference.png"
    )
    return store.publish(ref, out, info={"method": result.method, "seconds": info["seconds"]})


def load_probe(store: Store, ref: ArtifactRef) -> tuple[ProbeResult, dict[str, Any]]:
    info = store.load_json(ref, "probe.json")
    return ProbeResult.from_tensors(
        info["domains"], store.load_tensors(ref, "probe.safetensors")
    ), info
