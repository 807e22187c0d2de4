"""The evaluation tasks' documents as target data for MixMin and MergeMix.

The utility scores benchmarks; the target these strategies optimise should be the same data.
For every configured task, each document's gold answer given its prompt is one target
sequence: the (context, continuation) log-likelihood request the continuous metrics build from
lm-eval's own task objects (`continuous.ContinuousScorer`: the gold choice of a
multiple-choice task, the reference answer of a generative one, few-shot examples drawn with
the evaluator's seed), so the target is exactly "the NLL of target-task data" of the MixMin
paper, with the prompts the evaluation uses.

Weights: a document's weight is its capability group's utility weight (`search.group_weights`,
normalised to sum 1) / the number of tasks in that group / the number of documents of its
task (a configured lm-eval group: all its members' documents, equally). So each group counts in
the target as it counts in the utility (the mean of its tasks, weighted across groups), and a
task with many documents does not outweigh one with few.

The pairs are tokenised by lm-eval's own HFLM code (`encode_pairs`: its `loglikelihood`, the
empty-context case included, stopped before the forward pass), so the scored tokens are those
the evaluation scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from parammix_core.config import EvalTask
from parammix_core.evaluate.continuous import NEG_BPB, ContinuousMetricError, ContinuousScorer
from parammix_core.evaluate.harness import FEWSHOT_SEED
from parammix_core.evaluate.task_loading import EvaluationError, LoadedTasks


@dataclass(frozen=True)
class TaskTarget:
    """One gold (context, continuation) request per document, its weight and its task."""

    requests: list[Instance]
    weights: np.ndarray  # (S,), sums to 1
    tasks: list[str]  # (S,) the configured task of each document


def task_target(
    tasks: Sequence[EvalTask], loaded: LoadedTasks, group_weights: Mapping[str, float]
) -> TaskTarget:
    """The gold requests of every configured task's documents, weighted as the utility.

    Args:
        tasks: the configured evaluation tasks.
        loaded: their lm-eval objects (`task_loading.load_tasks`).
        group_weights: a positive weight for every task's group.
    """
    per_group: dict[str, int] = {}
    for task in tasks:
        per_group[task.group] = per_group.get(task.group, 0) + 1
    total = sum(group_weights[g] for g in per_group)
    requests: list[Instance] = []
    weights: list[np.ndarray] = []
    names: list[str] = []
    for i, task in enumerate(tasks):
        gold = []
        for leaf in loaded.leaves(task.name):
            try:
                scorer = ContinuousScorer(leaf, NEG_BPB, FEWSHOT_SEED)
            except ContinuousMetricError as err:
                raise EvaluationError(
                    f"search.target: tasks: evaluation.tasks.{i} ({task.name}): {err}; "
                    "use search.target: heldout or a corpus"
                ) from err
            gold += [doc.requests[doc.gold] for doc in scorer.docs]
        if not gold:
            raise EvaluationError(f"search.target: tasks: evaluation.tasks.{i} has no documents")
        share = group_weights[task.group] / total / per_group[task.group]
        requests += gold
        weights.append(np.full(len(gold), share / len(gold)))
        names += [task.name] * len(gold)
    return TaskTarget(requests, np.concatenate(weights), names)


class _PairEncoder(HFLM):
    """HFLM whose `loglikelihood` returns each request's (context ids, continuation ids), as
    lm-eval tokenises them, instead of running the model."""

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        return [(list(context), list(continuation)) for _, context, continuation in requests]


def encode_pairs(
    model: torch.nn.Module, tokenizer, requests: Sequence[Instance]
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Each request's (context ids, continuation ids) and the model's context length, as
    lm-eval's HFLM computes them for `model` and `tokenizer`."""
    device = str(next(model.parameters()).device)
    encoder = _PairEncoder(pretrained=model, tokenizer=tokenizer, batch_size=1, device=device)
    return encoder.loglikelihood(list(requests), disable_tqdm=True), encoder.max_length
