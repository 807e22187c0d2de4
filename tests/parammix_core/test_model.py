import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from parammix_core.config import ModelConfig
from parammix_core.model import (
    ModelLoadError,
    build_model,
    load_model,
    parameter_count,
    resolve_device,
    save_model,
)

PICO = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}


def pico(seed: int = 0, cfg: ModelConfig = PICO):
    return build_model(cfg, vocab_size=96, max_positions=32, seed=seed, **IDS)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = pico(0), pico(0), pico(1)
    assert torch.equal(torch.get_rng_state(), before)
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_build_follows_config():
    model = pico()
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (32, 2, 4)
    assert (cfg.num_key_value_heads, cfg.intermediate_size, cfg.vocab_size) == (2, 64, 96)
    assert cfg.max_position_embeddings == 32
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (1, 2, None)
    assert model.generation_config.pad_token_id == 0
    assert cfg.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert cfg._attn_implementation == "sdpa"
    assert not model.training
    eager = pico(cfg=PICO.model_copy(update={"attn_implementation": "eager"}))
    assert eager.config._attn_implementation == "eager"
    bf16 = pico(cfg=PICO.model_copy(update={"dtype": "bfloat16"}))
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_every_embedding_row_trains():
    """The pad/end-of-text row must get gradient: it separates documents in every block."""
    model = pico()
    tokens = torch.tensor([[0, 5, 2, 7, 0, 9]])
    model(input_ids=tokens, labels=tokens).loss.backward()
    grad = model.model.embed_tokens.weight.grad
    assert grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0


def test_parameter_count_matches_hand_count():
    h, inter, vocab, kv = 32, 64, 96, 16  # kv: 2 kv heads x head_dim 8
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    assert parameter_count(pico()) == 2 * vocab * h + 2 * per_layer + h == 24_736


def test_save_load_round_trip(tmp_path):
    model = pico()
    save_model(model, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert not list((tmp_path / "ckpt").glob("*.bin"))
    loaded = load_model(tmp_path / "ckpt", PICO, "cpu")
    assert same_weights(model, loaded)
    assert not loaded.training
    x = torch.tensor([[1, 5, 7, 9]])
    assert torch.equal(model(x).logits, loaded(x).logits)


def test_bf16_load_never_changes_the_process_default_dtype(tmp_path, monkeypatch):
    """Other threads train and evaluate while a model loads: the default dtype is theirs too
    (a README-example run with dtype bfloat16 failed on `float != BFloat16` in a matmul)."""
    model = pico()
    save_model(model, tmp_path / "ckpt")
    defaults: list[torch.dtype] = []
    set_default = torch.set_default_dtype
    monkeypatch.setattr(torch, "set_default_dtype", lambda d: (defaults.append(d), set_default(d)))
    loaded = load_model(tmp_path / "ckpt", PICO.model_copy(update={"dtype": "bfloat16"}), "cpu")
    assert set(defaults) <= {torch.float32} and torch.get_default_dtype() == torch.float32
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    for name, tensor in model.state_dict().items():  # the same values as a bf16 load would give
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.bfloat16)), name


def test_load_refuses_pickled_weights(tmp_path):
    save_model(pico(), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match=r"only pickled weights \(pytorch_model.bin\)"):
        load_model(tmp_path, PICO, "cpu")


def test_load_refuses_incomplete_dirs(tmp_path):
    with pytest.raises(ModelLoadError, match="not a checkpoint directory"):
        load_model(tmp_path / "missing", PICO, "cpu")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path, PICO, "cpu")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match=r"no \*.safetensors weights"):
        load_model(tmp_path, PICO, "cpu")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def _set_layers(path, n: int) -> None:
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": n}))


@pytest.fixture
def transformers_log():
    """What transformers' loader logs (it does not propagate to pytest's handlers)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_a_load_that_does_not_fit_prints_only_its_error(tmp_path, transformers_log):
    """transformers' own table calls missing tensors 'newly initialized': the refusal says it."""
    save_model(pico(), tmp_path)
    _set_layers(tmp_path, 3)
    with pytest.raises(ModelLoadError, match=r"9 tensor\(s\) missing, e\.g\. \['model\.layers\.2"):
        load_model(tmp_path, PICO, "cpu")
    assert not [r for r in transformers_log if "LOAD REPORT" in r.getMessage()]


def test_unused_checkpoint_tensors_are_logged_by_name(tmp_path, caplog, transformers_log):
    save_model(pico(), tmp_path)
    _set_layers(tmp_path, 1)
    with caplog.at_level("WARNING", logger="parammix_core.model"):
        loaded = load_model(tmp_path, PICO, "cpu")
    assert loaded.config.num_hidden_layers == 1
    [record] = [r for r in caplog.records if r.name == "parammix_core.model"]
    assert "9 tensor(s) of the checkpoint are not used by LlamaForCausalLM" in record.getMessage()
    assert "model.layers.1." in record.getMessage()
    assert not [r for r in transformers_log if "LOAD REPORT" in r.getMessage()]


def test_tied_checkpoints_load_from_several_threads_at_once(tmp_path):
    """The stages load models in threads; transformers' loader swaps `tie_weights` process-wide
    while it works, so unserialised loads left every later tied checkpoint without lm_head."""
    original = PreTrainedModel.tie_weights
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=96,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: load_model(tmp_path, PICO, "cpu"), range(8)))
    assert PreTrainedModel.tie_weights is original
    later = load_model(tmp_path, PICO, "cpu")
    for model in [*models, later]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
