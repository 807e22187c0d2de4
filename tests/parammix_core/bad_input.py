"""Helpers of the bad-input tests: a tiny two-domain experiment, its store, store snapshots.

Every bad-input case that runs against a store takes a snapshot (path -> sha256 of every file)
before and after and asserts they are equal: a refused input must leave nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

from parammix_core import stages
from parammix_core.config import Experiment, parse_experiment
from parammix_core.store import ArtifactRef, Store

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
DOMAINS = ("a", "b")


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root`; {} when `root` does not exist."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write_jsonl(path: Path, n_docs: int = 60, seed: int = 0) -> Path:
    """n_docs distinct documents of 40 words each, one JSON object per line."""
    rng = random.Random(f"{seed}:{path.name}")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            text = " ".join(rng.choice(WORDS) for _ in range(40)) + f" doc{i}"
            f.write(json.dumps({"text": text}) + "\n")
    return path


def config(corpus: dict[str, list[str]], store: Path, **overrides: Any) -> dict:
    """A tiny experiment as a dict: domains from `corpus` (name -> paths); `overrides` are
    dotted paths (`training.expert.batch_size=...`, written with `__` for the dots)."""
    data: dict = {
        "data": {
            "domains": [{"name": n, "paths": paths} for n, paths in corpus.items()],
            "max_train_tokens": 2000,
            "heldout_tokens": 256,
            "vocab_size": 300,
            "block_size": 32,
            "min_chars": 10,
        },
        "model": {
            "hidden_size": 16,
            "num_layers": 1,
            "num_heads": 2,
            "num_kv_heads": 2,
            "intermediate_size": 32,
        },
        "training": {
            "base": {"steps": 3, "batch_size": 4, "warmup_steps": 1},
            "expert": {"steps": 2, "batch_size": 4, "warmup_steps": 1},
        },
        "probe": {"batch_size": 4},
        "search": {"n_mixtures": 4, "n_candidates": 10, "top_k": 2, "cv_folds": 2},
        "store": {"url": str(store)},
        "runtime": {"device": "cpu"},
    }
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def experiment(corpus: dict[str, list[str]], store: Path, **overrides: Any) -> Experiment:
    return parse_experiment(config(corpus, store, **overrides), "test.yaml")


def open_store(exp: Experiment, cache: Path) -> Store:
    """The experiment's store with its staging/cache folder kept under the test's tmp_path."""
    return Store(exp.store.url, exp.store.storage_options, exp.store.verify, cache_dir=cache)


def corpus_of(root: Path) -> dict[str, list[str]]:
    """Two good domains, 'a' and 'b', as JSONL files under `root`."""
    return {d: [str(write_jsonl(root / f"{d}.jsonl", seed=i))] for i, d in enumerate(DOMAINS)}


def build_pipeline_store(root: Path) -> tuple[Experiment, dict[str, Any]]:
    """Prepared data, a pre-trained pico base and both experts in a store under `root`."""
    exp = experiment(corpus_of(root), root / "store")
    store = open_store(exp, root / "cache")
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    return exp, {"data": data, "base": base, "experts": experts}


def copy_store(exp: Experiment, tmp_path: Path) -> tuple[Experiment, Store]:
    """A private copy of a shared store, so a test may tamper with it."""
    target = tmp_path / "store"
    shutil.copytree(exp.store.url, target)
    exp = exp.model_copy(update={"store": exp.store.model_copy(update={"url": str(target)})})
    return exp, open_store(exp, tmp_path / "cache")


def artifact_file(store: Store, ref: ArtifactRef, rel: str) -> Path:
    """The published file `rel` of `ref` in a local store."""
    return Path(store.file_path(ref, rel, store.manifest(ref)))
