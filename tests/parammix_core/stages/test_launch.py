"""Training stages on several processes: with training.processes > 1 a stage launches itself
under torchrun (here two CPU processes over gloo) and only rank 0 publishes."""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from parammix_core import stages
from parammix_core.config import ConfigError, Experiment, load_experiment, parse_experiment
from parammix_core.stages import launch
from parammix_core.stages.launch import ERROR_PREFIX, LaunchError
from parammix_core.store import ArtifactRef
from tests.parammix_core.test_stages import refs

ROOT = Path(__file__).resolve().parents[3]
EXPERT_STEPS = 6


def tiny(store: Path, **training) -> Experiment:
    """configs/micro.yaml, DeepSpeed ZeRO-2 on the CPU, a few steps of base and expert."""
    data = load_experiment(ROOT / "configs" / "micro.yaml").model_dump(mode="json")
    data["training"]["base"].update(steps=4, warmup_steps=1, checkpoint_every=2)
    data["training"]["expert"].update(steps=EXPERT_STEPS, warmup_steps=1, checkpoint_every=3)
    data["training"].update(engine="deepspeed", deepspeed={"zero_stage": 2}, **training)
    data["store"]["url"] = str(store)
    data["runtime"]["device"] = "cpu"
    return parse_experiment(data)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A store holding the data and a base (trained in this process): copied once per run."""
    pytest.importorskip("deepspeed")
    root = tmp_path_factory.mktemp("store")
    exp = tiny(root)
    store = stages.open_store(exp)
    data = stages.prepare_domains(exp, store)
    return root, data, stages.build_base(exp, store, data)


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """The expert trained in this process (processes: 1): what every launch must reproduce."""
    root, data, base = prepared
    exp = tiny(tmp_path_factory.mktemp("one"))
    shutil.copytree(root, exp.store.url, dirs_exist_ok=True)
    store = stages.open_store(exp)
    ref = stages.train_expert(exp, store, "math", data, base)
    return ref, store.load_tensors(ref, "model.safetensors"), store.manifest(ref)["info"]


def assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-5, rtol=0, msg=name)


@pytest.mark.slow
def test_expert_on_two_processes_equals_one(prepared, reference, tmp_path):
    root, data, base = prepared
    ref_one, weights_one, info_one = reference
    shutil.copytree(root, tmp_path / "store")
    exp = tiny(tmp_path / "store", processes=2)
    store = stages.open_store(exp)
    lines = []
    ref = stages.train_expert(exp, store, "math", data, base, lambda *line: lines.append(line))
    assert ref == ref_one  # processes is not in the key: the same run
    weights = store.load_tensors(ref, "model.safetensors")
    assert_same_weights(weights, weights_one)
    base_weights = store.load_tensors(base, "model.safetensors")
    assert not torch.equal(weights["lm_head.weight"], base_weights["lm_head.weight"])  # trained
    info = store.manifest(ref)["info"]
    assert info["final_loss"] == pytest.approx(info_one["final_loss"], rel=1e-5)
    # rank 0's progress reached the caller, one line per step
    assert [(done, total) for done, total, _ in lines] == [
        (s, EXPERT_STEPS) for s in range(1, EXPERT_STEPS + 1)
    ]
    assert lines[-1][2].startswith(f"math: step {EXPERT_STEPS}/{EXPERT_STEPS} loss ")
    # published: a second call returns the ref without launching
    lines.clear()
    assert stages.train_expert(exp, store, "math", data, base, lambda *line: lines.append(line))
    assert lines == []


@pytest.mark.slow
def test_launch_resumes_a_run_that_crashed_in_one_process(prepared, reference, tmp_path):
    root, data, base = prepared
    _, weights_one, _ = reference
    shutil.copytree(root, tmp_path / "store")
    one, two = tiny(tmp_path / "store"), tiny(tmp_path / "store", processes=2)
    store = stages.open_store(one)

    def crash_at_4(done: int, total: int, message: str) -> None:
        if done == 4:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        stages.train_expert(one, store, "math", data, base, crash_at_4)
    lines = []
    ref = stages.train_expert(two, store, "math", data, base, lambda *line: lines.append(line))
    assert [done for done, _, _ in lines] == [4, 5, 6]  # from the step-3 checkpoint
    assert_same_weights(store.load_tensors(ref, "model.safetensors"), weights_one)


@pytest.mark.slow
def test_failing_processes_name_the_stage_and_publish_nothing(prepared, tmp_path):
    root, _, base = prepared
    shutil.copytree(root, tmp_path / "store")
    exp = tiny(tmp_path / "store", processes=2)
    store = stages.open_store(exp)
    missing = ArtifactRef.for_spec("data", "domains", {"not": "prepared"})
    with pytest.raises(LaunchError) as info:
        stages.train_expert(exp, store, "sft", missing, base)
    message = str(info.value)
    assert message.startswith("train_expert: the 2 processes under torchrun exited with code 1")
    # the ranks' own errors, which torchrun's summary at the end of stderr does not show; the
    # first rank to fail makes torchrun stop the other, which under load may not get as far
    ranks = re.findall(r"\n  rank (\d): (.*)", message)
    assert ranks and {r for r, _ in ranks} <= {"0", "1"}, message
    assert all(e.startswith(f"StoreError: {missing.path}: not in the store") for _, e in ranks)
    assert "\nlast lines of stderr:\n" in message
    assert not store.exists(stages.expert_ref(exp, "sft", missing, base))
    assert [a["stage"] for a in store.artifacts()].count("expert") == 0


def test_a_mixed_up_error_line_or_a_stray_byte_loses_no_stderr():
    """Ranks share one stderr: a rank's error line cut into by another, or a byte that is not
    UTF-8, stays in the quoted stderr instead of stopping the reading of everything after."""
    script = (
        "import sys\n"
        f'print({ERROR_PREFIX!r} + \'{{"rank": 0, "err\', file=sys.stderr, flush=True)\n'
        "sys.stderr.buffer.write(b'bad byte \\xff here\\n'); sys.stderr.flush()\n"
        f'print({ERROR_PREFIX!r} + \'{{"rank": 1, "error": "StoreError: x"}}\', '
        "file=sys.stderr, flush=True)\n"
        "print('Traceback: the end', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    code, errors, tail = launch._run([sys.executable, "-c", script], dict(os.environ), "t", None)
    assert code == 1
    assert errors == [{"rank": 1, "error": "StoreError: x"}]
    assert tail == [ERROR_PREFIX + '{"rank": 0, "err', "bad byte \ufffd here", "Traceback: the end"]


def refused(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(data, "exp.yaml")
    return str(info.value)


def test_processes_need_deepspeed_and_divisible_batches():
    message = refused({"training": {"processes": 2}})
    assert "training: training.processes 2 needs training.engine 'deepspeed'" in message
    message = refused({"training": {"engine": "deepspeed", "processes": 3}})
    assert "training.expert.batch_size=16 is not divisible by training.processes=3" in message
    final = {"train": {"batch_size": 6}}
    message = refused({"training": {"engine": "deepspeed", "processes": 4}, "final": final})
    assert "final.train.batch_size=6 is not divisible by training.processes=4" in message
    assert "training.processes: Input should be greater than 0" in refused(
        {"training": {"processes": 0}}
    )
    assert parse_experiment({"training": {"engine": "deepspeed", "processes": 8}})


def test_processes_are_not_in_artifact_keys():
    one = parse_experiment({"training": {"engine": "deepspeed"}})
    eight = parse_experiment({"training": {"engine": "deepspeed", "processes": 8}})
    assert refs(eight) == refs(one)
    assert refs(Experiment()) != refs(one)  # the engine is in them
