"""`parammix export` on the store of a real `param_mix` run: the chosen mixture as a checkpoint,
and every refusal as one `error:` line with exit code 2."""

from __future__ import annotations

import errno
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from transformers import AutoTokenizer

from flows.cli import main
from flows.param_mix import param_mix
from parammix_core import export, simplex, stages
from parammix_core.config import Experiment
from parammix_core.stages.published import published_choice, published_models
from parammix_core.store import ArtifactRef
from tests.parammix_core.bad_input import corpus_of, experiment, snapshot
from tests.parammix_core.merged import assert_is_merge, reference

FRAME = re.compile(r'^\s*File ".*", line \d+', re.M)


def searched(root: Path, **overrides) -> tuple[Experiment, dict[str, ArtifactRef]]:
    """A pico experiment run by the flow up to the chosen mixture."""
    exp = experiment(
        corpus_of(root),
        root / "store",
        data__block_size=128,  # room for the built-in benchmarks' prompts
        evaluation__builtin_docs_per_task=8,
        validation__enabled=False,
        final__enabled=False,
        **overrides,
    )
    return exp, param_mix(exp)


@pytest.fixture(scope="module")
def run(prefect_api, tmp_path_factory: pytest.TempPathFactory):
    """A run of the random search, and its config file."""
    root = tmp_path_factory.mktemp("run")
    exp, refs = searched(root)
    config = root / "config.yaml"
    config.write_text(exp.to_yaml())
    return exp, refs, str(config)


@pytest.mark.slow
def test_the_chosen_mixture_of_a_run_is_exported(run, tmp_path: Path, capfd):
    exp, refs, config = run
    store = stages.open_store(exp)
    assert published_choice(exp, store, published_models(exp, store)) == refs["choice"]
    chosen = stages.load_choice(store, refs["choice"]).alpha
    alpha = simplex.from_mapping(chosen, exp.domains)
    assert 0 < alpha[0] < 1  # a real mixture, not an expert

    out = tmp_path / "chosen"
    assert main(["export", "--config", config, "--chosen", "--out", str(out)]) == 0
    said = capfd.readouterr().out
    assert f"wrote {out}" in said and refs["choice"].key in said

    replay = exp.training.replay  # the experts': the mixture is merged at (alpha - r/K) / (1 - r)
    assert replay > 0
    weights = (alpha - replay / len(alpha)) / (1 - replay)
    assert_is_merge(out, reference(store, exp, weights))
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("gamma delta doc3")["input_ids"]) == "gamma delta doc3"
    card = (out / "README.md").read_text()
    named = ", ".join(f"{d}={w:.4g}" for d, w in chosen.items())
    assert f"merged model of the mixture {named}" in card
    assert refs["choice"].key in card
    listed = yaml.safe_load((out / "mergekit.yaml").read_text())["models"]
    np.testing.assert_allclose([m["parameters"]["weight"] for m in listed], weights, atol=1e-12)


@pytest.mark.slow
def test_an_adaptive_search_is_walked_as_the_flow_ran_it(prefect_api, tmp_path: Path):
    """Each round's proposals depend on the scores of the rounds before: the walk reads them."""
    exp, refs = searched(tmp_path, search__strategy="surrogate", search__batch_size=2)
    assert stages.n_rounds(exp) == 2
    store = stages.open_store(exp)
    assert published_choice(exp, store, published_models(exp, store)) == refs["choice"]


RUN_FIRST = "run `parammix run` with this config first"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--mixture", "a=0.5,b=0.6"], ("--mixture 'a=0.5,b=0.6': mixture weights sum to 1.1",)),
        (["--mixture", "a=0.5,math=0.5"], ("unknown domain(s) ['math']; domains are ['a', 'b']",)),
        (
            ["--mixture", "a=1", "--set", "training.expert.steps=3"],
            ("the expert of domain 'a' (expert/a-", RUN_FIRST),
        ),
        (["--chosen", "--set", "search.n_mixtures=5"], ("proposals of search round 0", RUN_FIRST)),
    ],
)
def test_a_refused_export_is_one_error_line(run, tmp_path: Path, capfd, argv, says):
    exp, _, config = run
    error = refused(exp, tmp_path, capfd, ["--config", config, *argv])
    for want in says:
        assert want in error
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_non_empty_folder_is_refused(run, tmp_path: Path, capfd):
    exp, _, config = run
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    error = refused(exp, tmp_path, capfd, ["--config", config, "--chosen"])
    assert f"--out {tmp_path / 'out'}: is not empty; refusing to overwrite it" in error


@pytest.mark.slow
def test_sigterm_mid_export_leaves_nothing_beside_out(run, tmp_path: Path, capfd, monkeypatch):
    """A release check's SIGTERM left `.out.export-<hex>/` with the merged weights: the
    command now unwinds, and the half-built folder goes with it."""
    exp, _, config = run
    build = export._build

    def killed_midway(tmp: Path, *args) -> None:
        build(tmp, *args)
        assert (tmp / "model.safetensors").is_file()
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the main thread

    monkeypatch.setattr(export, "_build", killed_midway)
    before = snapshot(Path(exp.store.url))
    code = main(["export", "--config", config, "--chosen", "--out", str(tmp_path / "out")])
    text = "".join(capfd.readouterr())
    assert code == 143 and not FRAME.search(text)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert errors == ["error: export: terminated (SIGTERM); its unfinished output was removed"]
    assert list(tmp_path.iterdir()) == [] and snapshot(Path(exp.store.url)) == before


@pytest.mark.slow
def test_an_unwritable_out_is_named_not_the_temporary_folder(run, tmp_path, capfd, monkeypatch):
    """A release check's read-only --out was reported by the hidden `.out.export-<hex>` name."""
    exp, _, config = run

    def read_only(tmp: Path, *args) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp / "model.safetensors"))

    monkeypatch.setattr(export, "_build", read_only)
    error = refused(exp, tmp_path, capfd, ["--config", config, "--chosen"])
    assert error == (
        f"error: --out {tmp_path / 'out'}: cannot write there ({os.strerror(errno.EROFS)})"
    )


def refused(exp: Experiment, tmp: Path, capfd, argv: list[str]) -> str:
    """`parammix export ARGV --out TMP/out` fails by the contract and changes nothing; its
    error line."""
    before = snapshot(Path(exp.store.url)), snapshot(tmp)
    code = main(["export", *argv, "--out", str(tmp / "out")])
    text = "".join(capfd.readouterr())
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert "Traceback" not in text and not FRAME.search(text), text
    assert (snapshot(Path(exp.store.url)), snapshot(tmp)) == before
    return errors[0]
