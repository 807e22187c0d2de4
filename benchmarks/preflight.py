"""Seconds until a misconfiguration is refused, before anything trains.

For each misconfiguration below (lm-eval tasks, corpora, checkpoint, tokenizer) a config is
written to a temporary folder and checked three ways: `check_evaluation` and `check_inputs`
in this process (the preflight alone, imports already paid),
`parammix validate-config FILE` and `parammix run --config FILE` each as a fresh process
(what a user waits for, Python start-up and imports included; `run` must fail before its
Prefect server starts). lm-eval's full `TaskManager` index, which the resolution replaces, is
timed once for comparison.

    python benchmarks/preflight.py [--skip-processes]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from parammix_core.config import ConfigError, load_experiment
from parammix_core.data import DataError
from parammix_core.evaluate.resolve import check_evaluation
from parammix_core.stages.preflight import PreflightError, check_inputs

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def custom_folder(root: Path) -> Path:
    """One local multiple-choice task reporting acc and acc_norm."""
    folder = root / "my_tasks"
    folder.mkdir()
    data = folder / "quiz.jsonl"
    data.write_text(json.dumps({"q": "2 + 2 =", "choices": [" 4", " 5"], "gold": 0}) + "\n")
    task = {
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
    (folder / "my_quiz.yaml").write_text(yaml.safe_dump(task))
    return folder


def checkpoint(root: Path, name: str, *files: str) -> str:
    """A checkpoint folder holding only `files` (empty stand-ins: only names are checked)."""
    folder = root / name
    folder.mkdir()
    for file in files:
        (folder / file).write_text("{}")
    return str(folder)


def corpus(root: Path) -> list[dict]:
    (root / "a.jsonl").write_text('{"text": "a document of a few words"}\n')
    return [{"name": "a", "paths": [str(root / "a.jsonl")]}]


def cases(root: Path) -> dict[str, dict]:
    """Misconfiguration -> the config sections that make it."""
    mmlu = {"validation": str(root / "mmlu.jsonl")}
    good = checkpoint(root, "good", "config.json", "model.safetensors")
    return {
        "unknown task (gsm8kk)": {"evaluation": {"tasks": [{"name": "gsm8kk", "group": "math"}]}},
        "gsm8k, metric exact_match": {
            "evaluation": {"tasks": [{"name": "gsm8k", "group": "math", "metric": "exact_match"}]}
        },
        "gsm8k, metric p_gold (multiple choice only)": {
            "evaluation": {"tasks": [{"name": "gsm8k", "group": "math", "metric": "p_gold"}]}
        },
        "humaneval without allow_code_execution": {
            "evaluation": {"tasks": [{"name": "humaneval", "group": "code", "metric": "pass@1"}]}
        },
        "local task, metric f1 it does not report": {
            "evaluation": {
                "tasks": [{"name": "my_quiz", "group": "knowledge", "metric": "f1"}],
                "include_path": str(custom_folder(root)),
            }
        },
        "mmlu (group of 57), metric acc_norm": {
            "evaluation": {"tasks": [{"name": "mmlu", "group": "knowledge", "metric": "acc_norm"}]}
        },
        "mmlu_anatomy, data_files without its test split": {
            "evaluation": {
                "tasks": [{"name": "mmlu_anatomy", "group": "knowledge", "data_files": mmlu}]
            }
        },
        "corpus glob that matches nothing": {
            "data": {"domains": [*corpus(root), {"name": "b", "paths": [str(root / "b/*.jsonl")]}]}
        },
        "checkpoint folder missing": {
            "data": {"domains": corpus(root)},
            "model": {"checkpoint": str(root / "nowhere")},
        },
        "checkpoint without config.json": {
            "data": {"domains": corpus(root)},
            "model": {"checkpoint": checkpoint(root, "noconfig", "model.safetensors")},
        },
        "checkpoint with pickled weights only": {
            "data": {"domains": corpus(root)},
            "model": {"checkpoint": checkpoint(root, "pickled", "config.json", "model.bin")},
        },
        "checkpoint without a tokenizer": {
            "data": {"domains": corpus(root)},
            "model": {"checkpoint": good},
        },
        "data.tokenizer folder without a tokenizer": {
            "data": {"domains": corpus(root), "tokenizer": checkpoint(root, "tok", "notes.md")},
            "model": {"checkpoint": good},
        },
    }


def in_process(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        exp = load_experiment(path)
        check_evaluation(exp, str(path))
        check_inputs(exp)
        outcome = "accepted"
    except ConfigError as err:
        outcome = str(err).splitlines()[1].strip().split(":")[0]
    except (PreflightError, DataError) as err:
        outcome = str(err).split(":")[0]
    return time.perf_counter() - start, outcome


def as_process(argv: list[str]) -> tuple[float, int, list[str]]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv], capture_output=True, text=True, env=ENV
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return time.perf_counter() - start, done.returncode, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-processes", action="store_true", help="in-process timing only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mmlu.jsonl").write_text("{}\n")
        print("| misconfiguration | field named | preflight (s) | validate-config (s) | run (s) |")
        print("| --- | --- | ---: | ---: | ---: |")
        for label, sections in cases(root).items():
            path = root / f"{len(list(root.glob('*.yaml')))}.yaml"
            store = root / "store"
            config = {"store": {"url": str(store)}, **sections}
            path.write_text(yaml.safe_dump(config))
            seconds, field = in_process(path)
            row = [label, f"`{field}`", f"{seconds:.2f}"]
            if not args.skip_processes:
                for argv in (["validate-config", str(path)], ["run", "--config", str(path)]):
                    took, code, errors = as_process(argv)
                    assert code == 2 and len(errors) == 1, (argv, code, errors)
                    assert not store.exists(), "run created its store: it got past the preflight"
                    row.append(f"{took:.1f}")
            print("| " + " | ".join(row) + " |", flush=True)
        default = ROOT / "configs" / "default.yaml"
        seconds, outcome = in_process(default)
        row = ["(the embedded default, valid)", outcome, f"{seconds:.2f}"]
        if not args.skip_processes:
            took, code, _ = as_process(["validate-config", str(default)])
            assert code == 0
            row += [f"{took:.1f}", "-"]
        print("| " + " | ".join(row) + " |")
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    index = TaskManager(include_defaults=True).all_tasks
    print(f"\nlm-eval's full TaskManager index: {time.perf_counter() - start:.1f} s", end="")
    print(f" ({len(index)} names)")


if __name__ == "__main__":
    main()
