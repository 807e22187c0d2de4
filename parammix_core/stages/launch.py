"""A training stage on several processes, from inside the flow: torchrun as a child process.

With `training.processes: N > 1` a training stage (the base, an expert, a mixed run, a final
run) does not train in the flow's process, which is one task thread on one device, but runs
*itself* on N processes of this node:

    python -m torch.distributed.run --standalone --nproc_per_node=N \\
        -m parammix_core.stages.launch_rank JOB.json

JOB.json holds the stage's name, the experiment and the stage's arguments. The store's fsspec
options may carry credentials, so they travel in the children's environment, never in a file.
Every rank calls the same stage function; there `launched()` is true, so it trains in place
(DeepSpeed splits each global batch over the ranks) and only rank 0 (`is_writer()`) saves and
publishes the artifact. Rank 0 prints its progress as JSON lines after `PROGRESS_PREFIX` on
stdout; the parent turns them back into `progress(done, total, message)` calls and logs every
other line. A failing rank prints its exception after `ERROR_PREFIX` on stderr, so the parent's
`LaunchError` names the stage, the exit code, the ranks' errors and the end of stderr (where
torchrun's own summary would otherwise hide them). The parent then checks that the artifact is
in the store. A retried task launches again and the ranks resume from the stage's work-dir
checkpoints, as a run in one process does (they are consolidated, so a run resumes under any
number of processes). Every launch takes all N local ranks (GPUs cuda:0..N-1), so concurrent
task threads of one flow process launch in turn.

One node only: with several nodes, run the stages under a launcher yourself (docs/scale.md);
they then see `launched()` and train in place.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parammix_core.config import Experiment
from parammix_core.engines import LAUNCHER_ENV
from parammix_core.model import resolve_device
from parammix_core.stages.common import Progress
from parammix_core.stages.exclusive import one_at_a_time
from parammix_core.store import ArtifactRef, Store

# stage name -> "module:function"; imported in the children (those modules import this one)
STAGES = {
    "build_base": "parammix_core.stages.base:build_base",
    "train_expert": "parammix_core.stages.experts:train_expert",
    "train_mixed": "parammix_core.stages.mixed:train_mixed",
    "final_run": "parammix_core.stages.mixed:final_run",
}
PROGRESS_PREFIX = "@parammix-progress "  # rank 0, stdout: {done, total, message}
ERROR_PREFIX = "@parammix-error "  # any rank, stderr: {rank, error}, before it fails
STORE_OPTIONS_ENV = "PARAMMIX_STORE_OPTIONS"
STDERR_TAIL = 20  # lines of the launcher's stderr quoted in a LaunchError

log = logging.getLogger(__name__)
# Every launch uses local ranks 0..N-1 (GPUs cuda:0..N-1): the flow's task threads take turns.
_ONE_LAUNCH_AT_A_TIME = threading.Lock()


class LaunchError(RuntimeError):
    """A launched stage failed; names the stage, exit code, ranks' errors and stderr's end."""


def launched() -> bool:
    """Inside processes a launcher started (WORLD_SIZE > 1): train here, never launch again.

    A run without a launcher sets WORLD_SIZE=1 for DeepSpeed (a group of one), which is not
    launched.
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def holding(folder: Path) -> AbstractContextManager:
    """The lock on a training's work folder (`one_at_a_time`), except in a launched rank: its
    parent took the lock before launching it."""
    return nullcontext() if launched() else one_at_a_time(folder)


def is_writer() -> bool:
    """Rank 0, or no launcher: the one process that saves and publishes a stage's artifact."""
    return int(os.environ.get("RANK", "0")) == 0


def should_launch(exp: Experiment) -> bool:
    return exp.training.processes > 1 and not launched()


def launch(
    stage: str,
    exp: Experiment,
    store: Store,
    ref: ArtifactRef,
    *args: Any,
    progress: Progress | None = None,
) -> ArtifactRef:
    """Run `stage(exp, store, *args, progress)` on training.processes processes; wait; check
    that rank 0 published `ref`, and return it."""
    n = exp.training.processes
    device = resolve_device(exp.runtime.device)
    if device.type == "cuda" and n > torch.cuda.device_count():
        raise ValueError(
            f"training.processes={n} but only {torch.cuda.device_count()} GPU(s) are visible "
            "(one process per GPU)"
        )
    job = {
        "stage": stage,
        "exp": exp.model_dump(mode="json"),
        "store": {
            "url": store.url,
            "verify": store.verify,
            "cache_dir": str(store.cache_dir),
            "part_size": store.part_size,
        },
        "args": [_encode(a) for a in args],
    }
    with tempfile.TemporaryDirectory(prefix="parammix-launch-") as tmp:
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(job))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            "-m",
            "parammix_core.stages.launch_rank",
            str(path),
        ]
        with one_at_a_time(store.work_dir(ref)), _ONE_LAUNCH_AT_A_TIME:
            log.info("%s: launching %d processes: %s", stage, n, " ".join(command))
            code, errors, tail = _run(command, _child_env(exp, store), stage, progress)
    if code != 0:
        raise LaunchError(
            f"{stage}: the {n} processes under torchrun exited with code {code}"
            + "".join(
                f"\n  rank {e['rank']}: {e['error']}"
                for e in sorted(errors, key=lambda e: e["rank"])
            )
            + "\nlast lines of stderr:\n"
            + "\n".join(tail)
        )
    if not store.exists(ref):
        raise LaunchError(
            f"{stage}: the processes exited cleanly but {ref.path} is not in the store"
        )
    return ref


def _encode(arg: Any) -> dict[str, Any]:
    if isinstance(arg, ArtifactRef):
        return {"ref": arg.model_dump(mode="json")}
    if isinstance(arg, np.ndarray | list | tuple):  # a mixture: the same values, JSON numbers
        return {"value": np.asarray(arg).tolist()}
    return {"value": arg}


def _decode(arg: dict[str, Any]) -> Any:
    return ArtifactRef.model_validate(arg["ref"]) if "ref" in arg else arg["value"]


def _child_env(exp: Experiment, store: Store) -> dict[str, str]:
    # this process may be a DeepSpeed group of one: torchrun sets the launcher variables anew
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env.setdefault("OMP_NUM_THREADS", str(exp.runtime.torch_threads))
    env["PYTHONUNBUFFERED"] = "1"
    env[STORE_OPTIONS_ENV] = json.dumps(store.fs.storage_options)
    return env


def _run(
    command: list[str], env: dict[str, str], stage: str, progress: Progress | None
) -> tuple[int, list[dict[str, Any]], list[str]]:
    """Run the launcher: progress lines to `progress`, other lines to the log; returns the exit
    code, the ranks' errors and the last lines of stderr. The launcher (and so its workers) is
    terminated when this process stops waiting for an error of its own."""
    errors: list[dict[str, Any]] = []
    tail: deque[str] = deque(maxlen=STDERR_TAIL)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",  # a stray byte must not stop the reading: the error is in there
        env=env,
        bufsize=1,
    )

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            if line.startswith(ERROR_PREFIX):
                try:
                    errors.append(json.loads(line.removeprefix(ERROR_PREFIX)))
                    continue
                except json.JSONDecodeError:  # ranks' lines mixed: keep it as text
                    pass
            tail.append(line)
            log.info("%s: %s", stage, line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if not line.startswith(PROGRESS_PREFIX):
                log.info("%s: %s", stage, line)
            elif progress is not None:
                p = json.loads(line.removeprefix(PROGRESS_PREFIX))
                progress(p["done"], p["total"], p["message"])
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()  # torchrun passes it on to the workers
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join()
    return code, errors, list(tail)


def _print_progress(done: int, total: int, message: str) -> None:
    line = json.dumps({"done": done, "total": total, "message": message})
    print(PROGRESS_PREFIX + line, flush=True)


def main(args: list[str]) -> None:
    """One rank of a launched stage (`launch_rank`); `launch` writes its job file."""
    if len(args) != 1 or not launched():
        raise SystemExit(
            "usage: python -m torch.distributed.run --standalone --nproc_per_node=N "
            "-m parammix_core.stages.launch_rank JOB.json  (JOB.json written by "
            "parammix_core.stages.launch.launch)"
        )
    job = json.loads(Path(args[0]).read_text())
    exp = Experiment.model_validate(job["exp"])
    torch.set_num_threads(exp.runtime.torch_threads)
    if resolve_device(exp.runtime.device).type == "cuda":
        # "cuda" (and "auto") now mean this rank's GPU, for loading, training and evaluation
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    spec = job["store"]
    store = Store(
        spec["url"],
        json.loads(os.environ.get(STORE_OPTIONS_ENV, "{}")),
        spec["verify"],
        cache_dir=Path(spec["cache_dir"]),
        part_size=spec["part_size"],
    )
    module, name = STAGES[job["stage"]].split(":")
    stage = getattr(importlib.import_module(module), name)
    progress = _print_progress if is_writer() else None
    try:
        stage(exp, store, *[_decode(a) for a in job["args"]], progress=progress)
    except Exception as err:
        error = {"rank": int(os.environ["RANK"]), "error": f"{type(err).__name__}: {err}"}
        print(ERROR_PREFIX + json.dumps(error), file=sys.stderr, flush=True)
        raise
