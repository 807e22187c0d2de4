"""Stage base_model: the shared base, imported from a checkpoint or pre-trained here."""

from __future__ import annotations

from typing import Any

import fsspec

from parammix_core import simplex
from parammix_core.config import Experiment
from parammix_core.data import load_prepared
from parammix_core.data.fingerprint import fingerprint
from parammix_core.engines import system_spec
from parammix_core.model import (
    build_model,
    check_fits,
    load_model,
    parameter_count,
    resolve_device,
    save_model,
)
from parammix_core.stages.common import (
    Progress,
    check_batches_fit,
    checkpoint_root,
    dump_config,
    train_progress,
)
from parammix_core.stages.launch import holding, is_writer, launch, should_launch
from parammix_core.stages.versions import code_version
from parammix_core.store import ArtifactRef, Store
from parammix_core.train import train


def base_ref(exp: Experiment, data: ArtifactRef) -> ArtifactRef:
    if exp.model.checkpoint is not None:  # the checkpoint's weights, whatever the corpora
        spec: dict[str, Any] = {
            "checkpoint": exp.model.checkpoint,
            "fingerprint": _fingerprint(exp),
        }
    else:  # pre-trained here on every domain
        spec = {
            "model": dump_config(exp.model),
            "train": dump_config(exp.training.base),
            "system": system_spec(exp.training),  # engine, precision: they change weights
            "seed": exp.seed,
            "init": 2,  # the end-of-text embedding row trains (no padding_idx)
            "data": data.key,
        }
    return ArtifactRef.for_spec("base", "base", spec, code=code_version("base"))


def _fingerprint(exp: Experiment) -> list[list[Any]]:
    """Sizes and stamps of the checkpoint's files (a local file's inode change time too, S3's
    ETag): weights swapped at the same size with their mtime set back are still noticed."""
    checkpoint_root(exp)  # a missing folder is named by its field
    pattern = f"{exp.model.checkpoint.rstrip('/')}/*"
    return fingerprint([pattern], exp.store.storage_options, "metadata")


def build_base(
    exp: Experiment, store: Store, data: ArtifactRef, progress: Progress | None = None
) -> ArtifactRef:
    ref = base_ref(exp, data)
    if store.exists(ref):
        return ref
    if exp.model.checkpoint is None and should_launch(exp):  # importing needs no processes
        return launch("build_base", exp, store, ref, data, progress=progress)
    device = resolve_device(exp.runtime.device)
    prepared = load_prepared(store.local_dir(data))
    check_batches_fit(exp, prepared.stats)
    if exp.model.checkpoint is not None:
        model = load_model(_local_checkpoint(exp, store), exp.model, device)
        where = f"model.checkpoint {exp.model.checkpoint}"
        check_fits(model, len(prepared.tokenizer), exp.data.block_size, where)
        info: dict[str, Any] = {"source": exp.model.checkpoint}
    else:
        tok = prepared.tokenizer
        model = build_model(
            exp.model,
            len(tok),
            exp.data.block_size,
            exp.seed,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model.to(device)
        weights = simplex.uniform(len(prepared.train))
        work = store.work_dir(ref)
        with holding(work):
            result = train(
                model,
                prepared.train,
                weights,
                exp.training.base,
                exp.seed,
                work,
                device,
                train_progress(progress, "base"),
                system=exp.training,
            )
        info = {"final_loss": result.final_loss, "steps": result.steps, "seconds": result.seconds}
    if not is_writer():  # another rank of a launched run: rank 0 publishes
        return ref
    info["parameters"] = parameter_count(model)
    out = store.staging(ref)
    save_model(model, out)
    return store.publish(ref, out, info=info)


def _local_checkpoint(exp: Experiment, store: Store) -> str:
    path = exp.model.checkpoint
    assert path is not None
    if "://" not in path:
        return path
    fs, root = fsspec.core.url_to_fs(path, **exp.store.storage_options)
    target = store.cache_dir / "checkpoints" / ArtifactRef.for_spec("ckpt", "c", {"p": path}).key
    if not (target / "config.json").exists():
        fs.get(root.rstrip("/") + "/", str(target), recursive=True)
    return str(target)
