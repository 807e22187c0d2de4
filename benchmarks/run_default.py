"""Wall time of `parammix run` on the embedded default, then of a rerun against the same store.

    python benchmarks/run_default.py [--config FILE] [--store DIR] [--s3]

Prints both times and their ratio (goal: first <= 15 min on 2 cores, rerun <= 10 % of it), and
what the first run produced: domains, mixtures evaluated, metrics per mixture. With `--s3`
the store is a bucket on a local SeaweedFS S3 server (credentials from the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from parammix_core.config import load_experiment
from parammix_core.s3local import LocalS3
from parammix_core.store import Store


def timed_run(config: str | None, store: str, sets: list[str], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "flows.cli", "run", "--set", f"store.url={store}"]
    for s in sets:
        cmd += ["--set", s]
    if config:
        cmd += ["--config", config]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    print("\n".join(out.stdout.strip().splitlines()[-12:]))
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config")
    p.add_argument("--store", help="store folder (default: a fresh temporary one)")
    p.add_argument("--s3", action="store_true", help="store on a local S3 server instead")
    args = p.parse_args()
    exp = load_experiment(args.config)
    with ExitStack() as stack:
        if args.s3:
            s3 = stack.enter_context(LocalS3(Path(tempfile.mkdtemp(prefix="parammix-s3-"))))
            store, options = f"s3://{s3.bucket('bench')}/store", {"endpoint_url": s3.endpoint}
            sets, env = [f"store.storage_options={json.dumps(options)}"], s3.env()
        else:
            store, options = args.store or tempfile.mkdtemp(prefix="parammix-bench-"), {}
            sets, env = [], {}
        first = timed_run(args.config, store, sets, env)
        second = timed_run(args.config, store, sets, env)
        report(exp, Store(store, s3.storage_options() if args.s3 else {}))
    print(f"first run: {first:.1f} s ({first / 60:.2f} min)")
    print(f"second run (same store): {second:.1f} s = {100 * second / first:.1f} % of the first")
    print(f"store: {store}")


def report(exp, store: Store) -> None:
    manifests = list(store.artifacts())
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


if __name__ == "__main__":
    main()
