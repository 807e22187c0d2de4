"""lm-eval's own standard task definitions, run offline on local copies of their data sets
(`EvalTask.data_files`), scored on a pico Llama by lm-eval's own filters and metrics."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from parammix_core.config import EvalTask
from parammix_core.evaluate import EvaluationError, Evaluator
from tests.parammix_core.evaluate import standard_data as data
from tests.parammix_core.evaluate.test_harness import pico_llama


def task(name: str, metric: str, files: dict, max_gen_toks: int | None = None) -> EvalTask:
    return EvalTask(
        name=name, group="g", metric=metric, data_files=files[name], max_gen_toks=max_gen_toks
    )


def evaluator(tokenizer, tasks: list[EvalTask], **kwargs) -> Evaluator:
    return Evaluator(pico_llama(tokenizer, seed=0), tokenizer, tasks, None, 8, "cpu", **kwargs)


def check_scores(ev: Evaluator, rows: dict[str, int]) -> dict[str, list[float]]:
    """Every task's score is a finite proportion, the mean of its per-document scores."""
    scores, per_doc = ev.evaluate_docs()
    assert set(per_doc) == set(rows)
    for name, n in rows.items():
        value = scores[f"task.{name}"]
        assert math.isfinite(value) and 0 <= value <= 1, (name, value)
        assert len(per_doc[name]) == n, name
        assert per_doc[name].mean() == pytest.approx(value), name
        assert set(per_doc[name]) <= {0.0, 1.0}, name
    return {name: per_doc[name].tolist() for name in rows}


def test_standard_benchmarks_on_local_copies(tokenizer, files):
    tasks = [
        task("gsm8k", "exact_match,strict-match", files, max_gen_toks=12),
        task("gpqa_main_zeroshot", "acc_norm", files),
        task("mmlu_anatomy", "acc", files),
        task("arc_challenge", "acc_norm", files),
        task("bbh_zeroshot_boolean_expressions", "exact_match,flexible-extract", files, 6),
        task("triviaqa", "exact_match", files, max_gen_toks=6),  # its only filter
    ]
    ev = evaluator(tokenizer, tasks)
    check_scores(
        ev,
        {
            "gsm8k": len(data.GSM8K),
            "gpqa_main_zeroshot": len(data.GPQA_MAIN),
            "mmlu_anatomy": len(data.MMLU_ANATOMY) - 1,  # the first row is the dev split
            "arc_challenge": len(data.ARC_CHALLENGE),
            "bbh_zeroshot_boolean_expressions": len(data.BBH_BOOLEAN_EXPRESSIONS),
            "triviaqa": len(data.TRIVIAQA),
        },
    )
    loaded = ev._task_dict["tasks"]
    # lm-eval's own prompt, filters and generation settings, with the cap on top
    gsm8k = loaded["gsm8k"]
    question = data.GSM8K[0]["question"]
    assert gsm8k.doc_to_text(gsm8k.eval_docs[0]) == f"Question: {question}\nAnswer:"
    assert gsm8k.config.generation_kwargs["max_gen_toks"] == 12
    assert gsm8k.config.generation_kwargs["until"] == ["Question:", "</s>", "<|im_end|>"]
    assert [f.name for f in gsm8k._filters] == ["strict-match", "flexible-extract"]
    assert loaded["triviaqa"].eval_docs[1]["answer"]["aliases"] == ["Paris", "Paris, France"]
    assert {key for key in ev._keys.values()} >= {
        "exact_match,strict-match",
        "exact_match,flexible-extract",
        "exact_match,remove_whitespace",
        "acc_norm,none",
    }


def test_gsm8k_reports_both_of_its_filters(tokenizer, files):
    for metric in ("exact_match,strict-match", "exact_match,flexible-extract"):
        ev = evaluator(tokenizer, [task("gsm8k", metric, files, max_gen_toks=8)])
        check_scores(ev, {"gsm8k": len(data.GSM8K)})
        assert ev._keys["gsm8k"] == metric


def test_few_shot_examples_come_from_the_given_split(tokenizer, files):
    ev = evaluator(tokenizer, [task("mmlu_anatomy", "acc", files)], num_fewshot=1)
    mmlu = ev._task_dict["tasks"]["mmlu_anatomy"]
    assert mmlu.get_config("num_fewshot") == 1
    assert [d["question"] for d in mmlu.fewshot_docs()] == [data.MMLU_ANATOMY[0]["question"]]
    check_scores(ev, {"mmlu_anatomy": 2})


def test_minerva_math_on_a_local_hendrycks_math_subject(tokenizer, files):
    pytest.importorskip("math_verify", reason="lm-eval[math] is not installed")
    ev = evaluator(tokenizer, [task("minerva_math_algebra", "math_verify", files, 12)])
    docs = ev._task_dict["tasks"]["minerva_math_algebra"].eval_docs
    assert [d["answer"] for d in docs] == ["4", "25", "\\frac{3}{4}"]  # its process_docs ran
    check_scores(ev, {"minerva_math_algebra": len(data.MATH_ALGEBRA)})


def test_code_tasks_run_code_only_when_allowed(tokenizer, files, monkeypatch):
    tasks = [task("humaneval", "pass@1", files, 8), task("mbpp", "pass_at_1", files, 8)]
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "0")
    with pytest.raises(EvaluationError) as refused:
        evaluator(tokenizer, tasks)
    assert str(refused.value).count("set evaluation.allow_code_execution: true") == 2
    assert os.environ["HF_ALLOW_CODE_EVAL"] == "0"

    ev = evaluator(tokenizer, tasks, allow_code_execution=True)
    assert os.environ["HF_ALLOW_CODE_EVAL"] == "1"
    per_doc = check_scores(ev, {"humaneval": 3, "mbpp": len(data.MBPP)})
    # rows 2 and 3 differ only in their test: one passes, one fails, so the tests really ran
    assert per_doc["humaneval"][1:] == [1.0, 0.0]
    assert ev._keys == {"humaneval": "pass@1,create_test", "mbpp": "pass_at_1,none"}


def test_a_file_in_another_schema_is_named_with_lm_evals_reason(tokenizer, tmp_path: Path):
    wrong = tmp_path / "gsm8k.jsonl"
    wrong.write_text('{"prompt": "1 + 1", "solution": "2"}\n')
    config = EvalTask(
        name="gsm8k", group="m", metric="exact_match,strict-match", data_files={"test": str(wrong)}
    )
    message = (
        f"evaluation.tasks.0.data_files: lm-eval's gsm8k could not read test: {wrong} "
        "(UndefinedError: 'question' is undefined); each file must hold the data set's own columns"
    )
    with pytest.raises(EvaluationError) as err:
        evaluator(tokenizer, [config])
    assert str(err.value) == message


def test_a_standard_task_without_its_data_offline_points_at_data_files(tokenizer):
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"  # tests/conftest.py
    arc = EvalTask(name="arc_easy", group="r")
    with pytest.raises(
        EvaluationError,
        match=r"^evaluation.tasks.0.name: lm-eval could not load "
        r"arc_easy \(.*\); offline, give local copies of its data as "
        r"evaluation.tasks.0.data_files, or let lm-eval download it: HF_HUB_OFFLINE=0 "
        r"HF_DATASETS_OFFLINE=0 in the environment$",
    ):
        evaluator(tokenizer, [arc])
