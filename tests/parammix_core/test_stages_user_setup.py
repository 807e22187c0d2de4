"""A user's own setup through every stage, by config only: their base checkpoint (with its
tokenizer), corpora as JSONL / parquet / text files, and their own lm-eval task folder."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from parammix_core import simplex, stages
from parammix_core.config import parse_experiment
from parammix_core.data import builtin_texts, train_tokenizer
from parammix_core.evaluate import write_builtin_suite
from parammix_core.model import build_model, load_model, save_model
from parammix_core.store import StoreError


@pytest.fixture(scope="module")
def user_setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("user")
    math = builtin_texts("math", seed=1, target_chars=120_000)
    sft = builtin_texts("sft", seed=2, target_chars=120_000)
    code = builtin_texts("code", seed=3, target_chars=120_000)
    with open(root / "math.jsonl", "w") as f:
        for text in math:
            f.write(json.dumps({"body": text}) + "\n")
    pd.DataFrame({"body": sft}).to_parquet(root / "chat.parquet")
    (root / "code").mkdir()
    for i, text in enumerate(code[:300]):
        (root / "code" / f"{i:04d}.txt").write_text(text)

    tok = train_tokenizer({"math": math, "chat": sft, "code": code}, vocab_size=384, seed=0)
    checkpoint = root / "base"
    model = build_model(
        parse_experiment(
            {
                "model": {
                    "hidden_size": 32,
                    "num_layers": 2,
                    "num_heads": 2,
                    "num_kv_heads": 2,
                    "intermediate_size": 64,
                }
            }
        ).model,
        len(tok),
        128,
        seed=0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    save_model(model, checkpoint)
    tok.save_pretrained(checkpoint)
    suite = write_builtin_suite(root / "tasks", n_docs=16, seed=0)

    config = {
        "name": "user",
        "data": {
            "domains": [
                {"name": "math", "paths": [str(root / "math.jsonl")], "text_field": "body"},
                {"name": "chat", "paths": [str(root / "chat.parquet")], "text_field": "body"},
                {"name": "code", "paths": [str(root / "code" / "*.txt")]},
            ],
            "max_train_tokens": 8_000,
            "heldout_tokens": 1_024,
            "block_size": 64,
        },
        "model": {
            "checkpoint": str(checkpoint),
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "num_kv_heads": 2,
            "intermediate_size": 64,
        },
        "training": {
            "expert": {"steps": 6, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 3}
        },
        "evaluation": {
            "include_path": str(suite),
            "tasks": [
                {"name": "pm_arithmetic", "group": "math", "metric": "acc"},
                {"name": "pm_sequences", "group": "reasoning", "metric": "p_correct"},
            ],
        },
        "search": {
            "n_mixtures": 6,
            "batch_size": 6,
            "n_candidates": 200,
            "top_k": 4,
            "cv_folds": 2,
            "bounds": {"code": {"max": 0.2}},
        },
        "store": {"url": str(root / "store")},
        "runtime": {"device": "cpu"},
    }
    return {
        "exp": parse_experiment(config),
        "checkpoint": checkpoint,
        "model": model,
        "code_files": len(code[:300]),
    }


def test_every_stage_runs_on_a_users_setup(user_setup):
    exp = user_setup["exp"]
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    stats = store.load_json(data, "stats.json")
    assert list(stats) == ["math", "chat", "code"]
    assert stats["code"]["documents"] == user_setup["code_files"] > 10

    base = stages.build_base(exp, store, data)
    imported = load_model(str(store.local_dir(base)), exp.model, torch.device("cpu"))
    for (name, a), b in zip(
        imported.state_dict().items(), user_setup["model"].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name

    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    (batch,) = stages.mixture_batches(exp)
    evals = stages.merge_and_evaluate(exp, store, batch, data, base, experts)
    rows = store.load_parquet(evals, "rows.parquet")
    assert len(rows) == 6
    assert (rows["seconds"] > 0).all() and set(rows["device"]) == {"cpu"}  # measured costs
    assert set(rows.columns) >= {
        "task.pm_arithmetic",
        "group.math",
        "group.reasoning",
        "loss.math",
        "loss.chat",
        "loss.code",
    }
    # a vertex is the expert itself: its own domain's loss is the best of the vertices
    vertex_losses = rows.loc[:2, [f"loss.{d}" for d in exp.domains]].to_numpy()
    assert (np.argmin(vertex_losses, axis=0) == np.arange(3)).all()

    surrogates = stages.fit(exp, store, [evals])
    choice = stages.load_choice(store, stages.optimise(exp, store, surrogates, data))
    assert choice.alpha["code"] <= 0.2 + 1e-9
    simplex.from_mapping(choice.alpha, exp.domains)
    report = stages.report(exp, store, surrogates, stages.choice_ref(exp, surrogates, data))
    assert "Evaluation noise" in stages.report_text(store, report)


def test_a_pickle_only_checkpoint_is_refused(user_setup, tmp_path: Path):
    exp = user_setup["exp"]
    bad = tmp_path / "pickled"
    bad.mkdir()
    (bad / "config.json").write_text((user_setup["checkpoint"] / "config.json").read_text())
    torch.save(user_setup["model"].state_dict(), bad / "pytorch_model.bin")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bad / name).write_text((user_setup["checkpoint"] / name).read_text())
    exp = parse_experiment(
        {
            **exp.model_dump(mode="json"),
            "model": {**exp.model.model_dump(mode="json"), "checkpoint": str(bad)},
            "store": {"url": str(tmp_path / "store")},
        }
    )
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin"):
        stages.build_base(exp, store, data)
    assert not store.exists(stages.base_ref(exp, data))


def test_a_missing_checkpoint_names_the_field(user_setup, tmp_path: Path):
    exp = user_setup["exp"]
    exp = parse_experiment(
        {
            **exp.model_dump(mode="json"),
            "model": {**exp.model.model_dump(mode="json"), "checkpoint": str(tmp_path / "nope")},
        }
    )
    data = stages.data_ref(exp)
    with pytest.raises(FileNotFoundError, match=r"model\.checkpoint: no such checkpoint"):
        stages.base_ref(exp, data)


def test_a_tampered_expert_is_refused_before_merging(user_setup):
    exp = user_setup["exp"]
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    expert = stages.train_expert(exp, store, "chat", data, base)
    weights = Path(store.file_path(expert, "model.safetensors"))
    original = weights.read_bytes()
    tampered = bytearray(original)
    tampered[-1] ^= 0xFF
    weights.write_bytes(bytes(tampered))
    try:
        with pytest.raises(StoreError, match=r"model\.safetensors: sha256 does not match"):
            store.load_tensors(expert, "model.safetensors")
    finally:
        weights.write_bytes(original)
    assert store.exists(expert)


def test_corrected_proxy_moves_mixtures_but_not_vertices(user_setup):
    """theta(alpha) + Delta(alpha): Delta vanishes at a vertex, so only mixtures change."""
    exp = user_setup["exp"]
    data_dump = exp.model_dump(mode="json")
    data_dump["evaluation"]["proxy"] = "corrected"
    corrected = parse_experiment(data_dump)
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    probe = stages.interference_probe(exp, store, data, base, experts)
    info = store.load_json(probe, "probe.json")
    assert info["method"] in ("forward_over_reverse", "double_backward")
    assert np.allclose(np.diag(info["relative_curvature"]), 1.0)
    (batch,) = stages.mixture_batches(exp)
    plain = store.load_parquet(
        stages.merge_and_evaluate(exp, store, batch, data, base, experts), "rows.parquet"
    )
    ref = stages.merge_and_evaluate(corrected, store, batch, data, base, experts, probe)
    assert ref != stages.eval_ref(exp, batch, data, base, experts)
    fixed = store.load_parquet(ref, "rows.parquet")
    losses = [f"loss.{d}" for d in exp.domains]
    k = len(exp.domains)
    np.testing.assert_allclose(fixed.loc[: k - 1, losses], plain.loc[: k - 1, losses], rtol=1e-6)
    assert not np.allclose(fixed.loc[k:, losses], plain.loc[k:, losses], rtol=1e-9, atol=0)
