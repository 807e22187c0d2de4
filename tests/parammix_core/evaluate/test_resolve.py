"""Resolving configured lm-eval tasks without indexing all of lm-eval: names, metric keys,
code execution, threads, data files; and agreement with lm-eval's own index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from parammix_core.config import ConfigError, EvalTask, Experiment, parse_experiment
from parammix_core.evaluate import task_finder
from parammix_core.evaluate.resolve import (
    RunContext,
    check_evaluation,
    metric_key,
    resolve_tasks,
)
from parammix_core.evaluate.task_finder import TaskFinder


def resolve(*tasks: EvalTask, include_path=None, **context):
    return resolve_tasks(list(tasks), include_path, RunContext(**context))


def messages(resolution) -> list[str]:
    return [str(p) for p in resolution.problems]


@pytest.mark.parametrize(
    ("name", "kind", "keys"),
    [
        ("gsm8k", "task", {"exact_match,strict-match", "exact_match,flexible-extract"}),
        ("humaneval", "task", {"pass@1,create_test"}),  # code_eval's pass@k, per k in the YAML
        ("arc_challenge", "task", {"acc,none", "acc_norm,none"}),  # via include: arc_easy.yaml
        ("triviaqa", "task", {"exact_match,remove_whitespace"}),
        ("minerva_math_algebra", "task", {"exact_match,none", "math_verify,none"}),
        ("gpqa_main_zeroshot", "task", {"acc,none", "acc_norm,none"}),
        ("mmlu", "group", {"acc,none"}),  # aggregate_metric_list over its 57 subjects
        ("bbh_zeroshot", "group", {"exact_match,flexible-extract"}),
    ],
)
def test_metric_keys_of_standard_tasks(name, kind, keys):
    task = EvalTask(name=name, group="g", metric=sorted(keys)[0])
    resolution = resolve(task, allow_code_execution=True)
    info = resolution.infos[name]
    assert (info.kind, info.metrics, info.metrics_known) == (kind, keys, True)
    assert messages(resolution) == []


def test_a_group_knows_its_tasks_and_folders():
    info = resolve(EvalTask(name="mmlu", group="k")).infos["mmlu"]
    assert len(info.leaves) == 57 and "mmlu_anatomy" in {leaf.name for leaf in info.leaves}
    assert [f.name for f in info.folders] == ["default"]  # lm-eval indexes only mmlu/default
    assert not info.unsafe_code and not info.main_thread_only


def test_metric_key_rules():
    keys = {"acc,none", "acc_norm,none", "exact_match,strict-match", "exact_match,flex"}
    assert metric_key("acc", keys) == "acc,none"
    assert metric_key("acc_norm,none", keys) == "acc_norm,none"
    assert metric_key("exact_match", keys) is None  # two filters: ambiguous
    assert metric_key("exact_match,flex", keys) == "exact_match,flex"
    assert metric_key("exact_match,none", keys) is None
    assert metric_key("pass@1", {"pass@1,create_test"}) == "pass@1,create_test"  # the only one


def test_unknown_names_tags_and_groups_without_a_score():
    resolution = resolve(
        EvalTask(name="arc_challenge_x", group="r"),
        EvalTask(name="gpqa", group="k"),
        EvalTask(name="japanese_leaderboard", group="l"),
    )
    unknown, tag, group = messages(resolution)
    assert unknown.startswith(
        "evaluation.tasks.0.name: unknown lm-eval task 'arc_challenge_x' - did you mean "
        "arc_challenge"
    )
    assert "lm-eval knows" in unknown
    # the tag is set in an included template, not in the tasks' own files
    assert tag.startswith("evaluation.tasks.1.name: 'gpqa' is an lm-eval tag")
    assert "gpqa_main_zeroshot" in tag and "gpqa_diamond_n_shot" in tag
    assert group == (
        "evaluation.tasks.2.metric: japanese_leaderboard is a group without "
        "aggregate_metric_list: it reports no score of its own; name its tasks instead"
    )


def test_code_tasks_need_allow_code_execution():
    tasks = [EvalTask(name="humaneval", group="c", metric="pass@1")]
    tasks.append(EvalTask(name="mbpp", group="c", metric="pass_at_1"))
    refused = resolve(*tasks)
    assert [p.field for p in refused.problems] == [
        "evaluation.tasks.0.name",
        "evaluation.tasks.1.name",
    ]
    assert "set evaluation.allow_code_execution: true" in str(refused.problems[0])
    assert messages(resolve(*tasks, allow_code_execution=True)) == []


def test_signal_timeouts_are_refused_outside_a_main_thread():
    task = EvalTask(name="minerva_math_algebra", group="m", metric="exact_match")
    assert resolve(task).infos[task.name].main_thread_only
    assert messages(resolve(task)) == []
    (problem,) = messages(resolve(task, worker_thread="it runs in a worker"))
    assert problem == (
        "evaluation.tasks.0.name: minerva_math_algebra scores with signal.alarm timeouts (its "
        "Python, or math_verify's), which work only in a process's main thread, and it runs in "
        "a worker"
    )
    assert (
        not resolve(EvalTask(name="gsm8k", group="m", metric="exact_match,strict-match"))
        .infos["gsm8k"]
        .main_thread_only
    )


def test_the_pipeline_preflight_knows_its_threads():
    tasks = [{"name": "minerva_math_algebra", "group": "math", "metric": "exact_match"}]
    exp = Experiment.model_validate({"evaluation": {"tasks": tasks}})
    with pytest.raises(ConfigError, match=r"runtime.task_runner: thread"):
        check_evaluation(exp, "exp.yaml")
    ray = exp.runtime.model_copy(update={"task_runner": "ray"})
    on_ray = exp.model_copy(update={"runtime": ray})
    assert check_evaluation(on_ray, "exp.yaml").problems == []


def test_data_files_are_checked_against_the_task(tmp_path: Path):
    test = tmp_path / "test.jsonl"
    test.write_text("{}\n")
    dev = tmp_path / "dev.parquet"
    dev.write_bytes(b"")

    def problems(task: str, files: dict, metric: str = "acc", **context) -> list[str]:
        config = EvalTask(name=task, group="g", metric=metric, data_files=files)
        return messages(resolve(config, **context))

    assert problems("mmlu_anatomy", {"test": str(test)}) == []
    assert problems("mmlu_anatomy", {"test": str(test)}, num_fewshot=1) == [
        "evaluation.tasks.0.data_files: mmlu_anatomy reads split 'dev'; give a file for it"
    ]
    assert problems("mmlu_anatomy", {"test": str(test), "dev": str(dev)}, num_fewshot=1) == [
        "evaluation.tasks.0.data_files: files must all be one of .csv, .json, .jsonl, .parquet "
        f"(optionally .gz, .bz2, .xz, .zst), got {test}, {dev}"
    ]
    assert problems("triviaqa", {"validation": str(tmp_path / "no.jsonl")}, "exact_match") == [
        f"evaluation.tasks.0.data_files: validation: no such file {tmp_path / 'no.jsonl'}"
    ]
    assert problems("gpqa_main_zeroshot", {"test": str(test)}) == [
        "evaluation.tasks.0.data_files: gpqa_main_zeroshot reads split 'train'; give a file for it",
        "evaluation.tasks.0.data_files: test: gpqa_main_zeroshot reads no split 'test' (its "
        "splits: train)",
    ]
    assert problems("mmlu", {"test": str(test)}) == [
        "evaluation.tasks.0.data_files: mmlu is a group of other tasks; give data_files to each "
        "task"
    ]


def test_max_gen_toks_only_for_generation():
    (problem,) = messages(resolve(EvalTask(name="arc_easy", group="r", max_gen_toks=8)))
    assert problem == (
        "evaluation.tasks.0.max_gen_toks: arc_easy does not generate (output_type "
        "multiple_choice; max_gen_toks applies to generate_until tasks)"
    )
    task = EvalTask(name="gsm8k", group="m", metric="exact_match,strict-match", max_gen_toks=8)
    assert messages(resolve(task)) == []


def test_the_embedded_default_is_checked_without_searching_lm_evals_tasks(monkeypatch):
    def no_search(self):
        raise AssertionError("lm-eval's task folder was read")

    monkeypatch.setattr(task_finder._Folder, "texts", no_search)  # only the built-in suite
    resolution = check_evaluation(Experiment(), "<embedded default>")
    assert sorted(resolution.infos) == sorted(t.name for t in Experiment().evaluation.tasks)
    assert all(
        i.metrics == {"acc,none", "acc_norm,none", "p_correct,none"}
        for i in resolution.infos.values()
    )
    custom = Experiment().model_copy(deep=True)
    custom.evaluation.include_path = "/nonexistent/tasks"
    with pytest.raises(ConfigError, match=r"evaluation.include_path: no such task folder"):
        check_evaluation(custom, "exp.yaml")


def test_a_document_count_is_refused_for_tasks_not_generated_here(tmp_path):
    """`docs` sets how many documents the built-in suite writes: an lm-eval task, or a
    built-in name read from the user's folder, has its own dataset."""
    ok = Experiment().model_copy(deep=True)
    ok.evaluation.tasks[2].docs = 900
    assert check_evaluation(ok, "exp.yaml").problems == []
    bad = ok.model_copy(deep=True)
    bad.evaluation.tasks.append(EvalTask(name="arc_easy", group="m", metric="acc", docs=50))
    with pytest.raises(ConfigError) as err:
        check_evaluation(bad, "exp.yaml")
    assert str(err.value).splitlines() == [
        "exp.yaml: 1 invalid evaluation field(s)",
        "  evaluation.tasks.5.docs: arc_easy is not a generated built-in task: its documents "
        "are its dataset's (`docs` sets how many the built-in suite writes)",
    ]


@pytest.mark.slow
def test_the_finder_agrees_with_lm_evals_own_index():
    """The same file for every name lm-eval's full index (about 25 s) knows, tags included."""
    from lm_eval.tasks import TaskManager

    names = [
        "gsm8k",
        "mmlu",
        "mmlu_stem_tasks",  # a tag set in each subject's file
        "gpqa",  # a tag set in included templates
        "afrimmlu_tasks_prompt_2",  # a tag set in a template without a .yaml suffix
        "arc_challenge",
        "bbh_zeroshot",
        "minerva_math",
        "leaderboard",
        "humaneval",
        "triviaqa",
        "no_such_task_anywhere",
    ]
    found = TaskFinder([]).find(names)
    index = TaskManager(include_defaults=True).task_index
    for name in names:
        ours, theirs = found[name], index.get(name)
        assert (ours is None) == (theirs is None), name
        if ours is not None:
            assert (ours.kind, ours.yaml_path, ours.tags) == (
                theirs.kind,
                theirs.yaml_path,
                theirs.tags,
            ), name


def test_the_readme_example_names_real_tasks_and_metrics():
    """README's example config: every task and metric resolves; only its example file is
    missing on this machine."""
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    exp = parse_experiment(yaml.safe_load(block), "README.md")
    with pytest.raises(ConfigError) as err:
        check_evaluation(exp, "README.md")
    assert str(err.value).splitlines()[1:] == [
        "  evaluation.tasks.3.data_files: test: no such file /data/arc/ARC-Challenge-test.jsonl"
    ]


def test_math_hard_groups_need_the_main_thread_too():
    infos = resolve(EvalTask(name="leaderboard_math_hard", group="m", metric="exact_match")).infos
    assert infos["leaderboard_math_hard"].main_thread_only


def test_lower_is_better_and_corpus_level_metrics_are_refused_by_name():
    """The utility is maximised over per-document means: crows_pairs' likelihood_diff (lower is
    better) would choose the most biased mixture; wikitext's perplexities have no per-document
    value (they failed after all the training with a bare TypeError)."""
    resolution = resolve(
        EvalTask(name="crows_pairs_english", group="s", metric="likelihood_diff"),
        EvalTask(name="wikitext", group="l", metric="word_perplexity"),
        EvalTask(name="arc_easy", group="r", metric="acc", also=["acc_norm"]),  # both fine
        EvalTask(name="crows_pairs_english", group="t", metric="pct_stereotype"),
    )
    lower, corpus, lower_too = messages(resolution)
    assert lower.startswith(
        "evaluation.tasks.0.metric: likelihood_diff of crows_pairs_english is lower-is-better "
        "(higher_is_better: false), and Param-Mix maximises the utility"
    )
    assert corpus.startswith(
        "evaluation.tasks.1.metric: word_perplexity of wikitext is aggregated over all "
        "documents (weighted_perplexity), not a mean of per-document scores"
    )
    assert lower_too.startswith("evaluation.tasks.3.metric: pct_stereotype of crows_pairs")
    shown = EvalTask(name="crows_pairs_english", group="s", metric="p_gold")
    assert messages(resolve(shown.model_copy(update={"also": ["likelihood_diff"]}))) == []


def test_a_task_folders_yaml_naming_a_missing_data_file_is_refused(tmp_path: Path):
    """Caught by the preflight, not by lm-eval after all the training."""
    data = tmp_path / "mc.jsonl"
    data.write_text('{"q": "1+1", "choices": ["2", "3"], "label": 0}\n')
    folder = tmp_path / "tasks"
    folder.mkdir()
    yaml_text = (
        "task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {path}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{{{q}}}}'\n"
        "doc_to_choice: '{{{{choices}}}}'\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n"
    )
    (folder / "mine.yaml").write_text(yaml_text.format(name="mine", path=data))
    gone = tmp_path / "gone.jsonl"
    (folder / "lost.yaml").write_text(yaml_text.format(name="lost", path=gone))
    found = resolve(
        EvalTask(name="mine", group="g", metric="acc"),
        EvalTask(name="lost", group="h", metric="acc"),
        include_path=str(folder),
    )
    assert messages(found) == [
        f"evaluation.tasks.1.name: lost reads {gone} ({folder / 'lost.yaml'}), which does not exist"
    ]


def test_a_task_file_lm_eval_cannot_read_is_named_with_why(tmp_path: Path):
    """Before: 'unknown lm-eval task 'broken' - did you mean broken?', the very name given."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "broken.yaml").write_text("task: broken\ndataset_path: json\n  doc_to_text: [q\n")
    [message] = messages(resolve(EvalTask(name="broken", group="g"), include_path=str(folder)))
    assert message.startswith(
        f"evaluation.tasks.0.name: 'broken' is defined in {folder / 'broken.yaml'}, which "
        "lm-eval cannot read ("
    )
