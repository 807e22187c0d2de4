from pathlib import Path

from parammix_core import stages
from parammix_core.config import Experiment
from tasks.common import store_key


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
