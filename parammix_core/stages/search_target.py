"""The target data of MixMin and MergeMix (`search.target`), and what its artifact key covers.

- tasks (default): the gold answer of every document of the configured evaluation tasks given
  its prompt (`evaluate.target`; the built-in suite is such a folder of lm-eval tasks),
  weighted so each capability group counts as in the utility. Key: the tasks, the task folder's
  files, the tasks' data files, few-shot count, built-in suite size, group weights, the seed.
- heldout: the first `search.target_sequences` held-out blocks of every domain (key: the
  prepared data, already in the stage's key).
- a corpus `{paths, text_field}`: its documents, read with the data loaders as a stream and
  packed like the domain corpora with the prepared tokenizer, at most `target_sequences`
  blocks. Key: the files' fingerprints (`data.fingerprint` mode) and the text field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from parammix_core.config import Experiment, TargetCorpus
from parammix_core.data import DataError, PreparedData
from parammix_core.data.fingerprint import fingerprint
from parammix_core.data.loaders import iter_texts
from parammix_core.data.packing import pack_texts
from parammix_core.evaluate.target import encode_pairs, task_target
from parammix_core.evaluate.task_loading import load_tasks
from parammix_core.search.common import SearchError, resolve_weights
from parammix_core.search.pairs import PairBatch, pair_batches
from parammix_core.stages.common import dump_config
from parammix_core.stages.evaluate import (
    _include_paths,
    task_data_fingerprint,
    tasks_folder_fingerprint,
)
from parammix_core.store import ArtifactRef, Store


@dataclass
class Target:
    """Token blocks (S, T) scored whole, or (context, continuation) pairs with weights (S,)."""

    blocks: torch.Tensor | None = None
    batches: list[PairBatch] | None = None
    weights: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.weights) if self.blocks is None else int(self.blocks.shape[0])


def target_spec(exp: Experiment) -> Any:
    """What determines the target beyond the prepared data (part of the stage's key)."""
    target = exp.search.target
    if target == "heldout":
        return "heldout"
    if isinstance(target, TargetCorpus):
        return {"corpus": dump_config(target), "files": _files(exp, target.paths, "paths")}
    evaluation = exp.evaluation
    return {
        "tasks": [dump_config(t) for t in evaluation.tasks],
        "tasks_folder": tasks_folder_fingerprint(exp),
        "data_files": task_data_fingerprint(exp),
        "num_fewshot": evaluation.num_fewshot,
        "builtin_docs_per_task": evaluation.builtin_docs_per_task,
        "group_weights": exp.search.group_weights,
        "seed": exp.seed,
    }


def _files(exp: Experiment, paths: list[str], field: str) -> list:
    """Fingerprints of a target corpus's files."""
    try:
        return fingerprint(paths, exp.store.storage_options, exp.data.fingerprint)
    except DataError as err:
        raise DataError(f"search.target.{field}: {err}") from None


def heldout_blocks(exp: Experiment, heldout: dict[str, torch.Tensor]) -> torch.Tensor:
    """The first `search.target_sequences` held-out blocks of every domain, (S, T) int64."""
    n = exp.search.target_sequences
    empty = [d for d in exp.domains if heldout[d].shape[0] == 0]
    if empty:
        raise SearchError(f"no held-out blocks for domain(s) {empty}: nothing to target")
    return torch.cat([heldout[d][:n] for d in exp.domains]).long()


def corpus_blocks(exp: Experiment, corpus: TargetCorpus, prepared: PreparedData) -> torch.Tensor:
    """The corpus's first `search.target_sequences` blocks, (S, T) int64."""
    texts = iter_texts(corpus.paths, corpus.text_field, exp.store.storage_options)
    try:
        return pack_texts(
            texts, prepared.tokenizer, exp.data.block_size, exp.search.target_sequences
        )
    except DataError as err:
        raise DataError(f"search.target.paths: {err}") from None


def task_pairs(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    prepared: PreparedData,
    model: torch.nn.Module,
) -> Target:
    """The evaluation tasks' gold answers, tokenised for `model`, in batches."""
    evaluation = exp.evaluation
    include = _include_paths(exp, store, data, prepared.heldout_texts)
    loaded = load_tasks(
        evaluation.tasks, include, evaluation.num_fewshot, evaluation.allow_code_execution
    )
    weights = resolve_weights(evaluation.groups, exp.search.group_weights)
    target = task_target(evaluation.tasks, loaded, weights)
    pairs, max_length = encode_pairs(model, prepared.tokenizer, target.requests)
    batches = pair_batches(pairs, target.weights, max_length, evaluation.batch_size)
    return Target(batches=batches, weights=target.weights)


def load_target(
    exp: Experiment,
    store: Store,
    data: ArtifactRef,
    prepared: PreparedData,
    model: torch.nn.Module,
) -> Target:
    """The configured target; `model` (the base) decides how task pairs are cut."""
    target = exp.search.target
    if target == "heldout":
        return Target(blocks=heldout_blocks(exp, prepared.heldout))
    if isinstance(target, TargetCorpus):
        return Target(blocks=corpus_blocks(exp, target, prepared))
    return task_pairs(exp, store, data, prepared, model)
