"""The shared base model: a tiny Llama built here, or a local Hugging Face checkpoint.

Weights only ever travel as safetensors: `load_model` refuses pickled `.bin` checkpoints, and
`save_model` writes `config.json` + `model.safetensors` (sharded only past 50 GB) in the
checkpoint layout transformers writes for the family, which need not be the module's own
names: stored weights are read back by name through `load_state`, never straight from the file.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from parammix_core.config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
log = logging.getLogger(__name__)


def _drop_load_report(record: logging.LogRecord) -> bool:
    """transformers prints a table of missing and unexpected tensors, saying they were
    initialised at random, at every load that does not fit: `load_model` refuses the missing ones
    and logs the unexpected ones itself, so the table would only contradict its one error line."""
    return "LOAD REPORT" not in str(record.msg)


logging.getLogger("transformers.modeling_utils").addFilter(_drop_load_report)

# `from_pretrained` swaps `PreTrainedModel.tie_weights` for a no-op while it loads and puts back
# what it found: two loads in two threads can leave the no-op in place for good, and every
# tied checkpoint (GPT-2, Qwen2, Llama 3.2) loaded after that lacks its output layer. One load
# at a time; the stages' threads only wait for the file reads.
_LOADING = threading.Lock()


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
    for file in sorted(path.glob("*.safetensors")):
        _check_safetensors(file)
    try:
        with _LOADING:
            model, info = AutoModelForCausalLM.from_pretrained(
                path,
                use_safetensors=True,
                local_files_only=True,
                trust_remote_code=cfg.trust_remote_code,
                attn_implementation=cfg.attn_implementation,
                # transformers sets the process-wide default dtype while it builds a model of
                # another dtype: a thread training or evaluating meanwhile creates its tensors in
                # bf16 (float != BFloat16 in a matmul), and two loads at once can leave bf16 the
                # default for good. So load in the default (float32) and cast after: the same
                # values, at the cost of a float32 copy while loading.
                dtype=torch.get_default_dtype(),
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # reported below, with the names, instead of a log
            )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot load the checkpoint: {err}") from None
    # transformers only logs weights that are absent or of another shape and initialises them
    # at random; a base or expert with random tensors must never be used.
    missing = sorted(info["missing_keys"])
    mismatched = sorted(
        f"{k}: file {tuple(a)}, config {tuple(b)}" for k, a, b in info["mismatched_keys"]
    )
    if missing or mismatched:
        problems = [f"{len(missing)} tensor(s) missing, e.g. {missing[:3]}"] if missing else []
        if mismatched:
            problems.append(f"{len(mismatched)} of another shape, e.g. {mismatched[:3]}")
        raise ModelLoadError(
            f"{path}: the weights do not fit config.json ({type(model).__name__}): "
            + "; ".join(problems)
        )
    unused = sorted(info["unexpected_keys"])
    if unused:
        log.warning(
            "%s: %d tensor(s) of the checkpoint are not used by %s, e.g. %s",
            path,
            len(unused),
            type(model).__name__,
            unused[:3],
        )
    return model.to(dtype=DTYPES[cfg.dtype], device=torch.device(device)).eval()


def check_fits(model: PreTrainedModel, tokens: int, block_size: int, where: str) -> None:
    """Refuse a checkpoint its data cannot feed: token ids past its embedding rows, or blocks
    longer than its positions (both end in an IndexError deep in training otherwise). `tokens`
    is the tokenizer's length, added tokens included."""
    rows = model.get_input_embeddings().num_embeddings
    if tokens > rows:
        raise ModelLoadError(
            f"{where}: its tokenizer has {tokens:,} tokens (added ones included) but the model "
            f"embeds {rows:,}: ids past {rows - 1:,} cannot be read; resize the embeddings "
            "and save the checkpoint again, or name another data.tokenizer"
        )
    config = model.config
    positions = next(
        (
            getattr(config, k)
            for k in ("max_position_embeddings", "n_positions", "n_ctx")
            if isinstance(getattr(config, k, None), int)
        ),
        None,
    )
    if positions is not None and block_size > positions:
        raise ModelLoadError(
            f"data.block_size {block_size:,} is longer than the {positions:,} positions of "
            f"{where}: set data.block_size to {positions:,} or less"
        )


def load_state(
    path: str | Path, cfg: ModelConfig, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """A checkpoint's weights keyed as the live model names them (`module_state`).

    Not the file's own names: transformers 5 writes some families in their hub layout and
    converts them on loading (a sparse MoE's routed experts: one 2-D tensor per expert in the
    file, one 3-D `mlp.experts.gate_up_proj` / `down_proj` per layer in the module, Mixtral's
    `block_sparse_moe` renamed `mlp`; GPT-NeoX's `embed_out` is the module's `lm_head`). Only
    transformers' own loading knows these conversions, so the merge, the live model and
    `functional_call` get their tensors through it.
    """
    return module_state(load_model(path, cfg, device))


def module_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict (detached) with each tied parameter under its first name only."""
    every = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    aliases = every - {name for name, _ in model.named_parameters()}
    return {name: t for name, t in model.state_dict().items() if name not in aliases}


def _check_safetensors(file: Path) -> None:
    """Refuse a weights file that is not safetensors (never unpickled) before transformers
    reads it, with the file named."""
    try:
        with safe_open(file, framework="pt"):
            return
    except (SafetensorError, OSError) as err:
        problem = f"not a valid safetensors file ({err})"
    # only now: a safetensors header length may start with these bytes too (0x80 = 128)
    with open(file, "rb") as f:
        head = f.read(4)
    if head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save zip, or a raw pickle stream
        problem = "a pickle (torch.save) file under a .safetensors name; pickles are never loaded"
    raise ModelLoadError(f"{file}: {problem}")


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
        raise ValueError(
            f"runtime.device: {name!r} requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use auto or cpu"
        )
    return device


def parameter_count(model: torch.nn.Module) -> int:
    """Number of weights, each shared (tied) parameter counted once."""
    return sum(p.numel() for p in model.parameters())
