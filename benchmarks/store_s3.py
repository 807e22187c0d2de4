"""Store throughput on a real S3 server (SeaweedFS on 127.0.0.1) against the local backend.

    python benchmarks/store_s3.py [--mb 256] [--repeats 2]

One checkpoint of `--mb` MiB of random float32 tensors is published to and read back from
both backends, side by side in one run. Printed per backend: publish (sha256 of every file +
upload; multipart on S3) and read (S3: download into the cache + sha256 verification; local:
sha256 verification in place, nothing is copied) in MiB/s,
the peak resident memory of a process reading it (bounded: not the file size), the cost of
sha256 verification per GiB against a size-only check, and a raw file copy as the disk's own
speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from parammix_core.s3local import LocalS3
from parammix_core.store import ArtifactRef, Store, sha256_file

READER = """
import json, sys
from pathlib import Path
from parammix_core.store import ArtifactRef, Store

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

url, options, cache, ref = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
store = Store(url, options, cache_dir=Path(cache))
store.manifest(ArtifactRef.model_validate_json(ref))  # clients and connections warmed up
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
store.local_dir(ArtifactRef.model_validate_json(ref))
print(json.dumps({"before_kib": before, "after_kib": status("VmHWM:")}))
"""


def checkpoint(folder: Path, mib: int) -> Path:
    """`mib` MiB of float32 weights in 8 tensors, as one safetensors file."""
    gen = torch.Generator().manual_seed(0)
    per = mib * (1 << 20) // 4 // 8
    save_file(
        {f"layer{i}.weight": torch.randn(per, generator=gen) for i in range(8)},
        folder / "model.safetensors",
    )
    return folder


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_read_rss(url: str, options: dict, cache: Path, ref: ArtifactRef) -> tuple[float, float]:
    """(MiB resident before the read, MiB peak during it) in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", READER, url, json.dumps(options), str(cache), ref.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
    )
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    return rss["before_kib"] / 1024, rss["after_kib"] / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pm-store-bench-"))
    try:
        (work / "src").mkdir()
        src = checkpoint(work / "src", args.mb)
        size = (src / "model.safetensors").stat().st_size
        mib = size / (1 << 20)
        print(f"checkpoint: {mib:.0f} MiB in one safetensors file; {args.repeats} repeats")
        copy = min(
            timed(lambda: shutil.copyfile(src / "model.safetensors", work / "copy.bin"))
            for _ in range(args.repeats)
        )
        hashing = min(timed(lambda: sha256_file(src / "model.safetensors")) for _ in range(2))
        print(f"raw file copy: {mib / copy:.0f} MiB/s (the disk)")
        print(f"sha256: {mib / hashing:.0f} MiB/s = {hashing / (size / (1 << 30)):.2f} s per GiB")

        with LocalS3(work / "seaweedfs") as s3:
            backends = {
                "local": (str(work / "local-store"), {}),
                "s3": (f"s3://{s3.bucket('bench')}/store", s3.storage_options()),
            }
            for name, (url, options) in backends.items():
                publish, read, verify_sha, verify_size = [], [], [], []
                for r in range(args.repeats):
                    ref = ArtifactRef.for_spec("bench", "ckpt", {"repeat": r, "mb": args.mb})
                    store = Store(url, options, cache_dir=work / f"cache-{name}-{r}")
                    publish.append(timed(lambda s=store, ref=ref: s.publish(ref, src)))
                    read.append(timed(lambda s=store, ref=ref: s.local_dir(ref)))
                    verify_sha.append(timed(lambda s=store, ref=ref: s.check(ref, "sha256")))
                    verify_size.append(timed(lambda s=store, ref=ref: s.check(ref, "size")))
                fresh = work / f"cache-{name}-rss"
                before, peak = peak_read_rss(url, options, fresh, ref)
                print(
                    f"{name:>5}: publish {mib / min(publish):7.0f} MiB/s | read "
                    f"{mib / min(read):7.0f} MiB/s | check sha256 {min(verify_sha):.2f} s, "
                    f"size-only {min(verify_size) * 1000:.0f} ms | reader RSS {before:.0f} -> "
                    f"{peak:.0f} MiB for a {mib:.0f} MiB file"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if os.environ.get("PM_KEEP"):
            print(work)


if __name__ == "__main__":
    main()
