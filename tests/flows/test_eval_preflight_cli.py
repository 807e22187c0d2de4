"""A misconfigured lm-eval task fails `parammix validate-config` and `parammix run` at once,
before any server, store or training: exit 2, one `error:` line naming the file, the field
and what lm-eval offers instead, no traceback."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from flows.cli import main

FRAME = re.compile(r'^\s*File ".*", line \d+', re.M)


@pytest.fixture
def no_flow(monkeypatch):
    """`parammix run` must fail before it imports or starts the flow."""

    def refuse(*args, **kwargs):
        raise AssertionError("the flow was started")

    monkeypatch.setitem(sys.modules, "flows.param_mix", types.SimpleNamespace(param_mix=refuse))


def write_config(tmp_path: Path, tasks: list[dict], **evaluation) -> Path:
    path = tmp_path / "exp.yaml"
    config = {
        "store": {"url": str(tmp_path / "store")},
        "evaluation": {"tasks": tasks, **evaluation},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def refused(argv: list[str], capsys, *says: str) -> str:
    """Run the CLI; check the contract (exit 2, one error line, no traceback). How fast the
    refusal comes is measured by benchmarks/preflight.py, not asserted here."""
    code = main(argv)
    out, err = capsys.readouterr()
    text = out + err
    assert code == 2, text
    assert [line for line in text.splitlines() if line.startswith("error:")] == [
        text.splitlines()[0]
    ], text
    assert "Traceback" not in text and not FRAME.search(text), text
    for want in says:
        assert want in err, f"{want!r} not in {err!r}"
    return err


@pytest.fixture
def custom_tasks(tmp_path: Path) -> Path:
    """A folder with one local multiple-choice task reporting acc and acc_norm."""
    folder = tmp_path / "my_tasks"
    folder.mkdir()
    data = folder / "quiz.jsonl"
    data.write_text('{"q": "2 + 2 =", "choices": [" 4", " 5"], "gold": 0}\n' * 2)
    (folder / "my_quiz.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "my_quiz",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data)}},
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "q",
                "doc_to_choice": "choices",
                "doc_to_target": "gold",
                "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
            }
        )
    )
    return folder


CASES = {
    "unknown-task": (
        [{"name": "gsm8kk", "group": "math"}],
        {},
        ("evaluation.tasks.0.name: unknown lm-eval task 'gsm8kk' - did you mean gsm8k",),
    ),
    "gsm8k-plain-exact-match": (
        [{"name": "gsm8k", "group": "math", "metric": "exact_match"}],
        {},
        (
            "evaluation.tasks.0.metric: gsm8k reports 'exact_match' under 2 filters",
            "exact_match,flexible-extract, exact_match,strict-match",
        ),
    ),
    "gsm8k-no-such-filter": (
        [{"name": "gsm8k", "group": "math", "metric": "exact_match,none"}],
        {},
        (
            "evaluation.tasks.0.metric: gsm8k does not report 'exact_match,none'; it reports "
            "(metric,filter): exact_match,flexible-extract, exact_match,strict-match",
        ),
    ),
    "humaneval-without-code-execution": (
        [{"name": "humaneval", "group": "code", "metric": "pass@1"}],
        {},
        (
            "evaluation.tasks.0.name: humaneval executes model-generated code",
            "set evaluation.allow_code_execution: true",
        ),
    ),
    "docs-on-a-standard-task": (
        [{"name": "arc_easy", "group": "reasoning", "metric": "acc", "docs": 50}],
        {},
        (
            "evaluation.tasks.0.docs: arc_easy is not a generated built-in task: its documents "
            "are its dataset's (`docs` sets how many the built-in suite writes)",
        ),
    ),
    "mbpp-without-code-execution": (
        [{"name": "mbpp", "group": "code", "metric": "pass_at_1"}],
        {"allow_code_execution": False},
        ("evaluation.tasks.0.name: mbpp executes model-generated code",),
    ),
}


@pytest.mark.parametrize("command", ["validate-config", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_standard_task_fails_before_anything_runs(tmp_path, capsys, no_flow, command, case):
    tasks, evaluation, says = CASES[case]
    path = write_config(tmp_path, tasks, **evaluation)
    argv = ["validate-config", str(path)] if command == "validate-config" else ["run", "--config"]
    if command == "run":
        argv.append(str(path))
    err = refused(argv, capsys, f"error: {path}: 1 invalid evaluation field(s)", *says)
    assert err.count("\n  evaluation.tasks.0.") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # no store, nothing


def test_a_metric_a_local_task_does_not_report(tmp_path, capsys, no_flow, custom_tasks):
    tasks = [
        {"name": "my_quiz", "group": "knowledge", "metric": "acc"},
        {"name": "arc_easy", "group": "reasoning", "metric": "f1"},
    ]
    path = write_config(tmp_path, tasks, include_path=str(custom_tasks))
    refused(  # lm-eval's own tasks are still found beside the folder's
        ["validate-config", str(path)], capsys, "evaluation.tasks.1.metric: arc_easy does not"
    )
    path = write_config(tmp_path, [{**tasks[0], "metric": "f1"}], include_path=str(custom_tasks))
    for argv in (["validate-config", str(path)], ["run", "--config", str(path)]):
        refused(
            argv,
            capsys,
            "evaluation.tasks.0.metric: my_quiz does not report 'f1'; "
            "it reports (metric,filter): acc,none, acc_norm,none",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "my_tasks"]


def test_every_bad_task_is_named_at_once(tmp_path, capsys):
    tasks = [
        {"name": "gsm8k", "group": "math", "metric": "exact_match"},
        {"name": "humaneval", "group": "code", "metric": "pass@1"},
        {"name": "mmlu_anatomy", "group": "knowledge", "data_files": {"tets": "/nope.jsonl"}},
    ]
    err = refused(
        ["validate-config", str(write_config(tmp_path, tasks))],
        capsys,
        "5 invalid evaluation field(s)",
        "evaluation.tasks.0.metric:",
        "evaluation.tasks.1.name: humaneval executes model-generated code",
        "evaluation.tasks.2.data_files: tets: no such file /nope.jsonl",
        "evaluation.tasks.2.data_files: mmlu_anatomy reads split 'test'; give a file for it",
        "evaluation.tasks.2.data_files: tets: mmlu_anatomy reads no split 'tets' "
        "(its splits: dev, test)",
    )
    assert "Traceback" not in err


def test_good_standard_tasks_validate(tmp_path, capsys):
    tasks = [
        {"name": "gsm8k", "group": "math", "metric": "exact_match,strict-match"},
        {"name": "humaneval", "group": "code", "metric": "pass@1"},
        {"name": "mmlu", "group": "knowledge"},
        {"name": "arc_challenge", "group": "reasoning", "metric": "acc_norm"},
        {"name": "lambada_openai", "group": "language"},
    ]
    path = write_config(tmp_path, tasks, allow_code_execution=True)
    assert main(["validate-config", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: valid" in capsys.readouterr().out
