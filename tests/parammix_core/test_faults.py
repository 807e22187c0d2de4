"""Crashes: SIGKILL in the middle of expert training and in the middle of a store write.

The killed work runs in a child process (a real crash: no cleanup, no exception handlers);
the rerun must resume from the last checkpoint and end bit-identical to an uninterrupted
run, and no torn artifact may ever be listed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest
import torch

from parammix_core import stages
from parammix_core.config import Experiment, load_experiment
from parammix_core.store import ArtifactRef, Store

ROOT = Path(__file__).resolve().parents[2]

TRAIN_CHILD = """
import json, sys
from parammix_core import stages
from parammix_core.config import parse_experiment
exp = parse_experiment(json.loads(sys.argv[1]))
store = stages.open_store(exp)
data = stages.prepare_domains(exp, store)
base = stages.build_base(exp, store, data)
stages.train_expert(exp, store, "math", data, base)
"""

PUBLISH_CHILD = """
import json, sys, time
from pathlib import Path
from parammix_core.store import ArtifactRef, Store
url, options, src, paced = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
if paced == "paced":  # tell the parent when the first file is up; pace the rest, so the kill
    put = Store._put  # lands mid-write on any machine, however fast its disk
    def paced_put(self, local, dest):
        if self.files_put:
            time.sleep(0.5)
        put(self, local, dest)
        self.files_put += 1
        print("put", flush=True)
    Store._put, Store.files_put = paced_put, 0
store = Store(url, options, cache_dir=Path(src).parent / "cache", part_size=5 << 20)
store.publish(ArtifactRef.for_spec("t", "big", {"v": 1}), Path(src))
"""


def _experiment(store: Path) -> Experiment:
    exp = load_experiment(ROOT / "configs" / "micro.yaml")
    expert = exp.training.expert.model_copy(update={"steps": 60, "checkpoint_every": 5})
    return exp.model_copy(
        update={
            "store": exp.store.model_copy(update={"url": str(store)}),
            "training": exp.training.model_copy(update={"expert": expert}),
            "runtime": exp.runtime.model_copy(update={"device": "cpu"}),
        }
    )


def _child(code: str, *args: str, stdout: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT, stdout=stdout)


def _checkpoints(work: Path) -> list[int]:
    return sorted(int(d.name[5:]) for d in work.glob("step-*") if (d / "state.json").exists())


@pytest.mark.slow
def test_sigkill_during_expert_training_resumes_bit_identical(tmp_path: Path):
    exp = _experiment(tmp_path / "store")
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    base = stages.build_base(exp, store, data)
    ref = stages.expert_ref(exp, "math", data, base)
    work = store.work_dir(ref)
    config = json.dumps(exp.model_dump(mode="json"))

    rng = random.Random(0)
    target = rng.choice([10, 15, 20, 25])  # kill a random moment after this checkpoint
    child = _child(TRAIN_CHILD, config)
    deadline = time.monotonic() + 300
    while not any(s >= target for s in _checkpoints(work)):
        assert child.poll() is None, "training ended before the crash could be injected"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.2))
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not store.exists(ref), "killed mid-training, yet the expert was published"
    assert ref.key not in {m["key"] for m in store.artifacts()}  # nothing torn is listed
    resumed_from = max(_checkpoints(work))
    assert target <= resumed_from < exp.training.expert.steps

    rerun = _child(TRAIN_CHILD, config)
    assert rerun.wait(timeout=300) == 0
    assert store.exists(ref)

    clean_exp = _experiment(tmp_path / "clean")
    clean = stages.open_store(clean_exp)
    clean_data = stages.prepare_domains(clean_exp, clean)
    clean_base = stages.build_base(clean_exp, clean, clean_data)
    clean_ref = stages.train_expert(clean_exp, clean, "math", clean_data, clean_base)
    assert clean_ref == ref  # same config, same content address
    crashed = store.load_tensors(ref, "model.safetensors")
    uninterrupted = clean.load_tensors(clean_ref, "model.safetensors")
    assert crashed.keys() == uninterrupted.keys()
    for name, tensor in crashed.items():
        assert torch.equal(tensor, uninterrupted[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sigkill_during_a_store_write_leaves_nothing_listed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
):
    if backend == "local":
        url, options = str(tmp_path / "store"), {}
    else:
        server = request.getfixturevalue("s3_server")
        url, options = f"s3://{server.bucket('kill')}/store", server.storage_options()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):  # 4 x 16 MiB: several multipart uploads on S3
        (src / f"shard-{i}.safetensors").write_bytes(os.urandom(16 << 20))
    ref = ArtifactRef.for_spec("t", "big", {"v": 1})
    store = Store(url, options, cache_dir=tmp_path / "cache")

    child = _child(PUBLISH_CHILD, url, json.dumps(options), str(src), "paced", stdout=PIPE)
    assert child.stdout.readline() == b"put\n"  # one of four files written
    time.sleep(random.Random(1).uniform(0.0, 0.8))  # in the pause or the next file's upload
    assert child.poll() is None, "the write finished before the crash could be injected"
    child.send_signal(signal.SIGKILL)
    child.wait()
    store.fs.invalidate_cache()
    assert not store.exists(ref)
    assert list(store.artifacts()) == []

    rerun = _child(PUBLISH_CHILD, url, json.dumps(options), str(src), "unpaced")
    assert rerun.wait(timeout=300) == 0
    store.fs.invalidate_cache()
    assert store.exists(ref)
    assert [m["key"] for m in store.artifacts()] == [ref.key]
    store.check(ref, verify="sha256")
