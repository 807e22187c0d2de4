"""Evaluator on a pico Llama: in-place weight changes, result keys, errors, threads."""

import math
import shutil
import sysconfig
import threading
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from parammix_core.config import EvalTask, EvaluationConfig
from parammix_core.evaluate import (
    EvaluationError,
    Evaluator,
    aggregate_groups,
    binomial_stderr,
    heldout_loss,
    write_builtin_suite,
)

N_DOCS = 10
WEB = [
    "The river was wide and slow in the summer, and the children swam there every day. "
    "Their parents watched from the shade of the old trees near the bank. "
    "In the evening the whole village gathered in the square to hear the music. "
    "Nobody wanted to go home before the last song had been played."
]


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    stdlib = tmp_path_factory.mktemp("stdlib")
    for name in ("textwrap.py", "shlex.py", "fractions.py", "difflib.py"):
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / name, stdlib / name)
    out = tmp_path_factory.mktemp("suite")
    return write_builtin_suite(out, N_DOCS, 0, {"web": WEB}, stdlib_dir=stdlib)


@pytest.fixture(scope="module")
def tokenizer(suite) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in a blink on the suite's own text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([p.read_text() for p in sorted(suite.glob("*.jsonl"))], trainer)
    special = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special, eos_token=special, pad_token=special
    )


def pico_llama(tokenizer, seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def heldout(tokenizer) -> dict[str, torch.Tensor]:
    ids = tokenizer.encode(" ".join(WEB * 3))
    return {"web": torch.tensor(ids[: (len(ids) // 16) * 16]).view(-1, 16)}


def make_evaluator(model, tokenizer, suite, tasks=None, heldout=None) -> Evaluator:
    tasks = EvaluationConfig().tasks if tasks is None else tasks
    return Evaluator(model, tokenizer, tasks, suite, 8, torch.device("cpu"), heldout=heldout)


def test_weights_changed_in_place_score_like_a_fresh_model(suite, tokenizer, heldout):
    model = pico_llama(tokenizer, seed=0)
    evaluator = make_evaluator(model, tokenizer, suite, heldout=heldout)
    before = evaluator.evaluate()
    assert evaluator.evaluate() == before  # same weights, same numbers
    other = pico_llama(tokenizer, seed=1)
    with torch.no_grad():
        for param, new in zip(model.parameters(), other.parameters(), strict=True):
            param.copy_(new)
    after = evaluator.evaluate()
    fresh = make_evaluator(pico_llama(tokenizer, seed=1), tokenizer, suite, heldout=heldout)
    assert after == fresh.evaluate()
    assert after != before


def test_result_keys_metrics_and_group_aggregation(suite, tokenizer, heldout):
    tasks = [
        EvalTask(name="pm_arithmetic", group="math"),
        EvalTask(name="pm_sequences", group="math", metric="p_correct"),
        EvalTask(name="pm_word_order", group="language", metric="acc_norm"),
    ]
    model = pico_llama(tokenizer, seed=2)
    out = make_evaluator(model, tokenizer, suite, tasks, heldout).evaluate()
    names = ["pm_arithmetic", "pm_sequences", "pm_word_order"]
    expected = {f"task.{n}{s}" for n in names for s in ("", ".stderr")}
    expected |= {f"group.{g}{s}" for g in ("math", "language") for s in ("", ".stderr")}
    # accuracy beside the tasks scored by another metric (pm_arithmetic's is acc already)
    expected |= {f"acc.{n}{s}" for n in names[1:] for s in ("", ".stderr")}
    assert set(out) == expected | {"loss.web", "loss.web.stderr"}
    by_acc = make_evaluator(
        model, tokenizer, suite, [EvalTask(name="pm_sequences", group="math")]
    ).evaluate()
    assert out["acc.pm_sequences"] == by_acc["task.pm_sequences"]
    assert out["acc.pm_sequences.stderr"] == pytest.approx(by_acc["task.pm_sequences.stderr"])
    acc = out["task.pm_arithmetic"]
    binomial = math.sqrt(acc * (1 - acc) / (N_DOCS - 1))
    assert out["task.pm_arithmetic.stderr"] == pytest.approx(binomial)
    assert 0 < out["task.pm_sequences"] < 1  # a probability, not a 0/1 average
    assert 0 < out["task.pm_sequences.stderr"] < 0.5
    assert out["group.math"] == pytest.approx((acc + out["task.pm_sequences"]) / 2)
    se = [out["task.pm_arithmetic.stderr"], out["task.pm_sequences.stderr"]]
    assert out["group.math.stderr"] == pytest.approx(math.hypot(*se) / 2)
    assert out["group.language"] == out["task.pm_word_order"]
    assert (out["loss.web"], out["loss.web.stderr"]) == pytest.approx(
        heldout_loss(model, heldout["web"], 8, "cpu")
    )


def test_evaluate_blocks_gives_the_per_block_losses_of_the_same_pass(suite, tokenizer, heldout):
    model = pico_llama(tokenizer, seed=3)
    evaluator = make_evaluator(
        model, tokenizer, suite, [EvalTask(name="pm_arithmetic", group="math")], heldout
    )
    out, blocks = evaluator.evaluate_blocks()
    assert out == evaluator.evaluate()
    assert set(blocks) == {"web"} and blocks["web"].shape == (heldout["web"].shape[0],)
    # block k's value is the mean next-token loss of block k alone
    alone, _ = heldout_loss(model, heldout["web"][1:2], 1, "cpu")
    assert blocks["web"][1] == pytest.approx(alone, rel=1e-5)
    assert out["loss.web"] == pytest.approx(blocks["web"].mean(), rel=1e-12)
    assert out["loss.web.stderr"] == pytest.approx(
        blocks["web"].std(ddof=1) / math.sqrt(len(blocks["web"])), rel=1e-9
    )


def test_aggregate_groups_math():
    tasks = [EvalTask(name=n, group=g) for n, g in (("a", "g"), ("b", "g"), ("c", "h"))]
    out = aggregate_groups(tasks, {"a": (0.2, 0.03), "b": (0.6, 0.04), "c": (0.5, 0.01)})
    assert out == pytest.approx(
        {"group.g": 0.4, "group.g.stderr": 0.025, "group.h": 0.5, "group.h.stderr": 0.01}
    )


def test_missing_stderr_falls_back_to_binomial_for_0_1_metrics_only(suite, tokenizer):
    evaluator = make_evaluator(pico_llama(tokenizer, 0), tokenizer, suite)
    task = EvalTask(name="pm_arithmetic", group="math")
    value, stderr = evaluator._score(task, {"acc,none": 0.3, "acc_stderr,none": "N/A"})
    assert (value, stderr) == (0.3, pytest.approx(binomial_stderr(0.3, N_DOCS)))
    assert stderr == pytest.approx(math.sqrt(0.3 * 0.7 / (N_DOCS - 1)))
    task = EvalTask(name="pm_arithmetic", group="math", metric="p_correct")
    value, stderr = evaluator._score(task, {"p_correct,none": 0.4, "p_correct_stderr,none": "N/A"})
    assert value == 0.4 and math.isnan(stderr)


def test_unknown_task_lists_close_matches_and_available(suite, tokenizer):
    tasks = [EvalTask(name="pm_arithmetc", group="math")]
    with pytest.raises(EvaluationError) as err:
        make_evaluator(pico_llama(tokenizer, 0), tokenizer, suite, tasks)
    message = str(err.value)
    assert "'pm_arithmetc' - did you mean pm_arithmetic" in message  # the closest first
    assert "available in " in message and "pm_word_order" in message
    assert "lm-eval knows" in message  # its own tasks were searched too


def test_a_tag_is_not_a_task(suite, tokenizer):
    tasks = [EvalTask(name="parammix_builtin", group="all")]
    with pytest.raises(
        EvaluationError, match=r"'parammix_builtin' is an lm-eval tag.*pm_arithmetic"
    ):
        make_evaluator(pico_llama(tokenizer, 0), tokenizer, suite, tasks)


def test_metric_the_task_does_not_report_is_refused_before_any_scoring(suite, tokenizer):
    tasks = [EvalTask(name="pm_arithmetic", group="math", metric="f1")]
    message = (
        r"evaluation.tasks.0.metric: pm_arithmetic does not report 'f1'; "
        r"it reports \(metric,filter\): acc,none, acc_norm,none, p_correct,none; "
        r"or computed by Param-Mix: neg_bpb, p_gold, margin_bpb$"
    )
    with pytest.raises(EvaluationError, match=message):
        make_evaluator(pico_llama(tokenizer, 0), tokenizer, suite, tasks)


def test_a_metric_missing_at_run_time_is_still_an_error(suite, tokenizer):
    evaluator = make_evaluator(pico_llama(tokenizer, 0), tokenizer, suite)
    task = EvalTask(name="pm_arithmetic", group="math", metric="f1")
    message = r"'pm_arithmetic' did not produce metric 'f1'; it produced: acc,none, acc_norm,none"
    with pytest.raises(EvaluationError, match=message):
        evaluator._score(task, {"acc,none": 0.5, "acc_norm,none": 0.5, "acc_stderr,none": 0.1})


def test_model_on_another_device_is_refused(suite, tokenizer):
    with pytest.raises(EvaluationError, match="the model is on cpu, not on device cuda"):
        Evaluator(pico_llama(tokenizer, 0), tokenizer, EvaluationConfig().tasks, suite, 8, "cuda")


def test_two_evaluators_in_two_threads(suite, tokenizer):
    models = [pico_llama(tokenizer, seed) for seed in (3, 4)]
    alone = [make_evaluator(m, tokenizer, suite).evaluate() for m in models]
    together: list[dict | None] = [None, None]

    def run(i: int) -> None:
        evaluator = make_evaluator(models[i], tokenizer, suite)
        together[i] = [evaluator.evaluate() for _ in range(2)][-1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert alone[0] != alone[1]


def test_per_document_scores_average_to_the_task_scores(suite, tokenizer):
    evaluator = make_evaluator(pico_llama(tokenizer, seed=2), tokenizer, suite)
    metrics, per_doc = evaluator.evaluate_docs()
    assert metrics == evaluator.evaluate()
    assert set(per_doc) == {t.name for t in evaluator.tasks}
    for task in evaluator.tasks:
        docs = per_doc[task.name]
        assert docs.ndim == 1 and len(docs) == evaluator._n_docs[task.name]
        assert docs.mean() == pytest.approx(metrics[f"task.{task.name}"], rel=1e-9)
