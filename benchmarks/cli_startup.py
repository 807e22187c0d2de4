"""Wall time of CLI commands that should start at once: `parammix --help`, `parammix import`
on a small table and `parammix validate-config configs/micro.yaml`, each the median of fresh
processes.

    python benchmarks/cli_startup.py [--code DIR] [--repeats 5]

DIR is the checkout whose `flows.cli` is timed (default: the one holding this script). It goes
first on PYTHONPATH, so it wins over an installed copy: pointing it at a checkout of older code
times that code with the same interpreter, tables and machine. Each process runs
`python -m flows.cli ...`, what the `parammix` entry point runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_tables(folder: Path, runs: int = 20) -> tuple[Path, Path]:
    """A ratios and a metrics CSV of `runs` rows over 3 domains, as a user would import."""
    ratios, metrics = folder / "ratios.csv", folder / "metrics.csv"
    rows = [(0.2 + 0.02 * (i % 10), 0.3, 0.5 - 0.02 * (i % 10)) for i in range(runs)]
    ratios.write_text(
        "run_id,math,code,web\n"
        + "".join(f"r{i},{a:.2f},{b},{c:.2f}\n" for i, (a, b, c) in enumerate(rows))
    )
    metrics.write_text(
        "run_id,acc,loss\n"
        + "".join(f"r{i},{0.5 + 0.01 * i:.2f},{2.5 - 0.01 * i:.2f}\n" for i in range(runs))
    )
    return ratios, metrics


def wall_time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from starting the process to its exit; a failing command stops the benchmark."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv], env=env, cwd=cwd, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"parammix {' '.join(argv)} failed:\n{result.stderr}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose flows.cli is timed")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ratios, metrics = write_tables(folder)
        env = {**os.environ, "PYTHONPATH": str(args.code.resolve()), "PARAMMIX_CACHE": tmp}
        commands = {
            "parammix --help": ["--help"],
            "parammix import (20 runs)": [
                "import",
                "--ratios",
                str(ratios),
                "--metrics",
                str(metrics),
            ],
            "parammix validate-config configs/micro.yaml": [
                "validate-config",
                str(args.code.resolve() / "configs" / "micro.yaml"),
            ],
        }
        print(f"code: {args.code.resolve()}; python: {sys.executable}; {args.repeats} runs each")
        print(f"{'command':<45} {'median':>8} {'min':>8} {'max':>8}")
        for name, argv in commands.items():
            times = [wall_time(argv, env, folder) for _ in range(args.repeats)]
            row = f"{statistics.median(times):7.2f}s {min(times):7.2f}s {max(times):7.2f}s"
            print(f"{name:<45} {row}")


if __name__ == "__main__":
    main()
