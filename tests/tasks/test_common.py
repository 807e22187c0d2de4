import types
import zlib
from pathlib import Path

import pytest
from prefect import flow

from parammix_core import stages
from parammix_core.config import Experiment
from parammix_core.data import DataError
from parammix_core.failure import STAGE, describe
from parammix_core.store import StoreError, StoreUnavailable
from tasks.common import (
    InjectedFault,
    StageProgress,
    artifact_key,
    is_transient,
    stage_task,
    store_key,
)


def with_store(path: Path) -> Experiment:
    exp = Experiment()
    return exp.model_copy(update={"store": exp.store.model_copy(update={"url": str(path)})})


def test_cache_key_is_store_identity_plus_store_address(tmp_path: Path):
    exp = with_store(tmp_path / "a")
    data = stages.data_ref(exp)
    key = store_key(stages.base_ref)(None, {"exp": exp, "data": data})
    store_id = stages.open_store(exp).id
    assert key == f"{store_id}/{stages.base_ref(exp, data).path}"


def test_cache_key_differs_between_stores_not_between_runs(tmp_path: Path):
    a, b = with_store(tmp_path / "a"), with_store(tmp_path / "b")
    key = store_key(stages.data_ref)
    assert key(None, {"exp": a}) == key(None, {"exp": a})
    assert key(None, {"exp": a}) != key(None, {"exp": b})
    assert key(None, {"exp": a}).split("/", 1)[1] == key(None, {"exp": b}).split("/", 1)[1]


def test_a_stage_that_cannot_name_its_output_has_no_cache_key(tmp_path: Path):
    """The stage then fails with the error named; a key that raised was logged by Prefect as
    "Error encountered when computing cache key" with a second traceback (audit 39)."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")  # a folder that is no store
    assert store_key(stages.data_ref)(None, {"exp": with_store(tmp_path / "mine")}) is None
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def _state(exc: BaseException):
    return types.SimpleNamespace(data=exc)


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (StoreUnavailable("store s3://b: cannot reach the endpoint"), True),
        (ConnectionResetError("peer reset"), True),
        (TimeoutError("read timed out"), True),
        (InjectedFault("drill"), True),
        (StoreError("expert/x: sha256 does not match the manifest"), False),
        (DataError("domain 'b': c.jsonl.gz: damaged compressed data"), False),
        (zlib.error("Error -3 while decompressing data"), False),
        (OSError(36, "File name too long", "/store/expert/" + "d" * 300), False),
        (FileNotFoundError(2, "No such file or directory", "/data/x.jsonl"), False),
        (MemoryError(), False),
        (RuntimeError("a bug"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_only_what_may_pass_is_retried(exc, retried):
    assert is_transient(None, None, _state(exc)) is retried


def test_a_failing_stage_names_itself_on_its_exception(prefect_api, tmp_path: Path):
    @stage_task(name="boom", task_run_name="boom[{what}]")
    def boom(what: str) -> None:
        raise DataError(f"{what}: bad")

    @flow
    def run() -> None:
        boom("corpus")

    with pytest.raises(DataError) as info:
        run()
    assert getattr(info.value, STAGE) == "boom[corpus]"
    assert describe(info.value) == "boom[corpus]: corpus: bad"


def test_verify_cached_turns_off_cache_hits(tmp_path: Path):
    exp = with_store(tmp_path / "a")
    key = store_key(stages.data_ref)
    assert key(None, {"exp": exp}) is not None
    exp = exp.model_copy(update={"runtime": exp.runtime.model_copy(update={"verify_cached": True})})
    assert key(None, {"exp": exp}) is None  # the stage runs and re-hashes what it reuses
    assert stages.open_store(exp).lookup == "sha256"


def test_a_stages_reports_are_all_logged_and_its_steps_by_tenths(prefect_api, caplog):
    """The data stage reports each domain's kept documents (total 0): every one is logged; steps
    are logged once per tenth. Before, only the first of the domains' reports was shown."""

    @flow
    def run() -> None:
        progress = StageProgress(Experiment(), "stage", every_seconds=0.0)
        for name in ("math", "code", "web"):
            progress(0, 0, f"{name}: kept")
        for step in range(1, 21):
            progress(step, 20, f"step {step}")
        progress.close()

    with caplog.at_level("INFO"):
        run()
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("prefect.flow_runs")]
    assert [m for m in logged if "kept" in m] == ["math: kept", "code: kept", "web: kept"]
    tenths = ["step 1", *(f"step {2 * i}" for i in range(1, 11))]  # the first, then each tenth
    assert [m for m in logged if m.startswith("step")] == tenths


def test_artifact_keys_carry_the_experiment_name_in_prefects_alphabet():
    """Prefect keys allow lowercase letters, digits and dashes; one history per experiment."""
    exp = Experiment()
    assert artifact_key(exp, "report") == "embedded-default-report"
    named = exp.model_copy(update={"name": "Q3 Mix_Sweep v2!"})
    assert artifact_key(named, "evaluated-batch-0") == "q3-mix-sweep-v2-evaluated-batch-0"
