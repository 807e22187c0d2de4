"""The README's example config is a valid experiment (the README stays true)."""

import re
from pathlib import Path

import yaml

from parammix_core.config import parse_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_config_loads():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks, "no yaml example in README.md"
    for block in blocks:
        exp = parse_experiment(yaml.safe_load(block), "README.md example")
        assert exp.model.checkpoint is not None
        assert exp.store.url.startswith("s3://")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^pip install torch==2\.13\.0 -e \"\.\[dev[^\n]*pytest$", readme, re.M)
    assert command, "no test command in README.md"
    assert command.group(0) in (ROOT / ".ci" / "run").read_text()
