"""The shared base model: a tiny Llama built here, or a local Hugging Face checkpoint.

Weights only ever travel as safetensors: `load_model` refuses pickled `.bin` checkpoints, and
`save_model` writes `config.json` + `model.safetensors` (sharded only past 50 GB).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from parammix_core.config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ModelLoadError(ValueError):
    """A checkpoint directory that cannot be loaded safely; the message names the directory."""


def build_model(
    cfg: ModelConfig,
    vocab_size: int,
    max_positions: int,
    seed: int,
    *,
    bos_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
) -> LlamaForCausalLM:
    """A freshly initialised Llama with the shapes in `cfg`, identical for identical arguments.

    The global RNG is forked, so building a model neither depends on nor disturbs the caller's
    random state. Embeddings are untied so every parameter is its own merge coordinate.
    The pad id goes to generation only: as the model config's `pad_token_id` it would become
    the embedding's `padding_idx`, whose row never trains, and our pad token is also the
    end-of-text separator present in every packed block.
    """
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        attn_implementation=cfg.attn_implementation,
        dtype=cfg.dtype,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)  # initialised in float32 on the CPU
    model.generation_config.pad_token_id = pad_token_id
    return model.to(DTYPES[cfg.dtype]).eval()


def load_model(path: str | Path, cfg: ModelConfig, device: torch.device | str) -> PreTrainedModel:
    """Load a local HF checkpoint directory (safetensors only) onto `device`, in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a checkpoint directory")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: no config.json, so not a Hugging Face checkpoint")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.glob("*.bin"))
        if pickled:
            raise ModelLoadError(
                f"{path}: only pickled weights ({', '.join(pickled)}); pickles are never "
                "loaded - convert the checkpoint to safetensors first"
            )
        raise ModelLoadError(f"{path}: no *.safetensors weights")
    model = AutoModelForCausalLM.from_pretrained(
        path,
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=cfg.trust_remote_code,
        attn_implementation=cfg.attn_implementation,
        dtype=DTYPES[cfg.dtype],
    )
    return model.to(torch.device(device)).eval()


def save_model(model: PreTrainedModel, out_dir: Path) -> None:
    """Write `config.json` and `model.safetensors` (HF layout, loadable by `load_model`)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def parameter_count(model: torch.nn.Module) -> int:
    """Number of weights, each shared (tied) parameter counted once."""
    return sum(p.numel() for p in model.parameters())
