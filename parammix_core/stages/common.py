"""What every stage shares: the store, the progress callback, config dumps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import fsspec
import torch

from parammix_core.config import Experiment, TrainConfig
from parammix_core.data import DataError, PreparedData, load_prepared
from parammix_core.engines import system_spec
from parammix_core.merge.linear import check_specs
from parammix_core.model import check_fits, load_model, load_state, resolve_device
from parammix_core.store import ArtifactRef, Store
from parammix_core.train import TrainResult, train

Progress = Callable[[int, int, str], None]
"""progress(done, total, message): how far a long stage has got; total 0: a report to log
(what a stage found), not a step."""


def open_store(exp: Experiment, credentials: dict[str, str] | None = None) -> Store:
    """The experiment's store; `credentials` (from a Prefect block) join the fsspec options."""
    options = {**exp.store.storage_options, **(credentials or {})}
    return Store(
        exp.store.url,
        options,
        exp.store.verify,
        part_size=exp.store.part_size_mb << 20,
        lookup="sha256" if exp.runtime.verify_cached else "size",
    )


def checkpoint_root(exp: Experiment) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and folder of model.checkpoint; a missing folder is an error naming it."""
    assert exp.model.checkpoint is not None
    fs, root = fsspec.core.url_to_fs(exp.model.checkpoint, **exp.store.storage_options)
    if not fs.isdir(root):
        raise FileNotFoundError(f"model.checkpoint: no such checkpoint directory {root!r}")
    return fs, root


def check_batches_fit(exp: Experiment, stats: dict[str, dict[str, int]]) -> None:
    """Every domain must hold at least one batch of each run that samples it, or its batches
    would repeat blocks; checked before any training, with the domain named."""
    sizes = {"training.expert.batch_size": exp.training.expert.batch_size}
    if exp.model.checkpoint is None:
        sizes["training.base.batch_size"] = exp.training.base.batch_size
    if exp.probe.enabled:
        sizes["probe.batch_size"] = exp.probe.batch_size
    for field, batch in sizes.items():
        small = {d: s["train_blocks"] for d, s in stats.items() if s["train_blocks"] < batch}
        if small:
            raise DataError(
                f"{field}={batch} is larger than the training corpus of domain(s) {small} "
                f"(blocks of {exp.data.block_size} tokens); lower it or give those domains "
                "more text"
            )


def check_experts_fit(store: Store, base: ArtifactRef, experts: Sequence[ArtifactRef]) -> None:
    """Refuse, by name, an expert whose stored tensors differ from the base's (names, shapes,
    dtypes, read from the headers) before either is loaded: loading through transformers would
    cast another dtype silently and re-initialise what is missing."""
    base_specs = store.tensor_specs(base)
    for expert in experts:
        check_specs(base_specs, store.tensor_specs(expert), expert.name)


def merge_states(
    exp: Experiment,
    store: Store,
    base: ArtifactRef,
    experts: Sequence[ArtifactRef],
    device: torch.device | str,
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The base's and each expert's weights, keyed as the live model names them."""
    check_experts_fit(store, base, experts)
    return (
        load_state(store.local_dir(base), exp.model, device),
        [load_state(store.local_dir(e), exp.model, device) for e in experts],
    )


def dump_config(model: Any) -> Any:
    return model.model_dump(mode="json")


def training_spec(
    exp: Experiment, train: TrainConfig, seed: int, data: ArtifactRef | str, base: ArtifactRef
) -> dict[str, Any]:
    """Everything that changes the weights of a run trained from the base (the key's core).
    `data`: the prepared data, or the identity of the only corpus the run reads."""
    return {
        "train": dump_config(train),
        "system": system_spec(exp.training),  # engine, precision: they change weights
        "seed": seed,
        "attn": exp.model.attn_implementation,
        "dtype": exp.model.dtype,
        "data": data if isinstance(data, str) else data.key,
        "base": base.key,
    }


def train_progress(progress: Progress | None, what: str) -> Callable[[int, int, float], None]:
    def report(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step, total, f"{what}: step {step}/{total} loss {loss:.4f}")

    return report


def train_from_base(
    exp: Experiment,
    store: Store,
    ref: ArtifactRef,
    data: ArtifactRef,
    base: ArtifactRef,
    weights: Sequence[float],
    cfg: TrainConfig,
    seed: int,
    progress: Progress | None,
    what: str,
) -> tuple[torch.nn.Module, PreparedData, TrainResult]:
    """The shared base trained on the domain weights (an expert, a mixed run, a final run),
    resumable from the checkpoints under the artifact's work folder."""
    from parammix_core.stages.launch import holding  # it imports this module

    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    check_batches_fit(exp, prepared.stats)
    model = load_model(str(store.local_dir(base)), exp.model, device)
    # a cached base from a checkpoint meets this data for the first time when the data changed
    where = f"model.checkpoint {exp.model.checkpoint}" if exp.model.checkpoint else "the base"
    check_fits(model, len(prepared.tokenizer), exp.data.block_size, where)
    work = store.work_dir(ref)
    with holding(work):
        result = train(
            model,
            prepared.train,
            list(weights),
            cfg,
            seed,
            work,
            device,
            train_progress(progress, what),
            system=exp.training,
        )
    return model, prepared, result
