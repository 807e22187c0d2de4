"""The evaluation tasks as search target: one gold request per document, weighted as the
utility weighs capability groups, scored as a direct forward pass scores the gold answer."""

from __future__ import annotations

import numpy as np
import pytest

from parammix_core.config import EvalTask
from parammix_core.evaluate.target import encode_pairs, task_target
from parammix_core.evaluate.task_loading import EvaluationError, load_tasks
from parammix_core.search.pairs import pair_batches, pair_logprobs
from tests.parammix_core.evaluate import standard_data as data
from tests.parammix_core.evaluate.test_continuous import loglikelihood, mmlu_prompt
from tests.parammix_core.evaluate.test_harness import pico_llama


@pytest.fixture(scope="module")
def target(files):
    tasks = [
        EvalTask(name="mmlu_anatomy", group="k", data_files=files["mmlu_anatomy"]),
        EvalTask(name="arc_challenge", group="r", data_files=files["arc_challenge"]),
        EvalTask(
            name="gsm8k", group="r", metric="exact_match,strict-match", data_files=files["gsm8k"]
        ),
    ]
    loaded = load_tasks(tasks, None, num_fewshot=0, allow_code_execution=False)
    return task_target(tasks, loaded, {"k": 3.0, "r": 1.0})


def test_documents_are_weighted_as_the_utility_weighs_groups(target):
    n_mmlu, n_arc, n_gsm = len(data.MMLU_ANATOMY) - 1, len(data.ARC_CHALLENGE), len(data.GSM8K)
    assert target.tasks == ["mmlu_anatomy"] * n_mmlu + ["arc_challenge"] * n_arc + ["gsm8k"] * n_gsm
    want = np.concatenate(
        [  # group k: 3/4, one task; group r: 1/4, split between its two tasks
            np.full(n_mmlu, 0.75 / n_mmlu),
            np.full(n_arc, 0.125 / n_arc),
            np.full(n_gsm, 0.125 / n_gsm),
        ]
    )
    np.testing.assert_allclose(target.weights, want, rtol=1e-12)
    assert target.weights.sum() == pytest.approx(1.0)


def test_per_document_logprobs_are_the_gold_answers_by_a_direct_forward_pass(target, tokenizer):
    model = pico_llama(tokenizer, seed=5)
    rows = data.MMLU_ANATOMY[1:]  # the first row is the dev split
    gold = [(mmlu_prompt(r), " " + "ABCD"[r["answer"]]) for r in rows]
    assert [r.args for r in target.requests[: len(rows)]] == gold
    gsm = target.requests[-len(data.GSM8K) :]  # a generative task: its reference answer
    assert [r.args[1] for r in gsm] == [" " + row["answer"] for row in data.GSM8K]

    pairs, max_length = encode_pairs(model, tokenizer, target.requests)
    batches = pair_batches(pairs, target.weights, max_length, batch_size=4)
    got = pair_logprobs(model, batches, "cpu")  # (S,)
    want = [loglikelihood(model, tokenizer, *r.args) for r in target.requests]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert (got < 0).all()


class _RollingTask:
    """What lm-eval's wikitext-like tasks are: a loglikelihood_rolling task."""

    OUTPUT_TYPE = "loglikelihood_rolling"


class _Loaded:
    def leaves(self, name: str) -> list:
        return [_RollingTask()]


def test_a_task_without_a_gold_answer_is_refused_naming_the_target():
    tasks = [EvalTask(name="pm_arithmetic", group="m"), EvalTask(name="wikitext", group="m")]
    with pytest.raises(EvaluationError) as info:
        task_target(tasks, _Loaded(), {"m": 1.0})
    assert str(info.value).startswith(
        "search.target: tasks: evaluation.tasks.0 (pm_arithmetic): neg_bpb is not computed for "
        "output_type loglikelihood_rolling; use search.target: heldout or a corpus"
    )
