"""`parammix_core.export`: a mixture's merged model as a checkpoint, from a store's experts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from transformers import AutoTokenizer

from parammix_core.config import Experiment, apply_overrides
from parammix_core.data import load_prepared
from parammix_core.export import ExportError, check_out, export_model, parse_mixture
from parammix_core.stages.published import NotPublished, published_models
from parammix_core.store import Store
from tests.parammix_core.bad_input import build_pipeline_store, open_store, snapshot
from tests.parammix_core.merged import assert_is_merge, reference

TEXT = "alpha beta gamma doc7 zeta, theta!"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Experiment, Store]:
    """Prepared data, a pico base and the experts of domains a and b."""
    root = tmp_path_factory.mktemp("pipeline")
    exp, _ = build_pipeline_store(root)
    return exp, open_store(exp, root / "cache")


def test_a_given_mixture_is_exported_as_the_float64_merge(pipeline, tmp_path: Path):
    exp, store = pipeline
    alpha = parse_mixture("b=0.7, a=0.3", exp.domains)
    np.testing.assert_array_equal(alpha, [0.3, 0.7])
    out = tmp_path / "export"
    done = export_model(exp, store, out, alpha)
    assert done.path == out and done.mixture == {"a": 0.3, "b": 0.7}
    # experts with replay 0.1 of the uniform mix: merged at w = (alpha - 0.1 / 2) / (1 - 0.1)
    assert exp.training.replay == 0.1
    weights = [0.25 / 0.9, 0.65 / 0.9]
    want = reference(store, exp, weights)
    assert_is_merge(out, want)
    # the merge moved away from the base and from each expert: the comparison has teeth
    models = published_models(exp, store)
    for ref in (models.base, *models.experts.values()):
        other = store.load_tensors(ref, "model.safetensors")
        assert max((other[n].double() - want[n]).abs().max().item() for n in want) > 1e-5

    prepared = load_prepared(store.local_dir(models.data))
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok(TEXT)["input_ids"]
    assert ids == prepared.tokenizer(TEXT)["input_ids"]
    assert tok.decode(ids) == TEXT
    assert tok.eos_token == prepared.tokenizer.eos_token

    card = (out / "README.md").read_text()
    assert "merged model of the mixture a=0.3, b=0.7" in card
    for ref in (models.base, models.data, *models.experts.values()):
        assert ref.key in card
    assert "| a | 0.3 | 0.277778 |" in card and "| b | 0.7 | 0.722222 |" in card
    assert "replay of 0.1 of the uniform mix" in card

    config = yaml.safe_load((out / "mergekit.yaml").read_text())
    assert config["merge_method"] == "task_arithmetic"
    assert config["parameters"] == {"normalize": False}
    assert config["dtype"] == "float32"
    assert Path(config["base_model"]) == store.local_dir(models.base)
    listed = [(Path(m["model"]), m["parameters"]["weight"]) for m in config["models"]]
    assert [path for path, _ in listed] == [
        store.local_dir(models.experts["a"]),
        store.local_dir(models.experts["b"]),
    ]
    np.testing.assert_allclose([w for _, w in listed], weights, rtol=0, atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary left


def test_an_experts_mixture_is_the_expert_and_an_empty_folder_is_filled(pipeline, tmp_path):
    exp, store = pipeline
    out = tmp_path / "empty"
    out.mkdir()
    # expert a trained on a with a replay of 0.1 of the uniform mix: a=0.95, b=0.05
    export_model(exp, store, out, parse_mixture("a=0.95,b=0.05", exp.domains))
    expert = store.load_tensors(published_models(exp, store).experts["a"], "model.safetensors")
    assert_is_merge(out, {n: t.double() for n, t in expert.items()})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a=0.5,b=0.4", "sum to 0.9, not 1"),
        ("a=0.5,c=0.5", "unknown domain(s) ['c']"),
        ("a=0.5,a=0.5", "domain 'a' is given twice"),
        ("a=half,b=0.5", "'half' is not a number"),
        ("a:1", "'a:1' is not DOMAIN=WEIGHT"),
        ("a=1.5,b=-0.5", "negative for domain(s) ['b']"),
    ],
)
def test_a_bad_mixture_is_named(text: str, says: str):
    with pytest.raises(ExportError, match="--mixture") as caught:
        parse_mixture(text, ["a", "b"])
    assert says in str(caught.value)


def test_a_non_empty_folder_is_never_overwritten(pipeline, tmp_path: Path):
    exp, store = pipeline
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match=r"--out .*taken: is not empty; refusing"):
        export_model(exp, store, out, parse_mixture("a=1", exp.domains))
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_experts_not_in_the_store_are_never_trained(pipeline, tmp_path: Path):
    exp, store = pipeline
    other = apply_overrides(exp, ["training.expert.steps=3"], "test")  # other experts' keys
    before = snapshot(Path(exp.store.url))
    with pytest.raises(NotPublished, match=r"the expert of domain 'a' .* run `parammix run`"):
        export_model(other, store, tmp_path / "out", parse_mixture("a=1", exp.domains))
    assert not (tmp_path / "out").exists()
    assert snapshot(Path(exp.store.url)) == before  # nothing trained, nothing written


def test_the_chosen_mixture_needs_a_finished_run(pipeline, tmp_path: Path):
    exp, store = pipeline  # experts, but no search
    with pytest.raises(NotPublished, match=r"the interference probe .* run `parammix run`"):
        export_model(exp, store, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_export_never_goes_into_the_current_folder_or_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = tmp_path / "store"
    (store / "expert").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "store")
    with pytest.raises(ExportError, match=r"--out \.: the current folder; give a new folder"):
        check_out(Path("."), None)
    with pytest.raises(ExportError, match=r"--out merged: inside the store \(.*store\)"):
        check_out(Path("merged"), store)
    with pytest.raises(ExportError, match=r"--out .*expert: inside the store"):
        check_out(store / "expert", store)
    check_out(tmp_path / "merged", store)  # a new folder beside the store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_an_export_makes_no_missing_parent_folders(tmp_path: Path):
    """`export --out a/b/c` made a/ and b/ (and left them after Ctrl-C) where `import --out`
    refuses a folder that is not there (audit 38)."""
    with pytest.raises(ExportError, match=rf"--out .*: the folder {tmp_path}/a/b does not exist$"):
        check_out(tmp_path / "a" / "b" / "c")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ExportError, match=rf"--out .*: {tmp_path}/f is not a folder$"):
        check_out(tmp_path / "f" / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
