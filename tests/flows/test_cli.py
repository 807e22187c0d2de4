import os
import subprocess
import sys
from pathlib import Path

import yaml

from flows.cli import main
from parammix_core.config import Experiment, load_experiment

ROOT = Path(__file__).resolve().parents[2]


def test_show_config_prints_the_embedded_default(capsys):
    assert main(["show-config"]) == 0
    assert Experiment.model_validate(yaml.safe_load(capsys.readouterr().out)) == Experiment()


def test_show_config_applies_overrides(capsys):
    argv = ["show-config", "--config", str(ROOT / "configs/micro.yaml")]
    assert (
        main([*argv, "--set", "training.expert.steps=7", "--set", "data.domains.1.name=chat"]) == 0
    )
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["training"]["expert"]["steps"] == 7
    assert shown["data"]["domains"][1]["name"] == "chat"
    assert shown["name"] == load_experiment(ROOT / "configs/micro.yaml").name


def test_validate_config_accepts_shipped_configs(capsys):
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert main(["validate-config", str(path)]) == 0
        assert "valid" in capsys.readouterr().out


def test_validate_config_names_the_bad_field(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  expert:\n    steps: 0\n    lr: -1\nsearch: {top_kk: 3}\n")
    assert main(["validate-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 3 invalid field(s)" in err
    assert "training.expert.steps: Input should be greater than 0 (got 0)" in err
    assert "training.expert.lr: Input should be greater than 0 (got -1)" in err
    assert "search.top_kk: Extra inputs are not permitted" in err


def test_bad_override_is_a_config_error(capsys):
    assert main(["show-config", "--set", "training.expert.steps=-3"]) == 2
    assert "training.expert.steps: Input should be greater than 0" in capsys.readouterr().err
    assert main(["show-config", "--set", "nonsense"]) == 2
    assert "expected dotted.path=value" in capsys.readouterr().err


def test_importing_the_cli_loads_no_heavy_library():
    """`parammix --help` and `parammix import` start in well under a second only if the CLI
    module leaves torch, transformers, LightGBM, Prefect and pandas to the commands that use
    them; a fresh interpreter shows what importing it really loads."""
    heavy = ["torch", "transformers", "lightgbm", "prefect", "pandas"]
    code = f"import sys, flows.cli; print([m for m in {heavy!r} if m in sys.modules])"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
