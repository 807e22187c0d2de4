"""Continuous metrics (neg_bpb, p_gold, margin_bpb) from lm-eval's own requests: hand
computations on a pico Llama, the reference-answer request of a generative task, and the
preflight."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from parammix_core.config import EvalTask
from parammix_core.evaluate import EvaluationError, Evaluator
from parammix_core.evaluate.continuous import (
    ContinuousMetricError,
    bits_per_byte,
    bpb_margin,
    gold_probability,
)
from parammix_core.evaluate.harness import FEWSHOT_SEED
from parammix_core.evaluate.resolve import RunContext, resolve_tasks
from tests.parammix_core.evaluate import standard_data as data
from tests.parammix_core.evaluate.test_harness import pico_llama

GSM8K_TRAIN = {
    "question": "Ann has 2 cats and gets 1 more. How many cats does she have?",
    "answer": "She has 2 + 1 = <<2+1=3>>3 cats.\n#### 3",
}


def mmlu_prompt(row: dict) -> str:
    """mmlu_anatomy's prompt, written out by hand (its description, then the template's text)."""
    options = "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", row["choices"], strict=True))
    description = "The following are multiple choice questions (with answers) about anatomy.\n\n"
    return f"{description}{row['question'].strip()}{options}\nAnswer:"


def loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) by one direct forward pass (the continuation's tokens are
    those the whole string has past the context's, as lm-eval splits them)."""
    whole = tokenizer.encode(context + continuation)
    n_context = len(tokenizer.encode(context))
    with torch.no_grad():
        logits = model(torch.tensor([whole[:-1]])).logits[0].double()  # (T - 1, V)
    log_p = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(whole[n_context:])
    return log_p[n_context - 1 :].gather(1, targets[:, None]).sum().item()


def evaluator(tokenizer, tasks, **kwargs) -> Evaluator:
    model = pico_llama(tokenizer, seed=3)
    return Evaluator(model, tokenizer, tasks, None, 8, "cpu", **kwargs)


def test_gold_bits_per_byte_is_a_hand_computation(tokenizer, files):
    tasks = [
        EvalTask(
            name="mmlu_anatomy", group="k", metric="neg_bpb", data_files=files["mmlu_anatomy"]
        ),
        EvalTask(name="arc_challenge", group="r", metric="acc", data_files=files["arc_challenge"]),
    ]
    ev = evaluator(tokenizer, tasks)
    scores, per_doc = ev.evaluate_docs()
    rows = data.MMLU_ANATOMY[1:]  # the first row is the dev split
    expected = []
    for row in rows:
        gold = " " + "ABCD"[row["answer"]]
        ll = loglikelihood(ev.model, tokenizer, mmlu_prompt(row), gold)
        expected.append(ll / math.log(2) / len(gold.encode("utf-8")))  # minus bits per byte
    np.testing.assert_allclose(per_doc["mmlu_anatomy"], expected, rtol=1e-4)
    assert all(v < 0 for v in expected)
    assert scores["task.mmlu_anatomy"] == pytest.approx(np.mean(expected), rel=1e-4)
    se = np.std(per_doc["mmlu_anatomy"], ddof=1) / math.sqrt(len(rows))
    assert scores["task.mmlu_anatomy.stderr"] == pytest.approx(se)
    # the other task still goes through lm-eval's own evaluate, with its binomial stderr
    assert set(per_doc["arc_challenge"]) <= {0.0, 1.0}
    assert per_doc["arc_challenge"].mean() == pytest.approx(scores["task.arc_challenge"])
    assert "acc.arc_challenge" not in scores  # its metric is accuracy already


def test_p_gold_is_the_gold_choices_probability_normalised_over_the_choices(tokenizer, files):
    mmlu = EvalTask(
        name="mmlu_anatomy", group="k", metric="p_gold", data_files=files["mmlu_anatomy"]
    )
    ev = evaluator(tokenizer, [mmlu])
    scores, per_doc = ev.evaluate_docs()
    right = []
    for row, p_gold in zip(data.MMLU_ANATOMY[1:], per_doc["mmlu_anatomy"], strict=True):
        lls = np.array(
            [loglikelihood(ev.model, tokenizer, mmlu_prompt(row), f" {c}") for c in "ABCD"]
        )
        normalised = [gold_probability(lls, k) for k in range(4)]
        assert sum(normalised) == pytest.approx(1.0, abs=1e-12)
        assert p_gold == pytest.approx(normalised[row["answer"]], rel=1e-4)
        assert p_gold == pytest.approx(np.exp(lls[row["answer"]]) / np.exp(lls).sum(), rel=1e-4)
        right.append(float(np.argmax(lls) == row["answer"]))
    assert 0 < scores["task.mmlu_anatomy"] < 1
    # accuracy beside it, from the same requests: the gold choice has the highest likelihood
    assert scores["acc.mmlu_anatomy"] == pytest.approx(np.mean(right))
    p, n = np.mean(right), len(right)
    assert scores["acc.mmlu_anatomy.stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))


def test_margin_bpb_is_the_wrong_choices_bits_per_byte_less_the_golds(tokenizer, files):
    mmlu = EvalTask(
        name="mmlu_anatomy", group="k", metric="margin_bpb", data_files=files["mmlu_anatomy"]
    )
    ev = evaluator(tokenizer, [mmlu])
    scores, per_doc = ev.evaluate_docs()
    expected = []
    for row in data.MMLU_ANATOMY[1:]:
        bpb = [
            -loglikelihood(ev.model, tokenizer, mmlu_prompt(row), f" {c}") / math.log(2) / 2
            for c in "ABCD"  # " A" is two bytes
        ]
        gold = row["answer"]
        expected.append(np.mean([b for k, b in enumerate(bpb) if k != gold]) - bpb[gold])
    np.testing.assert_allclose(per_doc["mmlu_anatomy"], expected, rtol=1e-4, atol=1e-9)
    assert scores["task.mmlu_anatomy"] == pytest.approx(np.mean(expected), rel=1e-4)


def test_a_margin_does_not_move_when_every_choice_moves_alike():
    """A run-wide shift in how readily the model writes the choices' kind of text cancels."""
    choices = [" the cat sat.", " a dog ran!", " it rained."]
    lls = np.array([-9.0, -7.5, -12.0])
    shifted = lls - 0.8 * np.array([len(c.encode()) for c in choices])  # 0.8 nats per byte
    assert bpb_margin(shifted, choices, 1) == pytest.approx(bpb_margin(lls, choices, 1))
    by_hand = np.mean([9.0 / 13, 12.0 / 11]) / math.log(2) - 7.5 / 11 / math.log(2)
    assert bpb_margin(lls, choices, 1) == pytest.approx(by_hand)
    with pytest.raises(ContinuousMetricError, match="at least two choices"):
        bpb_margin(lls[:1], choices[:1], 0)


@pytest.mark.parametrize("num_fewshot", [0, 1])
def test_a_generative_tasks_reference_request_is_its_own_prompt_and_target(
    tokenizer, files, tmp_path, num_fewshot
):
    gsm8k_files = {**files["gsm8k"], "train": data.write_jsonl(tmp_path / "t.jsonl", [GSM8K_TRAIN])}
    task = EvalTask(name="gsm8k", group="m", metric="neg_bpb", data_files=gsm8k_files)
    ev = evaluator(tokenizer, [task], num_fewshot=num_fewshot)
    ours = [doc.requests for doc in ev._continuous["gsm8k"].docs]

    own = ev._task_dict["tasks"]["gsm8k"]  # lm-eval builds its generation requests again
    own.set_fewshot_seed(seed=FEWSHOT_SEED)
    own.build_all_requests()
    assert [i.request_type for i in own.instances] == ["generate_until"] * len(data.GSM8K)
    shot = f"Question: {GSM8K_TRAIN['question']}\nAnswer: {GSM8K_TRAIN['answer']}\n\n"
    for (request,), instance, row in zip(ours, own.instances, data.GSM8K, strict=True):
        context = f"{shot * num_fewshot}Question: {row['question']}\nAnswer:"
        assert instance.args[0] == context
        assert request.request_type == "loglikelihood"
        assert request.args == (context, " " + row["answer"])

    def no_generation(requests, disable_tqdm=True):
        raise AssertionError("neg_bpb generated")

    ev._lm.generate_until = no_generation
    scores, per_doc = ev.evaluate_docs()
    expected = []
    for (request,), row in zip(ours, data.GSM8K, strict=True):
        ll = loglikelihood(ev.model, tokenizer, request.args[0], " " + row["answer"])
        expected.append(-bits_per_byte(ll, " " + row["answer"]))
    np.testing.assert_allclose(per_doc["gsm8k"], expected, rtol=1e-4)
    assert scores["task.gsm8k"] == pytest.approx(np.mean(expected), rel=1e-4)
    assert not any(k.startswith("acc.") for k in scores)  # a generated answer's needs generation


def test_a_generated_answers_metric_is_reported_beside_the_reference_answers_bpb(tokenizer, files):
    reference = EvalTask(name="gsm8k", group="m", metric="neg_bpb", data_files=files["gsm8k"])
    alone = evaluator(tokenizer, [reference]).evaluate()
    task = reference.model_copy(update={"also": ["exact_match,strict-match"]})
    ev = evaluator(tokenizer, [task])
    answers = [row["answer"].rsplit("#### ", 1)[1] for row in data.GSM8K]
    prompts = [f"Question: {row['question']}\nAnswer:" for row in data.GSM8K]

    def generate(requests, disable_tqdm=True):  # right for the first question only
        out = []
        for r in requests:
            i = prompts.index(r.args[0])
            out.append(f" so #### {answers[i] if i == 0 else int(answers[i]) + 1}")
        return out

    ev._lm.generate_until = generate
    scores, per_doc = ev.evaluate_docs()
    n = len(data.GSM8K)
    assert scores["also.gsm8k.exact_match,strict-match"] == pytest.approx(1 / n)
    stderr = scores["also.gsm8k.exact_match,strict-match.stderr"]
    assert stderr == pytest.approx(math.sqrt((1 / n) * (1 - 1 / n) / (n - 1)))
    # The ranked score and its per-document values are still the reference answer's bpb.
    assert scores["task.gsm8k"] == pytest.approx(alone["task.gsm8k"], rel=1e-6)
    assert scores["group.m"] == pytest.approx(alone["group.m"], rel=1e-6)
    assert per_doc["gsm8k"].mean() == pytest.approx(alone["task.gsm8k"], rel=1e-6)


def test_also_takes_metrics_lm_eval_reports():
    assert problems(EvalTask(name="gsm8k", group="m", also=["exact_match,strict-match"])) == [
        "evaluation.tasks.0.metric: gsm8k does not report 'acc'; it reports (metric,filter): "
        "exact_match,flexible-extract, exact_match,strict-match; or computed by Param-Mix: neg_bpb"
    ]
    assert problems(
        EvalTask(name="gsm8k", group="m", metric="neg_bpb", also=["neg_bpb", "bleu"])
    ) == [
        "evaluation.tasks.0.also.0: neg_bpb is computed by Param-Mix, not reported by lm-eval; "
        "`also` takes lm-eval's metrics (name it as the task's metric instead)",
        "evaluation.tasks.0.also.1: gsm8k does not report 'bleu'; it reports (metric,filter): "
        "exact_match,flexible-extract, exact_match,strict-match; or computed by Param-Mix: neg_bpb",
    ]
    with pytest.raises(ValueError, match="duplicate metrics"):
        EvalTask(name="gsm8k", group="m", also=["exact_match", "exact_match"])


def problems(*tasks: EvalTask) -> list[str]:
    return [str(p) for p in resolve_tasks(list(tasks), None, RunContext()).problems]


def test_preflight_knows_which_tasks_each_continuous_metric_applies_to():
    assert (
        problems(
            EvalTask(name="gsm8k", group="m", metric="neg_bpb"),
            EvalTask(name="arc_challenge", group="r", metric="p_gold"),
            EvalTask(name="arc_easy", group="r", metric="neg_bpb"),
            EvalTask(
                name="lambada_openai", group="l", metric="neg_bpb"
            ),  # output_type loglikelihood
        )
        == []
    )
    assert problems(
        EvalTask(name="arc_easy", group="r"),
        EvalTask(name="gsm8k", group="m", metric="p_gold"),
        EvalTask(name="mmlu", group="k", metric="neg_bpb"),
        EvalTask(name="wikitext", group="w", metric="neg_bpb"),
        EvalTask(name="gsm8k", group="m", metric="margin_bpb"),
    ) == [
        "evaluation.tasks.1.metric: p_gold applies to output_type multiple_choice, and gsm8k is "
        "generate_until; valid: neg_bpb, exact_match,flexible-extract, exact_match,strict-match",
        "evaluation.tasks.2.metric: neg_bpb is computed per document of one task and mmlu is a "
        "group; name its tasks instead",
        "evaluation.tasks.3.metric: neg_bpb applies to output_type multiple_choice or "
        "generate_until or loglikelihood, and wikitext is loglikelihood_rolling; valid: "
        "bits_per_byte,none, byte_perplexity,none, word_perplexity,none",
        "evaluation.tasks.4.metric: margin_bpb applies to output_type multiple_choice, and gsm8k "
        "is generate_until; valid: neg_bpb, exact_match,flexible-extract, exact_match,strict-match",
    ]


def test_a_metric_nobody_reports_lists_the_continuous_ones_too():
    (problem,) = problems(EvalTask(name="arc_easy", group="r", metric="bpb"))
    assert problem == (
        "evaluation.tasks.0.metric: arc_easy does not report 'bpb'; it reports (metric,filter): "
        "acc,none, acc_norm,none; or computed by Param-Mix: neg_bpb, p_gold, margin_bpb"
    )


def write_task(folder, name: str, output_type: str, rows: list[dict], **extra) -> None:
    """A task YAML of our own, reading `rows` as its test split."""
    rows_file = data.write_jsonl(folder / f"{name}.jsonl", rows)
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": rows_file}},
        "test_split": "test",
        "output_type": output_type,
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        **extra,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def test_a_loglikelihood_tasks_target_is_scored_as_the_task_asks_for_it(tokenizer, tmp_path):
    model = pico_llama(tokenizer, seed=4)
    rows = [{"prompt": "2 + 2 =", "answer": " 4"}, {"prompt": "Paris is in", "answer": " France"}]
    rows.append(greedy_row(model, tokenizer, "The sky is"))
    write_task(tmp_path, "tiny_ll", "loglikelihood", rows)
    task = EvalTask(name="tiny_ll", group="g", metric="neg_bpb")
    ev = Evaluator(model, tokenizer, [task], tmp_path, 8, "cpu")
    scores, per_doc = ev.evaluate_docs()
    expected = [
        -bits_per_byte(loglikelihood(ev.model, tokenizer, r["prompt"], r["answer"]), r["answer"])
        for r in rows
    ]
    np.testing.assert_allclose(per_doc["tiny_ll"], expected, rtol=1e-4)
    # its accuracy is lm-eval's: the answer is what greedy decoding would write
    greedy = [is_greedy(ev.model, tokenizer, r["prompt"], r["answer"]) for r in rows]
    assert greedy[-1] and not all(greedy)
    assert scores["acc.tiny_ll"] == pytest.approx(np.mean(greedy))


def greedy_row(model, tokenizer, prompt: str) -> dict:
    """A document whose answer is the model's own most likely next token after `prompt`."""
    ids = tokenizer.encode(prompt)
    with torch.no_grad():
        token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
    answer = tokenizer.decode([token])
    assert tokenizer.encode(prompt + answer) == [*ids, token], "the answer must round-trip"
    return {"prompt": prompt, "answer": answer}


def is_greedy(model, tokenizer, context: str, continuation: str) -> bool:
    """Whether every continuation token is the model's argmax after what precedes it."""
    whole = tokenizer.encode(context + continuation)
    n_context = len(tokenizer.encode(context))
    with torch.no_grad():
        logits = model(torch.tensor([whole[:-1]])).logits[0]  # (T - 1, V)
    return logits[n_context - 1 :].argmax(-1).tolist() == whole[n_context:]


def test_an_empty_reference_answer_is_named_with_its_task_and_document(tokenizer, tmp_path):
    rows = [{"prompt": "Say hi:", "answer": "hi"}, {"prompt": "Say nothing:", "answer": ""}]
    write_task(tmp_path, "tiny_gen", "generate_until", rows, target_delimiter="")
    task = EvalTask(name="tiny_gen", group="g", metric="neg_bpb")
    with pytest.raises(EvaluationError) as err:
        Evaluator(pico_llama(tokenizer, seed=4), tokenizer, [task], tmp_path, 8, "cpu")
    assert str(err.value) == (
        "evaluation.tasks.0.metric: neg_bpb of tiny_gen: document 1: the gold continuation is empty"
    )
