"""`parammix export` beside mergekit run on the mergekit.yaml the export writes.

    python benchmarks/export_vs_mergekit.py --mergekit /tmp/mergekit-venv/bin/mergekit-yaml
    python benchmarks/export_vs_mergekit.py --mergekit ... --config my.yaml --mixture math=0.4,...

mergekit lives in its own scratch venv (it pins its own transformers), never in the project's:
    python3.11 -m venv /tmp/mergekit-venv
    /tmp/mergekit-venv/bin/pip install torch==2.13.0 mergekit

Without --config, the micro experiment's data, base and experts are built here in a temporary
store (configs/micro.yaml, a few seconds of training); with --config, that config's store is
used as it is (it must hold the experts: the export never trains). `parammix export --mixture`
writes the checkpoint and its mergekit.yaml; `mergekit-yaml mergekit.yaml OUT
--no-copy-tokenizer` recomputes the merge from the same store folders. Prints, per tensor, the
max |parammix - mergekit| and each one's max |difference| from theta_base + sum_k alpha_k
(theta_k - theta_base) computed in float64 from the stored files (max absolute values), and
both wall times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from random_checkpoints import mergekit_version, run_measured
from safetensors.torch import load_file

from parammix_core import stages
from parammix_core.config import Experiment, apply_overrides, load_experiment
from parammix_core.export import parse_mixture

ROOT = Path(__file__).resolve().parents[1]


def micro_store(root: Path) -> Experiment:
    """configs/micro.yaml with its data, base and experts built in a store under `root`."""
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    exp = apply_overrides(exp, [f"store.url={root / 'store'}"], "micro")
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    for domain in exp.domains:
        stages.train_expert(exp, store, domain, data, base)
    return exp


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def reference(config: dict, names: list[str]) -> dict[str, torch.Tensor]:
    """The float64 merge of the folders and weights the mergekit config names."""
    base = tensors(Path(config["base_model"]))
    experts = [(m["parameters"]["weight"], tensors(Path(m["model"]))) for m in config["models"]]
    out = {}
    for name in names:
        b = base[name].double()
        out[name] = b + sum(w * (e[name].double() - b) for w, e in experts)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mergekit", default=shutil.which("mergekit-yaml"), help="mergekit-yaml")
    p.add_argument("--config", help="a config whose store holds the experts (default: micro)")
    p.add_argument("--mixture", help="D=W,... (default: 0.35 on the first domain, the rest even)")
    args = p.parse_args()
    if args.mergekit is None or not Path(args.mergekit).is_file():
        raise SystemExit("error: --mergekit: no mergekit-yaml found (see the top of this file)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        exp = load_experiment(args.config) if args.config else micro_store(root)
        mixture = args.mixture or default_mixture(exp.domains)
        parse_mixture(mixture, exp.domains)  # a bad one fails here, not in a subprocess
        config = root / "config.yaml"
        config.write_text(exp.to_yaml())
        export = [sys.executable, "-m", "flows.cli", "export", "--config", str(config)]
        ours_s, _, _ = run_measured(
            [*export, "--mixture", mixture, "--out", str(root / "ours")], env
        )
        mk_cmd = [args.mergekit, str(root / "ours" / "mergekit.yaml"), str(root / "mk")]
        mk_s, _, _ = run_measured([*mk_cmd, "--no-copy-tokenizer", "--quiet"], env)
        ours, theirs = tensors(root / "ours"), tensors(root / "mk")
        if ours.keys() != theirs.keys():
            raise SystemExit(f"different tensor names: {sorted(ours.keys() ^ theirs.keys())[:5]}")
        mk_config = yaml.safe_load((root / "ours" / "mergekit.yaml").read_text())
        want = reference(mk_config, list(ours))
    report(exp, mixture, mk_config["dtype"], ours, theirs, want, ours_s, mk_s, args.mergekit)


def default_mixture(domains: list[str]) -> str:
    rest = (1 - 0.35) / (len(domains) - 1)
    return ",".join(f"{d}={0.35 if i == 0 else rest!r}" for i, d in enumerate(domains))


def report(
    exp: Experiment,
    mixture: str,
    dtype: str,
    ours: dict[str, torch.Tensor],
    theirs: dict[str, torch.Tensor],
    want: dict[str, torch.Tensor],
    ours_s: float,
    mk_s: float,
    mergekit: str,
) -> None:
    """One markdown row per tensor, the worst of each column, the two wall times."""
    params = sum(t.numel() for t in ours.values())
    print(f"experiment {exp.name}: {len(ours)} tensors, {params:,} parameters, {dtype}")
    print(f"mixture {mixture}")
    print("| tensor | shape | parammix - mergekit | parammix - float64 | mergekit - float64 |")
    print("| --- | --- | ---: | ---: | ---: |")
    worst = [0.0, 0.0, 0.0]
    for name, t in ours.items():
        row = [
            (t.double() - theirs[name].double()).abs().max().item(),
            (t.double() - want[name]).abs().max().item(),
            (theirs[name].double() - want[name]).abs().max().item(),
        ]
        worst = [max(w, r) for w, r in zip(worst, row, strict=True)]
        cells = " | ".join(f"{r:.2e}" for r in row)
        print(f"| {name} | {list(t.shape)} | {cells} |")
    print(f"| all | | {worst[0]:.2e} | {worst[1]:.2e} | {worst[2]:.2e} |")
    differ = sum(not torch.equal(t, theirs[n]) for n, t in ours.items())
    eps = torch.finfo(torch.float32).eps
    print(f"{differ} of {len(ours)} tensors differ at all; float32 spacing at 1.0: {eps:.2e}")
    print(f"wall time (whole process): parammix export {ours_s:.1f} s, ", end="")
    print(f"mergekit-yaml {mk_s:.1f} s (mergekit {mergekit_version(mergekit)})")


if __name__ == "__main__":
    main()
