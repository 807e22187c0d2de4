"""Tiny random Hugging Face checkpoints of real architecture families, and a micro experiment.

Each family is built from its own `transformers` config class with random weights, saved with
`save_pretrained` (safetensors) beside a byte-level BPE tokenizer trained on the built-in
domains, exactly as a user's checkpoint folder looks. Shapes are a few hundred thousand
parameters, so every stage runs on one in seconds. `benchmarks/architectures.py` imports this
module too (the repository root on `sys.path`), so test and benchmark run the same stages.

Families: dense Llama, Qwen2 (attention biases, tied embeddings as in Qwen2-0.5B) and
GPT-NeoX (`gpt_neox.*` names, LayerNorm biases, fused QKV, parallel residual), and the sparse
MoE families Mixtral (top-2 of 4), Qwen2-MoE (top-2 of 4 plus a gated shared expert) and OLMoE
(top-2 of 4, QK norm). In transformers 5 the routed experts of all three are one 3-D
`mlp.experts.gate_up_proj` / `mlp.experts.down_proj` tensor per layer and the router is
`mlp.gate.weight`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    LlamaConfig,
    MixtralConfig,
    OlmoeConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2MoeConfig,
)

from parammix_core import stages
from parammix_core.config import Experiment, parse_experiment
from parammix_core.data import builtin_texts, train_tokenizer
from parammix_core.evaluate import write_builtin_suite
from parammix_core.merge import InMemoryMerger
from parammix_core.model import load_model, load_state
from parammix_core.stages.final import score_final_run
from parammix_core.stages.mixed import final_run
from parammix_core.store import ArtifactRef, Store

HIDDEN, LAYERS, HEADS, KV_HEADS, POSITIONS = 64, 2, 4, 2, 128
DOMAINS = ("math", "sft", "code")

# name -> config class and its family-specific fields (shared shapes are added by `config_for`)
FAMILIES: dict[str, tuple[type[PretrainedConfig], dict[str, Any]]] = {
    "llama": (LlamaConfig, {"intermediate_size": 128, "num_key_value_heads": KV_HEADS}),
    "qwen2": (
        Qwen2Config,
        {"intermediate_size": 128, "num_key_value_heads": KV_HEADS, "tie_word_embeddings": True},
    ),
    "gpt_neox": (GPTNeoXConfig, {"intermediate_size": 128, "rotary_pct": 0.5}),
    "mixtral": (
        MixtralConfig,
        {
            "intermediate_size": 64,
            "num_key_value_heads": KV_HEADS,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "router_aux_loss_coef": 0.02,
        },
    ),
    "qwen2_moe": (
        Qwen2MoeConfig,
        {
            "intermediate_size": 128,
            "moe_intermediate_size": 64,
            "shared_expert_intermediate_size": 64,
            "num_key_value_heads": KV_HEADS,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "norm_topk_prob": True,
            "router_aux_loss_coef": 0.02,
        },
    ),
    "olmoe": (
        OlmoeConfig,
        {
            "intermediate_size": 64,
            "num_key_value_heads": KV_HEADS,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "router_aux_loss_coef": 0.02,
        },
    ),
}
MOE = ("mixtral", "qwen2_moe", "olmoe")
CPU = torch.device("cpu")


def config_for(family: str, vocab_size: int, **fields: Any) -> PretrainedConfig:
    """The family's config at micro shapes; `fields` override (e.g. output_router_logits)."""
    cls, own = FAMILIES[family]
    return cls(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=POSITIONS,
        **{**own, **fields},
    )


def random_model(family: str, vocab_size: int, seed: int = 0, **fields: Any) -> torch.nn.Module:
    """A randomly initialised causal LM of `family`, in eval mode; the global RNG is untouched."""
    config = config_for(family, vocab_size, **fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config).eval()


def domain_texts() -> dict[str, list[str]]:
    """The built-in domains' documents the micro experiment trains on (deterministic)."""
    return {d: builtin_texts(d, seed=i, target_chars=60_000) for i, d in enumerate(DOMAINS)}


def micro_tokenizer() -> PreTrainedTokenizerBase:
    """A 384-token byte-level BPE on the built-in domains, as test_stages_user_setup makes one."""
    return train_tokenizer(domain_texts(), vocab_size=384, seed=0)


def write_checkpoint(
    family: str, out: Path, tok: PreTrainedTokenizerBase, seed: int = 0
) -> torch.nn.Module:
    """`out`: config.json + model.safetensors + the tokenizer; returns the saved model."""
    model = random_model(
        family,
        len(tok),
        seed,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model


def micro_suite(out: Path) -> Path:
    """The built-in lm-eval tasks as a task folder, written once and shared by every family's
    experiment (generating it takes most of a micro run's time)."""
    return write_builtin_suite(out, n_docs=12, seed=0)


def micro_experiment(checkpoint: Path, store: Path, suite: Path) -> Experiment:
    """Three built-in domains, the checkpoint as base, the task folder `suite`, micro budgets."""
    config: dict[str, Any] = {
        "name": f"arch-{checkpoint.name}",
        "data": {
            "domains": [{"name": d, "builtin": d} for d in DOMAINS],
            "max_train_tokens": 8_000,
            "heldout_tokens": 1_024,
            "block_size": 64,
        },
        "model": {"checkpoint": str(checkpoint)},
        "training": {
            "expert": {"steps": 4, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
        },
        "evaluation": {
            "include_path": str(suite),
            "tasks": [
                {"name": "pm_arithmetic", "group": "math", "metric": "p_correct"},
                {"name": "pm_word_order", "group": "language", "metric": "p_correct"},
            ],
        },
        "probe": {"batch_size": 4, "batches_per_domain": 1},
        "search": {
            "n_mixtures": 6,
            "batch_size": 6,
            "n_candidates": 100,
            "top_k": 4,
            "cv_folds": 2,
        },
        "final": {
            "train": {"steps": 3, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
            "seeds": 1,
        },
        "store": {"url": str(store)},
        "runtime": {"device": "cpu"},
    }
    return parse_experiment(config)


@dataclass
class MicroRun:
    """One family's micro experiment after every stage: its refs and each stage's wall time."""

    family: str
    checkpoint: Path
    written: torch.nn.Module  # the model saved as the user's checkpoint
    exp: Experiment
    store: Store
    data: ArtifactRef
    base: ArtifactRef
    experts: list[ArtifactRef]
    alphas: list[list[float]]  # the evaluated mixtures, in row order
    evals: ArtifactRef
    probe: ArtifactRef
    final: ArtifactRef
    final_scores: ArtifactRef
    seconds: dict[str, float] = field(default_factory=dict)

    def weights(self, ref: ArtifactRef) -> Path:
        return Path(self.store.local_dir(ref)) / "model.safetensors"


def run_stages(family: str, root: Path, tok: PreTrainedTokenizerBase, suite: Path) -> MicroRun:
    """The family's checkpoint under `root` through prepare_domains, build_base, train_expert
    per domain, merge_and_evaluate, interference_probe and one scored final run (uniform)."""
    seconds: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
        return out

    written = write_checkpoint(family, root / family, tok)
    exp = micro_experiment(root / family, root / "store", suite)
    store = stages.open_store(exp)
    data = timed("data", lambda: stages.prepare_domains(exp, store))
    base = timed("base", lambda: stages.build_base(exp, store, data))
    experts = timed(
        "experts", lambda: [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
    )
    (alphas,) = stages.mixture_batches(exp)
    evals = timed(
        "evaluate", lambda: stages.merge_and_evaluate(exp, store, alphas, data, base, experts)
    )
    probe = timed("probe", lambda: stages.interference_probe(exp, store, data, base, experts))
    uniform = [1 / len(exp.domains)] * len(exp.domains)
    final = timed("final", lambda: final_run(exp, store, uniform, exp.seed, data, base))
    scores = timed("final", lambda: score_final_run(exp, store, final, data))
    return MicroRun(
        family,
        root / family,
        written,
        exp,
        store,
        data,
        base,
        experts,
        alphas,
        evals,
        probe,
        final,
        scores,
        seconds,
    )


def reference_merge(run: MicroRun, weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """theta_base + sum_k w_k (theta_k - theta_base) in float64, per tensor of the raw
    files (the checkpoint's own layout and names), without any library code."""
    base = load_file(run.weights(run.base))
    experts = [load_file(run.weights(e)) for e in run.experts]
    out = {}
    for name, b in base.items():
        merged = b.double().clone()
        for w, e in zip(weights, experts, strict=True):
            merged += float(w) * (e[name].double() - b.double())
        out[name] = merged
    return out


def live_merges(run: MicroRun, out: Path) -> Iterator[tuple[list[float], dict[str, torch.Tensor]]]:
    """Each evaluated mixture merged in a live model as merge_and_evaluate does it
    (`InMemoryMerger` over `load_state`), then saved by transformers into `out` and read back:
    (alpha, the merged tensors in the checkpoint's layout)."""
    exp, store = run.exp, run.store
    model = load_model(store.local_dir(run.base), exp.model, CPU)
    merger = InMemoryMerger(
        model,
        load_state(store.local_dir(run.base), exp.model, CPU),
        [load_state(store.local_dir(e), exp.model, CPU) for e in run.experts],
    )
    for i, alpha in enumerate(run.alphas):
        merger.apply(alpha)
        model.save_pretrained(out / f"merge{i}")
        yield alpha, load_file(out / f"merge{i}" / "model.safetensors")


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref|| / ||ref|| in float64."""
    ref = ref.double()
    return float((a.double() - ref).norm() / ref.norm().clamp_min(1e-30))
