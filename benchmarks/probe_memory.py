"""Peak memory and wall time of the interference probe against model size, before and after.

    python benchmarks/probe_memory.py --before /tmp/probe-orig [--sizes 7M 27M 104M]
        [--cap-gib 14] [--chunk-size-one]

`--before` is a copy of the code before the streaming probe (issue 19 item 4), e.g.
`git archive 1636070 | tar -x -C /tmp/probe-orig`. Per size, a random Llama (float32, the
384-token tokenizer of tests/parammix_core/architectures.py, shapes in SIZES) becomes the base
of a fresh store with K = 4 built-in domains and four experts of 2 steps; that setup runs in a
child process and is not measured. Then each of these runs in a fresh process, by the code
before and by the code after, one after the other:

- probe: `stages.interference_probe` as the flow calls it (load the base, 4 gradients and 16
  HVPs by double backward over 2 batches of 2 x 64 tokens per domain, the reductions, the
  task-vector cosines, the artifact written and published);
- gram: what the surrogates and the proxy validation read, `load_probe` and the Gram matrix;
- correction: what `evaluation.proxy: corrected` loads beside the merge, the v_kj directions.

Peak: the child's ru_maxrss, read by a bare `python3 -S` launcher (a forking parent's resident
set would otherwise be counted). Each child runs under an address-space cap (RLIMIT_AS,
`--cap-gib`), so a run that does not fit fails with an allocation error instead of pushing a
shared 24 GiB machine into swap or the OOM killer; such a run is reported as not fitting.
Seconds: the measured call only, imports excluded. peak / param bytes divides the peak by
4 P (the float32 parameters); idle is a process that has imported the same modules.
The outputs of before and after are compared: relative curvature, whole-model and per-layer
task-vector cosines (probe.json), the Gram matrix, and ||correction||^2 = trace of the Gram.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
# label -> (hidden, layers, intermediate); heads of 64 dims, vocabulary 384, untied head
SIZES = {"7M": (256, 8, 704), "27M": (512, 8, 1408), "104M": (1024, 8, 2816)}
DOMAINS = ("math", "code", "sft", "web")

SETUP = """
import json, sys, torch
from pathlib import Path
torch.set_num_threads(1)
from transformers import LlamaConfig, LlamaForCausalLM
from tests.parammix_core.architectures import micro_tokenizer
from parammix_core import stages
from parammix_core.config import parse_experiment
root, hidden, layers, inter, domains = Path(sys.argv[1]), *map(int, sys.argv[2:5]), sys.argv[5:]
tok = micro_tokenizer()
config = LlamaConfig(
    vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
    num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
    intermediate_size=inter, max_position_embeddings=128, tie_word_embeddings=False,
    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
)
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(root / "checkpoint")
tok.save_pretrained(root / "checkpoint")
exp = parse_experiment({
    "name": "probe-memory",
    "data": {
        "domains": [{"name": d, "builtin": d} for d in domains],
        "max_train_tokens": 8000, "heldout_tokens": 1024, "block_size": 64,
    },
    "model": {"checkpoint": str(root / "checkpoint")},
    "training": {"expert": {"steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1}},
    "probe": {"batch_size": 2, "batches_per_domain": 2, "chunk_size": None},
    "store": {"url": str(root / "store")},
    "runtime": {"device": "cpu"},
})
store = stages.open_store(exp)
data = stages.prepare_domains(exp, store)
base = stages.build_base(exp, store, data)
experts = [stages.train_expert(exp, store, d, data, base) for d in exp.domains]
print(json.dumps({
    "config": exp.model_dump(mode="json"), "data": data.model_dump(), "base": base.model_dump(),
    "experts": [e.model_dump() for e in experts],
}))
"""

# The measured children: argv[1] is the setup's JSON (plus the probe's ref for gram and
# correction), argv[2] "before" or "after" (the two codes' load_probe differ).
PRELUDE = """
import json, sys, time, torch
torch.set_num_threads(1)
import parammix_core
from parammix_core import stages
from parammix_core.config import parse_experiment
from parammix_core.store import ArtifactRef
spec = json.load(open(sys.argv[1]))
exp = parse_experiment(spec["config"])
store = stages.open_store(exp)
ref = lambda d: ArtifactRef.model_validate(d)
data, base, experts = ref(spec["data"]), ref(spec["base"]), [ref(e) for e in spec["experts"]]
"""
IDLE = PRELUDE + "print(json.dumps({'seconds': 0.0}))"
PROBE = (
    PRELUDE
    + """
t0 = time.perf_counter()
probe = stages.interference_probe(exp, store, data, base, experts)
seconds = time.perf_counter() - t0
info = store.load_json(probe, "probe.json")
print(json.dumps({"seconds": seconds, "probe": probe.model_dump(), "info": info,
                  "code": parammix_core.__file__}))
"""
)
GRAM = (
    PRELUDE
    + """
probe = ref(spec["probe"])
t0 = time.perf_counter()
if sys.argv[2] == "before":
    result, info = stages.load_probe(store, probe)
    gram = result.gram()
else:
    _, summary, info = stages.load_probe(store, probe)
    gram = summary.gram.numpy()
print(json.dumps({"seconds": time.perf_counter() - t0, "gram": gram.tolist()}))
"""
)
CORRECTION = (
    PRELUDE
    + """
probe = ref(spec["probe"])
t0 = time.perf_counter()
if sys.argv[2] == "before":
    result, info = stages.load_probe(store, probe)
    k = len(info["domains"])
    vectors = result.v().reshape(k * k, -1).to(torch.float32).contiguous()
else:
    shards, _, info = stages.load_probe(store, probe)
    vectors = shards.correction(torch.float32, "cpu")
seconds = time.perf_counter() - t0
step = 1 << 22  # float64 a slice at a time: the check must not raise the peak
squared = sum(
    float(row[s : s + step].double().square().sum())
    for row in vectors for s in range(0, len(row), step)
)
print(json.dumps({"seconds": seconds, "rows": len(vectors), "squared": squared}))
"""
)

LAUNCHER = """
import resource, subprocess, sys
cap = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
code = subprocess.call(sys.argv[3:])
with open(sys.argv[1], "w") as f:
    f.write(f"{code} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def measured(code: Path, script: str, args: list[str], cap: int) -> dict:
    """Run `script` with `code` first on the path, in a fresh process under an address-space
    cap: its printed JSON plus "peak" (bytes), or {"error": last lines of stderr}."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        report = f"{tmp}/rusage"
        cmd = [sys.executable, "-c", script, *args]
        proc = subprocess.run(
            ["/usr/bin/python3", "-S", "-c", LAUNCHER, report, str(cap), *cmd],
            cwd=code,  # `python -c` puts the working directory first on sys.path
            env=env,
            capture_output=True,
            text=True,
        )
        status, maxrss_kb = (int(x) for x in Path(report).read_text().split())
    if status != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit {status}", "peak": maxrss_kb * 1024}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "peak": maxrss_kb * 1024}


def setup(root: Path, shape: tuple[int, int, int]) -> dict:
    """The store of one size: data, base and experts (not measured)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [str(root), *map(str, shape), *DOMAINS]
    out = subprocess.run(
        [sys.executable, "-c", SETUP, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(run: dict, params: int, idle: int) -> str:
    """'peak MiB | seconds | peak / param bytes | (peak - idle) / param bytes', or why not."""
    if "error" in run:
        return f"failed at {run['peak'] / MIB:.0f} MiB: {run['error'][:80]} | - | - | -"
    ratio, above = run["peak"] / (4 * params), (run["peak"] - idle) / (4 * params)
    return f"{run['peak'] / MIB:.0f} | {run['seconds']:.1f} | {ratio:.1f} | {above:.1f}"


def max_diff(a: object, b: object) -> float:
    """Largest absolute difference of two nested lists of numbers (NaN-safe)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.nanmax(np.abs(x - y))) if x.size else 0.0


def compare(before: dict, after: dict) -> str:
    """Differences of the probe.json figures of the two runs."""
    b, a = before["info"], after["info"]
    layers = max(max_diff(b["per_layer_cosines"][g], v) for g, v in a["per_layer_cosines"].items())
    same = list(b["per_layer_cosines"]) == list(a["per_layer_cosines"])
    curvature = max_diff(b["relative_curvature"], a["relative_curvature"])
    return (
        f"max |diff| relative curvature {curvature:.1e}"
        f", cosines {max_diff(b['task_vector_cosines'], a['task_vector_cosines']):.1e}"
        f", per-layer cosines {layers:.1e} ({len(a['per_layer_cosines'])} groups, "
        f"{'same' if same else 'DIFFERENT'} names)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, required=True, help="a copy of the code before")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--cap-gib", type=float, default=14.0, help="address-space cap per child")
    p.add_argument(
        "--chunk-size-one", action="store_true", help="also run the probe after with chunk_size 1"
    )
    args = p.parse_args()
    cap = int(args.cap_gib * 2**30)
    codes = {"before": args.before.resolve(), "after": ROOT}
    print(f"K = {len(DOMAINS)} domains; address-space cap {args.cap_gib:g} GiB per child")
    print(
        "| size | params | param MiB | run | code | peak MiB | s | peak / param bytes "
        "| (peak - idle) / param bytes |"
    )
    print("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    notes = []
    for label in args.sizes:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            start = time.perf_counter()
            spec = setup(Path(tmp), SIZES[label])
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec))
            params = parameter_count(spec)
            notes.append(f"{label}: setup {time.perf_counter() - start:.0f} s (not measured)")
            head = f"| {label} | {params:,} | {4 * params / MIB:.0f}"
            runs, idle = {}, {}
            for version, code in codes.items():
                idle[version] = measured(code, IDLE, [str(spec_path)], cap)["peak"]
                print(f"{head} | idle | {version} | {idle[version] / MIB:.0f} | - | - | - |")
            chunk_one = {**spec, "config": _with_chunk_size(spec["config"], 1)}
            plans = [("before", spec), ("after", spec)]
            if args.chunk_size_one:
                plans.append(("after, chunk_size 1", chunk_one))
            for name, plan in plans:
                path = Path(tmp) / f"{name}.json"
                path.write_text(json.dumps(plan))
                version = name.split(",")[0]
                runs[name] = measured(codes[version], PROBE, [str(path), version], cap)
                cell_text = cell(runs[name], params, idle[version])
                print(f"{head} | probe | {name} | {cell_text} |", flush=True)
            for script, what in ((GRAM, "gram"), (CORRECTION, "correction")):
                for version in codes:
                    if "error" in runs[version]:
                        print(f"{head} | {what} | {version} | no probe artifact | - | - | - |")
                        continue
                    path = Path(tmp) / f"{version}-{what}.json"
                    path.write_text(json.dumps({**spec, "probe": runs[version]["probe"]}))
                    runs[f"{version} {what}"] = measured(
                        codes[version], script, [str(path), version], cap
                    )
                    cell_text = cell(runs[f"{version} {what}"], params, idle[version])
                    print(f"{head} | {what} | {version} | {cell_text} |", flush=True)
            notes.extend(_agreement(label, runs))
    print()
    for note in notes:
        print(note)


def _with_chunk_size(config: dict, chunk_size: int) -> dict:
    return {**config, "probe": {**config["probe"], "chunk_size": chunk_size}}


def parameter_count(spec: dict) -> int:
    from safetensors import safe_open

    folder = Path(spec["config"]["model"]["checkpoint"])
    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(file, framework="np") as f:
            total += sum(int(np.prod(f.get_slice(n).get_shape())) for n in f.keys())  # noqa: SIM118
    return total


def _agreement(label: str, runs: dict) -> list[str]:
    """How far apart the before and after outputs are, where both exist."""
    if "error" in runs["before"] or "error" in runs["after"]:
        return [f"{label}: before did not run to the end, nothing to compare"]
    notes = [f"{label}: {compare(runs['before'], runs['after'])}"]
    if "after, chunk_size 1" in runs and "error" not in runs["after, chunk_size 1"]:
        notes.append(f"{label} chunk_size 1: {compare(runs['after'], runs['after, chunk_size 1'])}")
    gram_b, gram_a = runs.get("before gram", {}), runs.get("after gram", {})
    if "gram" in gram_b and "gram" in gram_a:
        g = np.asarray(gram_b["gram"])
        rel = max_diff(gram_b["gram"], gram_a["gram"]) / np.abs(g).max()
        notes.append(f"{label}: Gram max |diff| / max |G| = {rel:.1e}")
    corr_b, corr_a = runs.get("before correction", {}), runs.get("after correction", {})
    if "squared" in corr_b and "squared" in corr_a:
        rel = abs(corr_b["squared"] - corr_a["squared"]) / corr_b["squared"]
        notes.append(
            f"{label}: correction rows {corr_b['rows']} before, {corr_a['rows']} after "
            f"(the zero v_kk dropped); ||.||^2 relative difference {rel:.1e}"
        )
    return notes


if __name__ == "__main__":
    main()
