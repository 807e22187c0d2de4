"""The README's "Configure" example, run as written by `parammix run`: its own tasks, metrics,
normalisation, interval, group weights, bounds, dtype and store layout, with only its paths
pointed at local files (corpora of each format it names, an S3 bucket on the local server, a
Llama checkpoint, local copies of the benchmarks) and its sizes shrunk to seconds."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import s3fs
import yaml
from datasets import Dataset

from parammix_core.data import builtin_texts
from tests.parammix_core import architectures
from tests.parammix_core.evaluate import standard_data

ROOT = Path(__file__).resolve().parents[2]
# What this test changes besides paths, each a `--set` as a user would pass it: sizes only.
SIZES = {
    "data.max_train_tokens": 6000,
    "data.heldout_tokens": 512,
    "data.block_size": 128,
    "training.expert.steps": 3,
    "training.expert.batch_size": 4,
    "training.expert.warmup_steps": 1,
    "search.n_mixtures": 8,
    "search.cv_folds": 2,
    "search.n_candidates": 200,
    "search.interval.replicates": 20,
    "probe.batch_size": 2,
    "probe.batches_per_domain": 1,
    "validation.n_mixtures": 3,
    "validation.reruns": 1,
    "final.train.steps": 3,
    "final.train.batch_size": 4,
    "final.train.warmup_steps": 1,
    "final.seeds": 1,
    "runtime.device": "cpu",  # the example's cuda, on a machine without one
}
GENERATED_TOKENS = 8  # per answer of gsm8k and humaneval (a random model never stops early)


def readme_example() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configure", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1))


def write_corpora(root: Path, fs: s3fs.S3FileSystem, bucket: str) -> dict[str, str]:
    """One corpus per format the example names; README path -> local path or URL."""
    texts = {
        d: builtin_texts(d, seed=i, target_chars=30_000)
        for i, d in enumerate(("math", "code", "sft", "web"))
    }
    (root / "math").mkdir()
    for part in range(2):
        rows = texts["math"][part::2]
        (root / "math" / f"part-{part}.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in rows)
        )
    for part in range(2):
        local = root / f"code-{part}.parquet"
        pd.DataFrame({"content": texts["code"][part::2]}).to_parquet(local)
        fs.put(str(local), f"{bucket}/code/part-{part:05d}.parquet")
    (root / "sft.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts["sft"]))
    (root / "web").mkdir()
    for i, t in enumerate(texts["web"][:60]):
        (root / "web" / f"{i:03d}.txt").write_text(t)
    qa = builtin_texts("sft", seed=9, target_chars=30_000)
    Dataset.from_dict({"text": qa}).save_to_disk(str(root / "qa_dataset"))
    return {
        "/data/math/*.jsonl": str(root / "math" / "*.jsonl"),
        "s3://corpora/code/part-*.parquet": f"s3://{bucket}/code/part-*.parquet",
        "/data/sft.jsonl": str(root / "sft.jsonl"),
        "/data/web/*.txt": str(root / "web" / "*.txt"),
        "/data/qa_dataset": str(root / "qa_dataset"),
    }


def localise(example: dict, paths: dict[str, str], benchmarks: dict, store: str, endpoint: str):
    """The example with its paths pointed at the local files; returns it and what changed."""
    config = json.loads(json.dumps(example))
    changed: list[str] = []
    for i, domain in enumerate(config["data"]["domains"]):
        domain["paths"] = [paths[p] for p in domain["paths"]]
        changed.append(f"data.domains.{i}.paths")
    for i, task in enumerate(config["evaluation"]["tasks"]):
        task["data_files"] = benchmarks[task["name"]]  # offline: lm-eval reads local copies
        changed.append(f"evaluation.tasks.{i}.data_files")
        if task["name"] in ("gsm8k", "humaneval"):
            task["max_gen_toks"] = GENERATED_TOKENS
            changed.append(f"evaluation.tasks.{i}.max_gen_toks")
    config["model"]["checkpoint"] = paths["checkpoint"]
    config["store"]["url"] = store
    config["store"]["storage_options"]["endpoint_url"] = endpoint
    return config, [*changed, "model.checkpoint", "store.url", "store.storage_options"]


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {
            k: v for key, sub in node.items() for k, v in flatten(sub, f"{prefix}{key}.").items()
        }
    if isinstance(node, list):
        return {
            k: v for i, sub in enumerate(node) for k, v in flatten(sub, f"{prefix}{i}.").items()
        }
    return {prefix.rstrip("."): node}


@pytest.mark.slow
def test_the_readme_configure_example_runs_as_written(s3_server, tmp_path):
    example = readme_example()
    fs = s3fs.S3FileSystem(**s3_server.storage_options(), skip_instance_cache=True)
    paths = write_corpora(tmp_path, fs, s3_server.bucket("corpora"))
    paths["checkpoint"] = str(tmp_path / "my-base")
    architectures.write_checkpoint("llama", tmp_path / "my-base", architectures.micro_tokenizer())
    benchmarks = standard_data.write_all(tmp_path / "benchmarks")
    store = f"s3://{s3_server.bucket('my-bucket')}/parammix"
    config, changed = localise(example, paths, benchmarks, store, s3_server.endpoint)

    # everything else is the README's own: tasks, metrics, search, bounds, weights, dtype, ...
    before, after = flatten(example), flatten(config)
    moved = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in moved if not any(k.startswith(c) for c in changed)} == set()
    assert after["search.utility.normalise"] == "zscore" and after["model.dtype"] == "bfloat16"

    (tmp_path / "my-mix.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST"))}
    env.update(s3_server.env(), PREFECT_HOME=str(tmp_path / "prefect"))
    env.update(PARAMMIX_CACHE=str(tmp_path / "cache"))
    argv = ["run", "--config", "my-mix.yaml"]
    for key, value in SIZES.items():
        argv += ["--set", f"{key}={value}"]
    command = [sys.executable, "-c", "from flows.cli import main; raise SystemExit(main())"]
    result = subprocess.run(
        [*command, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr

    line = next(x for x in result.stdout.splitlines() if x.startswith("chosen mixture: "))
    alpha = {d: float(w) for d, w in re.findall(r"(\w+)=([0-9.]+)", line)}
    assert sorted(alpha) == ["code", "math", "qa", "sft", "web"]
    assert sum(alpha.values()) == pytest.approx(1.0, abs=2e-3)
    assert alpha["web"] >= 0.2 - 1e-3 and alpha["sft"] <= 0.3 + 1e-3  # the example's bounds
    published = fs.find(store.removeprefix("s3://"))
    stages = {p.split("/")[2] for p in published}  # bucket/parammix/<stage>/...
    assert {"data", "base", "expert", "probe", "evals", "choice", "final", "report"} <= stages
