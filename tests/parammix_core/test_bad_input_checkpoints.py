"""Bad checkpoints: a user base that is missing, damaged, pickled or does not fit its config,
experts that do not fit the base, and store artifacts whose manifest does not match. Each error
names the directory, file, expert or tensor, and the store is unchanged afterwards."""

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from parammix_core import stages
from parammix_core.config import EvalTask, parse_experiment
from parammix_core.data import DataError, load_prepared
from parammix_core.evaluate import EvaluationError, Evaluator
from parammix_core.merge import MergeError
from parammix_core.model import ModelLoadError, build_model, load_model
from parammix_core.store import MANIFEST, ArtifactRef, StoreError
from tests.parammix_core.bad_input import (
    artifact_file,
    build_pipeline_store,
    copy_store,
    corpus_of,
    experiment,
    open_store,
    snapshot,
)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return build_pipeline_store(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def good_checkpoint(pipeline, tmp_path_factory) -> Path:
    """The pipeline's base as a user checkpoint: config.json, model.safetensors, tokenizer."""
    exp, refs = pipeline
    store = open_store(exp, tmp_path_factory.mktemp("cache"))
    out = tmp_path_factory.mktemp("checkpoint") / "good"
    shutil.copytree(store.local_dir(refs["base"]), out)
    load_prepared(store.local_dir(refs["data"])).tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything tries to unpickle."""

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def _base_from(checkpoint: Path, tmp_path: Path):
    """prepare_domains with the checkpoint's tokenizer, then build_base must refuse it."""
    exp = experiment(corpus_of(tmp_path), tmp_path / "store", model__checkpoint=str(checkpoint))
    store = open_store(exp, tmp_path / "cache")
    data = stages.prepare_domains(exp, store)
    return exp, store, data


def _damaged(good: Path, tmp_path: Path, damage) -> Path:
    target = tmp_path / "checkpoint"
    shutil.copytree(good, target)
    damage(target)
    return target


def _edit_config(**changes):
    def damage(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        config.update(changes)
        (path / "config.json").write_text(json.dumps(config))

    return damage


def _truncate(path: Path) -> None:
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _garbage_header(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")


def _pickled(path: Path) -> None:
    torch.save({"w": torch.ones(2)}, path / "model.safetensors")


def _only_bin(path: Path) -> None:
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not really")


def _bad_json(path: Path) -> None:
    (path / "config.json").write_text("{'hidden_size': 16")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, r"checkpoint/model\.safetensors: not a valid safetensors file"),
        (_garbage_header, r"checkpoint/model\.safetensors: not a valid safetensors file"),
        (_pickled, r"checkpoint/model\.safetensors: a pickle \(torch\.save\) file"),
        (_only_bin, r"checkpoint: only pickled weights \(pytorch_model\.bin\)"),
        (
            _edit_config(num_hidden_layers=2),
            r"checkpoint: the weights do not fit config\.json \(LlamaForCausalLM\): \d+ tensor"
            r"\(s\) missing, e\.g\. \['model\.layers\.1\.",
        ),
        (
            _edit_config(hidden_size=32, head_dim=16),
            r"checkpoint: .* of another shape, e\.g\. \['lm_head\.weight: file \(\d+, 16\), "
            r"config \(\d+, 32\)",
        ),
        (
            _edit_config(model_type="gpt2", architectures=["GPT2LMHeadModel"]),
            r"checkpoint: the weights do not fit config\.json \(GPT2LMHeadModel\): \d+ tensor",
        ),
    ],
    ids=[
        "truncated",
        "corrupt-header",
        "pickle-as-safetensors",
        "pickle-only",
        "fewer-layers-than-config",
        "other-shape-than-config",
        "other-architecture",
    ],
)
def test_bad_user_checkpoint_is_refused(good_checkpoint, tmp_path, damage, message, no_unpickling):
    checkpoint = _damaged(good_checkpoint, tmp_path, damage)
    exp, store, data = _base_from(checkpoint, tmp_path)
    before = snapshot(tmp_path / "store")
    with pytest.raises(ModelLoadError, match=message):
        stages.build_base(exp, store, data)
    assert snapshot(tmp_path / "store") == before


def test_checkpoint_config_not_json_is_named_by_the_first_stage(good_checkpoint, tmp_path):
    checkpoint = _damaged(good_checkpoint, tmp_path, _bad_json)
    exp = experiment(corpus_of(tmp_path), tmp_path / "store", model__checkpoint=str(checkpoint))
    store = open_store(exp, tmp_path / "cache")
    with pytest.raises(DataError, match=r"checkpoint: cannot load a tokenizer: .*config\.json"):
        stages.prepare_domains(exp, store)  # the tokenizer is read from the checkpoint first
    assert snapshot(tmp_path / "store") == {}
    with pytest.raises(ModelLoadError, match=r"checkpoint: cannot load the checkpoint: .*config"):
        load_model(checkpoint, exp.model, "cpu")


def test_missing_tokenizer_directory_is_named(good_checkpoint, tmp_path):
    exp = experiment(
        corpus_of(tmp_path),
        tmp_path / "store",
        model__checkpoint=str(good_checkpoint),
        data__tokenizer=str(tmp_path / "tok"),
    )
    store = open_store(exp, tmp_path / "cache")
    with pytest.raises(DataError, match=r"/tok: cannot load a tokenizer: no such directory"):
        stages.prepare_domains(exp, store)
    assert snapshot(tmp_path / "store") == {}


def test_good_user_checkpoint_loads(good_checkpoint, tmp_path):
    """The control for the cases above: the undamaged copy is accepted."""
    exp, store, data = _base_from(_damaged(good_checkpoint, tmp_path, lambda p: None), tmp_path)
    base = stages.build_base(exp, store, data)
    assert store.exists(base)


def test_missing_checkpoint_fails_first_and_creates_nothing(tmp_path):
    exp = experiment(
        corpus_of(tmp_path), tmp_path / "store", model__checkpoint=str(tmp_path / "ckpt")
    )
    store = open_store(exp, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"model\.checkpoint: no such checkpoint dir"):
        stages.prepare_domains(exp, store)
    assert snapshot(tmp_path / "store") == {}


# --- experts that do not fit the base -------------------------------------------------------


def _publish_expert(store, exp, tweak, name: str = "b") -> ArtifactRef:
    """An expert artifact for domain `name` whose weights are the base's, changed by `tweak`."""
    tok = load_prepared(store.local_dir(stages.data_ref(exp))).tokenizer
    model = build_model(
        exp.model,
        len(tok),
        exp.data.block_size,
        0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    state = tweak({k: v.contiguous() for k, v in model.state_dict().items()})
    out = store.staging(ArtifactRef.for_spec("expert", name, {"bad": repr(tweak)}))
    save_file(state, out / "model.safetensors")
    ref = ArtifactRef.for_spec("expert", name, {"bad": repr(tweak)})
    return store.publish(ref, out)


def _wider(state):
    state["model.norm.weight"] = torch.ones(32)
    return state


def _bf16(state):
    state["model.norm.weight"] = state["model.norm.weight"].to(torch.bfloat16)
    return state


def _extra_layer(state):
    state["model.layers.1.input_layernorm.weight"] = torch.ones(16)
    return state


def _missing(state):
    del state["lm_head.weight"]
    return state


@pytest.mark.parametrize(
    ("tweak", "message"),
    [
        (_wider, r"b: tensor 'model\.norm\.weight' has shape \[32\], the base has \[16\]"),
        (_bf16, r"b: tensor 'model\.norm\.weight' has dtype bfloat16, the base has float32"),
        (_extra_layer, r"b: tensor\(s\) not in the base: 'model\.layers\.1\.input_layernorm"),
        (_missing, r"b: missing tensor\(s\) 'lm_head\.weight'"),
    ],
    ids=["other-shape", "other-dtype", "other-architecture", "missing-tensor"],
)
def test_expert_that_does_not_fit_the_base(pipeline, tmp_path, tweak, message):
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    bad = _publish_expert(store, exp, tweak)
    before = snapshot(tmp_path / "store")
    with pytest.raises(MergeError, match=message):
        stages.merge_and_evaluate(
            exp, store, [[0.5, 0.5]], refs["data"], refs["base"], [refs["experts"][0], bad]
        )
    assert snapshot(tmp_path / "store") == before


def test_zero_experts_are_refused(pipeline, tmp_path):
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    before = snapshot(tmp_path / "store")
    with pytest.raises(MergeError, match="no experts to merge"):
        stages.merge_and_evaluate(exp, store, [[0.5, 0.5]], refs["data"], refs["base"], [])
    assert snapshot(tmp_path / "store") == before


# --- store artifacts whose files do not match their manifest -------------------------------


def test_expert_stored_as_a_pickle_is_never_unpickled(pipeline, tmp_path, no_unpickling):
    """A pickle under the safetensors name, with a manifest that matches it, is still refused."""
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    out = store.staging(ArtifactRef.for_spec("expert", "b", {"pickle": 1}))
    with open(out / "model.safetensors", "wb") as f:
        pickle.dump({"lm_head.weight": [0.0]}, f)
    bad = store.publish(ArtifactRef.for_spec("expert", "b", {"pickle": 1}), out)
    before = snapshot(tmp_path / "store")
    with pytest.raises(StoreError, match=r"expert/b-\w+/model\.safetensors: not a valid safet"):
        stages.merge_and_evaluate(
            exp, store, [[0.5, 0.5]], refs["data"], refs["base"], [refs["experts"][0], bad]
        )
    assert snapshot(tmp_path / "store") == before


def test_truncated_expert_in_the_store_is_refused(pipeline, tmp_path):
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    weights = artifact_file(store, refs["experts"][1], "model.safetensors")
    weights.write_bytes(weights.read_bytes()[:-64])
    before = snapshot(tmp_path / "store")
    with pytest.raises(StoreError, match=r"expert/b-\w+/model\.safetensors: size \d+ does not"):
        stages.merge_and_evaluate(
            exp, store, [[0.5, 0.5]], refs["data"], refs["base"], refs["experts"]
        )
    assert snapshot(tmp_path / "store") == before


def test_manifest_whose_hash_does_not_match(pipeline, tmp_path):
    """A manifest edited to another sha256: the base is refused where an expert would use it."""
    exp, refs = pipeline
    exp, store = copy_store(exp, tmp_path)
    manifest_path = Path(store.root) / refs["base"].path / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["model.safetensors"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    exp = parse_experiment({**exp.model_dump(mode="json"), "seed": 3})  # experts not built yet
    before = snapshot(tmp_path / "store")
    with pytest.raises(StoreError, match=r"base/base-\w+/model\.safetensors: sha256 does not"):
        stages.train_expert(exp, store, "a", refs["data"], refs["base"])
    assert snapshot(tmp_path / "store") == before


# --- evaluation inputs -------------------------------------------------------------------------


def test_missing_task_folder_is_named_before_lm_eval_indexes(pipeline, tmp_path):
    exp, refs = pipeline
    _, store = copy_store(exp, tmp_path)
    model = load_model(store.local_dir(refs["base"]), exp.model, "cpu")
    tok = load_prepared(store.local_dir(refs["data"])).tokenizer
    tasks = [EvalTask(name="my_task", group="math")]
    with pytest.raises(EvaluationError, match=r"include_path: no such task folder\(s\) \[.*nope"):
        Evaluator(model, tok, tasks, str(tmp_path / "nope"), 4, "cpu")


def _added_token(path: Path) -> None:
    """A chat token added to the tokenizer and not to the model (a common slip)."""
    tok = AutoTokenizer.from_pretrained(path)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tok.save_pretrained(path)


def test_a_tokenizer_longer_than_the_embeddings_is_refused_by_the_base(good_checkpoint, tmp_path):
    """Before: IndexError: index out of range in self, in train_expert."""
    checkpoint = _damaged(good_checkpoint, tmp_path, _added_token)
    exp, store, data = _base_from(checkpoint, tmp_path)
    rows = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    before = snapshot(tmp_path / "store")
    with pytest.raises(ModelLoadError) as err:
        stages.build_base(exp, store, data)
    assert str(err.value) == (
        f"model.checkpoint {checkpoint}: its tokenizer has {rows + 1:,} tokens (added ones "
        f"included) but the model embeds {rows:,}: ids past {rows - 1:,} cannot be read; resize "
        "the embeddings and save the checkpoint again, or name another data.tokenizer"
    )
    assert snapshot(tmp_path / "store") == before


def test_blocks_longer_than_the_checkpoints_positions_are_refused(good_checkpoint, tmp_path):
    positions = json.loads((good_checkpoint / "config.json").read_text())["max_position_embeddings"]
    exp = experiment(
        corpus_of(tmp_path),
        tmp_path / "store",
        model__checkpoint=str(good_checkpoint),
        data__block_size=2 * positions,
    )
    store = open_store(exp, tmp_path / "cache")
    data = stages.prepare_domains(exp, store)
    with pytest.raises(ModelLoadError) as err:
        stages.build_base(exp, store, data)
    assert str(err.value) == (
        f"data.block_size {2 * positions} is longer than the {positions} positions of "
        f"model.checkpoint {good_checkpoint}: set data.block_size to {positions} or less"
    )


def test_a_cached_base_meeting_longer_blocks_is_refused_before_training(good_checkpoint, tmp_path):
    """The base from a checkpoint does not depend on the data: raising data.block_size after
    a run reuses it, and the expert is where the two meet."""
    positions = json.loads((good_checkpoint / "config.json").read_text())["max_position_embeddings"]
    exp = experiment(
        corpus_of(tmp_path), tmp_path / "store", model__checkpoint=str(good_checkpoint)
    )
    store = open_store(exp, tmp_path / "cache")
    base = stages.build_base(exp, store, stages.prepare_domains(exp, store))
    longer = experiment(
        corpus_of(tmp_path),
        tmp_path / "store",
        model__checkpoint=str(good_checkpoint),
        data__block_size=2 * positions,
    )
    data = stages.prepare_domains(longer, store)
    assert stages.base_ref(longer, data) == base  # a cache hit: never checked again there
    before = snapshot(tmp_path / "store")
    with pytest.raises(ModelLoadError, match=rf"data.block_size {2 * positions} is longer"):
        stages.train_expert(longer, store, longer.domains[0], data, base)
    assert snapshot(tmp_path / "store") == before
