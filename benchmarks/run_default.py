"""Wall time of `parammix run` on the embedded default, then of a rerun against the same store.

    python benchmarks/run_default.py [--config FILE] [--store DIR]

Prints both times and their ratio (goal: first <= 15 min on 2 cores, rerun <= 10 % of it), and
what the first run produced: domains, mixtures evaluated, metrics per mixture.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parammix_core.config import load_experiment
from parammix_core.store import Store


def timed_run(config: str | None, store: str) -> float:
    cmd = [sys.executable, "-m", "flows.cli", "run", "--set", f"store.url={store}"]
    if config:
        cmd += ["--config", config]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    print("\n".join(out.stdout.strip().splitlines()[-12:]))
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config")
    p.add_argument("--store", help="store folder (default: a fresh temporary one)")
    args = p.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="parammix-bench-")
    exp = load_experiment(args.config)

    first = timed_run(args.config, store)
    second = timed_run(args.config, store)

    manifests = list(Store(store).artifacts())
    stages = {}
    for m in manifests:
        stages.setdefault(m["stage"], []).append(m)
    mixtures = sum(m["info"]["mixtures"] for m in stages.get("evals", []))
    timings = {m["name"]: m["info"].get("seconds") for m in stages.get("expert", [])}
    print()
    print(f"domains: {len(exp.domains)} ({', '.join(exp.domains)})")
    print(f"groups: {', '.join(exp.evaluation.groups)}")
    print(f"mixtures evaluated: {mixtures}")
    print(f"base: {stages['base'][0]['info']}")
    print(f"expert training seconds: {timings}")
    print(f"first run: {first:.1f} s ({first / 60:.2f} min)")
    print(f"second run (same store): {second:.1f} s = {100 * second / first:.1f} % of the first")
    print(f"store: {Path(store).resolve()}")


if __name__ == "__main__":
    main()
