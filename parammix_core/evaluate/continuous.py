"""Continuous per-document scores for any lm-eval task, computed from the task's own requests.

Accuracy and exact match are 0/1 per document: on small models, or between merges that differ
a little, most of what they measure is noise. The log-likelihood the model gives the right
answer moves with every change of the weights. Two scores are computed here, for every task
whose `EvalTask.metric` names one:

    neg_bpb  minus the bits per byte of the gold continuation:
             log p(continuation | context) / ln 2 / (UTF-8 bytes of the continuation),
             the continuation exactly as the model is asked for it (the task's
             target_delimiter included). Negated so that, like every metric here, higher is
             better; the utility and the report need no sign flip.
    p_gold   the probability of the gold choice normalised over the choices (sums to 1 over
             them): multiple-choice tasks only.
    margin_bpb
             the other choices' mean bits per byte minus the gold's: how much more readily the
             model writes the right choice than the wrong ones (DataDecide's margin, per byte).
             A run-wide shift in how well the model writes text of the choices' kind moves
             every choice alike and cancels; multiple-choice tasks only.

The text is never formatted here: lm-eval's task builds its own requests (`build_all_requests`,
so its prompt, few-shot examples and delimiters are kept). A multiple-choice task's requests
are used as they are (one per choice); a loglikelihood task's single request too. A
`generate_until` task's request holds the prompt; the reference answer is appended to it as the
task writes a few-shot example's answer (target_delimiter + doc_to_target, a list of accepted
answers by its first, a choice index by its choice), so scoring costs one log-likelihood
request per document and nothing is generated.

Accuracy comes free from the same requests and is reported beside the continuous score (never
in the utility): a multiple-choice document is right when the gold choice has the highest
summed log-likelihood (lm-eval's `acc`), a loglikelihood task's when its continuation is the
greedy one (lm-eval's `acc` there too). A generated answer's accuracy needs generation, so
generate_until tasks have none here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from lm_eval.api.instance import Instance

NEG_BPB = "neg_bpb"
P_GOLD = "p_gold"
MARGIN_BPB = "margin_bpb"
# lm-eval output_type -> the metrics computed here from its requests.
METRICS_BY_OUTPUT: dict[str, tuple[str, ...]] = {
    "multiple_choice": (NEG_BPB, P_GOLD, MARGIN_BPB),
    "generate_until": (NEG_BPB,),
    "loglikelihood": (NEG_BPB,),
}
CONTINUOUS_METRICS = frozenset({NEG_BPB, P_GOLD, MARGIN_BPB})


class ContinuousMetricError(ValueError):
    """A document whose continuous score is undefined (no gold choice, an empty answer)."""


def is_continuous(metric: str) -> bool:
    """Whether `metric` is computed here rather than read from lm-eval's results."""
    return metric in CONTINUOUS_METRICS


def continuous_for(kind: str, output_type: str) -> tuple[str, ...]:
    """The continuous metrics a task (not a group: scores are per document) can name."""
    return METRICS_BY_OUTPUT.get(output_type, ()) if kind == "task" else ()


def bits_per_byte(loglikelihood: float, continuation: str) -> float:
    """Bits per UTF-8 byte of a continuation whose log-likelihood (nats) is given."""
    n_bytes = len(continuation.encode("utf-8"))
    if n_bytes == 0:
        raise ContinuousMetricError("the continuation is empty: bits per byte is undefined")
    return -loglikelihood / math.log(2) / n_bytes


def gold_probability(loglikelihoods: np.ndarray, gold: int) -> float:
    """p(gold) / sum over choices of p(choice), from the choices' (n_choices,) log-likelihoods."""
    return float(np.exp(loglikelihoods[gold] - np.logaddexp.reduce(loglikelihoods)))


def bpb_margin(loglikelihoods: np.ndarray, choices: Sequence[str], gold: int) -> float:
    """Mean bits per byte of the non-gold choices minus the gold's, from their (n_choices,)
    log-likelihoods; higher is better."""
    if len(choices) < 2:
        raise ContinuousMetricError("a margin needs at least two choices")
    bpb = np.array(
        [bits_per_byte(float(ll), c) for ll, c in zip(loglikelihoods, choices, strict=True)]
    )
    return float(np.delete(bpb, gold).mean() - bpb[gold])


def reference_answer(task, doc: dict) -> str:
    """The task's own target for `doc`, as lm-eval writes a few-shot example's answer."""
    target = task.doc_to_target(doc)
    if isinstance(target, int) and task.config.doc_to_choice is not None:
        return task.doc_to_choice(doc)[target]
    if isinstance(target, list):
        if not target:
            raise ContinuousMetricError("doc_to_target gave an empty list of answers")
        return str(target[0])
    return str(target)


@dataclass(frozen=True)
class DocRequests:
    """One document's log-likelihood requests (one per choice, or one) and the gold one."""

    doc_id: int
    requests: tuple[Instance, ...]
    gold: int


def _gold_choice(task, doc: dict, choices: Sequence[str]) -> int:
    """The gold choice's index, read as lm-eval's multiple-choice scoring reads it."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, str):
        gold = choices.index(gold) if gold in choices else -1
    if isinstance(gold, list):
        raise ContinuousMetricError("the document has several gold choices")
    if not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise ContinuousMetricError(f"gold choice {gold!r} is not one of {len(choices)} choices")
    return gold


def _doc_requests(task, doc_id: int, instances: list[Instance]) -> DocRequests:
    instances = sorted(instances, key=lambda inst: inst.idx)
    doc = instances[0].doc
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = task.doc_to_choice(doc)
        gold = _gold_choice(task, doc, choices)
        # requests past the choices are acc_mutual_info's unconditional ones
        return DocRequests(doc_id, tuple(instances[: len(choices)]), gold)
    if task.OUTPUT_TYPE == "loglikelihood":
        return DocRequests(doc_id, (instances[0],), 0)
    if task.doc_to_prefix(doc) is not None:
        raise ContinuousMetricError("the task sets gen_prefix, which is not supported")
    context = instances[0].args[0]
    continuation = task.config.target_delimiter + reference_answer(task, doc)
    request = Instance(
        request_type="loglikelihood",
        doc=doc,
        arguments=(context, continuation),
        idx=0,
        metadata=(instances[0].task_name, doc_id, 1),
    )
    return DocRequests(doc_id, (request,), 0)


class ContinuousScorer:
    """One task's log-likelihood requests, built once; `score` turns their results into the
    configured metric per document."""

    def __init__(self, task, metric: str, fewshot_seed: int) -> None:
        if metric not in METRICS_BY_OUTPUT.get(task.OUTPUT_TYPE, ()):
            raise ContinuousMetricError(
                f"{metric} is not computed for output_type {task.OUTPUT_TYPE}"
            )
        self.metric = metric
        self.output_type = task.OUTPUT_TYPE
        task.set_fewshot_seed(seed=fewshot_seed)  # the seed lm-eval's own calls use
        task.build_all_requests()
        by_doc: dict[int, list[Instance]] = {}
        for inst in task.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        self.docs: list[DocRequests] = []
        for doc_id in sorted(by_doc):
            try:
                doc = _doc_requests(task, doc_id, by_doc[doc_id])
                if metric == NEG_BPB and not doc.requests[doc.gold].args[1]:
                    raise ContinuousMetricError("the gold continuation is empty")
                if metric == MARGIN_BPB:
                    for k, request in enumerate(doc.requests):
                        if not request.args[1]:
                            raise ContinuousMetricError(f"choice {k}'s continuation is empty")
            except ContinuousMetricError as err:
                raise ContinuousMetricError(f"document {doc_id}: {err}") from err
            self.docs.append(doc)

    @property
    def requests(self) -> list[Instance]:
        """Every document's requests, in document order."""
        return [r for doc in self.docs for r in doc.requests]

    def score(self, results: Sequence[tuple[float, bool]]) -> np.ndarray:
        """(n_docs,) scores from lm-eval's (log-likelihood, is_greedy) per request, in order."""
        out = np.empty(len(self.docs))
        for i, (doc, lls, _) in enumerate(self._per_doc(results)):
            if self.metric == P_GOLD:
                out[i] = gold_probability(lls, doc.gold)
            elif self.metric == MARGIN_BPB:
                out[i] = bpb_margin(lls, [r.args[1] for r in doc.requests], doc.gold)
            else:
                continuation = doc.requests[doc.gold].args[1]
                out[i] = -bits_per_byte(float(lls[doc.gold]), continuation)
        return out

    def correct(self, results: Sequence[tuple[float, bool]]) -> np.ndarray | None:
        """(n_docs,) 0/1 accuracy from the same results as lm-eval's `acc` reads them; None
        for a generate_until task (its reference answer was scored, nothing generated)."""
        if self.output_type == "generate_until":
            return None
        if self.output_type == "loglikelihood":
            return np.array([float(greedy[0]) for _, _, greedy in self._per_doc(results)])
        return np.array(
            [float(np.argmax(lls) == doc.gold) for doc, lls, _ in self._per_doc(results)]
        )

    def _per_doc(self, results: Sequence[tuple[float, bool]]):
        """(document, its requests' log-likelihoods, their is_greedy flags), in order."""
        if len(results) != sum(len(doc.requests) for doc in self.docs):
            raise ContinuousMetricError(f"{len(results)} results for {len(self.requests)} requests")
        at = 0
        for doc in self.docs:
            chunk = results[at : at + len(doc.requests)]
            at += len(doc.requests)
            yield doc, np.array([ll for ll, _ in chunk]), [bool(g) for _, g in chunk]


@dataclass(frozen=True)
class TaskScores:
    """One task's (n_docs,) continuous scores and, where the requests give it, 0/1 accuracy."""

    values: np.ndarray
    correct: np.ndarray | None


def score_all(lm, scorers: Mapping[str, ContinuousScorer]) -> dict[str, TaskScores]:
    """Task -> its per-document scores, every task's requests in one `lm.loglikelihood` call
    (so lm-eval batches them together)."""
    if not scorers:
        return {}
    results = lm.loglikelihood([r for scorer in scorers.values() for r in scorer.requests])
    out, at = {}, 0
    for name, scorer in scorers.items():
        mine = results[at : at + len(scorer.requests)]
        at += len(scorer.requests)
        out[name] = TaskScores(scorer.score(mine), scorer.correct(mine))
    return out
