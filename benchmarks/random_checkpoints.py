"""A random Llama base and K experts as HF safetensors checkpoints, for merge benchmarks.

Random weights, not a trained model: merging cost depends only on sizes and dtypes. Built
straight from the config's parameter shapes (a meta-device model), so nothing is downloaded
and no real initialisation runs. Default shape: hidden 768, 12 layers, vocab 32000, untied
head: 134M parameters, 537 MB per checkpoint in float32.
"""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def llama_config(hidden: int = 768, layers: int = 12, vocab: int = 32000) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        intermediate_size=hidden * 8 // 3 // 64 * 64,
        vocab_size=vocab,
        tie_word_embeddings=False,
        dtype="float32",
        architectures=["LlamaForCausalLM"],  # merge tools read the architecture from here
    )


def write_checkpoints(root: Path, experts: int = 3, seed: int = 0, **shape: int) -> list[Path]:
    """root/base, root/expert1..K; expert k = base + 0.01 k * noise. Returns [base, *experts]."""
    config = llama_config(**shape)
    with torch.device("meta"):
        shapes = {n: tuple(t.shape) for n, t in LlamaForCausalLM(config).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    base = {n: torch.randn(s, generator=g) * 0.02 for n, s in shapes.items()}
    dirs = [root / "base", *(root / f"expert{k}" for k in range(1, experts + 1))]
    for k, out in enumerate(dirs):
        out.mkdir(parents=True)
        config.save_pretrained(out)
        state = base
        if k:
            state = {n: t + 0.01 * k * torch.randn(t.shape, generator=g) for n, t in base.items()}
        safetensors.torch.save_file(state, out / "model.safetensors", metadata={"format": "pt"})
        del state
    return dirs


def parameter_count(dirs: list[Path]) -> tuple[int, int]:
    """(parameters, bytes of the largest tensor) of the first checkpoint."""
    from safetensors import safe_open

    with safe_open(dirs[0] / "model.safetensors", framework="pt") as f:
        sizes = [f.get_slice(n).get_shape() for n in f.keys()]  # noqa: SIM118
    counts = [int(torch.tensor(s).prod()) if s else 1 for s in sizes]
    return sum(counts), max(counts) * 4


_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(f"{code} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run `cmd`; (wall seconds, peak resident set in bytes, stdout). Raises on failure.

    Linux carries a forking parent's resident set into the child's ru_maxrss, so the command
    is started from a bare `python3 -S` launcher (a few MB) whose RUSAGE_CHILDREN is read.
    """
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        report = f"{tmp}/rusage"
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/python3", "-S", "-c", _LAUNCHER, report, *cmd],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        code, maxrss_kb = (int(x) for x in Path(report).read_text().split())
    if code != 0 or proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} ... exited {code}:\n{proc.stderr[-3000:]}")
    return seconds, maxrss_kb * 1024, proc.stdout


def mergekit_version(mergekit: str) -> str:
    """The version of the mergekit installed beside the `mergekit-yaml` executable given."""
    python = Path(mergekit).parent / "python"
    code = "import importlib.metadata as m; print(m.version('mergekit'))"
    return run_measured([str(python), "-c", code])[2].strip()
