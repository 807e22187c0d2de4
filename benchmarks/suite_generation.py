"""Seconds to write the built-in suite from the shipped stdlib snapshot: what every new store
(every test's, every user's new data) pays before its first evaluation.

    python benchmarks/suite_generation.py [--code DIR ...] [--repeats 3]

For each checkout DIR (default: the one holding this script; pass an older checkout too to
time its code side by side, with the same interpreter and machine), a fresh process writes the
suite three times: into a fresh cache (`first`), again in the same process (`same process`),
and a second fresh process writes it once more on the same cache (`next process`). The
documents must be the same bytes for every checkout, or the benchmark stops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time
from pathlib import Path
import parammix_core
from parammix_core.evaluate.suite import write_builtin_suite
code = Path(parammix_core.__file__).parents[1]
assert code == Path(sys.argv[3]).resolve(), f"imported {code}, not {sys.argv[3]}"
out, times = Path(sys.argv[1]), []
for i in range(int(sys.argv[2])):
    start = time.perf_counter()
    write_builtin_suite(out / str(i), n_docs=300, seed=0)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def run(code: Path, cache: Path, out: Path, calls: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(code), "PARAMMIX_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CHILD, str(out), str(calls), str(code)],
        env=env,
        cwd=cache.parent,  # not the repository: `-c` puts the working folder first on sys.path
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"{code}: suite generation failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def digest(folder: Path) -> str:
    """SHA-256 over the documents (the YAMLs name their folder, so they differ by path)."""
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--code", type=Path, action="append", help="checkout to time (repeatable)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    codes = args.code or [ROOT]
    rows: dict[Path, dict[str, list[float]]] = {c: {} for c in codes}
    digests = set()
    for _ in range(args.repeats):
        for code in codes:  # interleaved, so that load on the machine hits every checkout alike
            with tempfile.TemporaryDirectory() as tmp:
                cache, out = Path(tmp) / "cache", Path(tmp) / "out"
                first, again = run(code, cache, out / "a", 2)
                (later,) = run(code, cache, out / "b", 1)
                digests |= {
                    digest(out / "a" / "0"),
                    digest(out / "a" / "1"),
                    digest(out / "b" / "0"),
                }
            for name, t in (("first", first), ("same process", again), ("next process", later)):
                rows[code].setdefault(name, []).append(t)
    if len(digests) != 1:
        raise SystemExit(f"the checkouts wrote different documents: {sorted(digests)}")
    print(f"documents identical everywhere (sha256 {digests.pop()[:16]})")
    print("| checkout | first (fresh cache) | same process | next process (same cache) |")
    print("| --- | ---: | ---: | ---: |")
    for code, times in rows.items():
        cells = [
            f"{statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})" for v in times.values()
        ]
        print(f"| {code} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
