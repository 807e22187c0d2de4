import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.cli import main
from parammix_core.config import Experiment, load_experiment
from parammix_core.surrogate import fit_surrogates

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
    assert "search.top_kk: no such field; did you mean 'top_k'?" in err


def test_bad_override_is_a_config_error(capsys):
    assert main(["show-config", "--set", "training.expert.steps=-3"]) == 2
    assert "training.expert.steps: Input should be greater than 0" in capsys.readouterr().err
    assert main(["show-config", "--set", "nonsense"]) == 2
    assert "expected dotted.path=value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "error: parammix: the following arguments are required: COMMAND"),
        (["frobnicate"], "error: parammix: argument COMMAND: invalid choice: 'frobnicate'"),
        # argparse's own names (store_action) were in these messages (audit 38)
        (["store"], "error: parammix store: the following arguments are required: ACTION"),
        (["store", "du"], "error: parammix store: argument ACTION: invalid choice: 'du'"),
        (["store", "gc", "--older-than", "abc"], "error: parammix store gc: argument --older-than"),
        (["export", "--out", "x"], "error: parammix export: one of the arguments --chosen"),
        (["run", "--bogus"], "error: parammix: unrecognized arguments: --bogus"),
        (
            ["surrogate", "--train", "a", "--test", "b", "--seed", "-5"],
            "error: parammix surrogate: argument --seed: '-5' is not a whole number",
        ),
        # 0 was taken: a served process that never starts a run (audit 38)
        (["serve", "--limit", "0"], "error: parammix serve: argument --limit: '0' is not a whole"),
    ],
)
def test_a_bad_command_line_is_one_error_line(argv: list[str], says: str, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), lines
    assert lines[0].endswith("--help)")


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


PAPER_RATIOS = "index,ratio_math,ratio_code\n0,0.498,0.498\n1,0.5,0.5\n2,0.7,0.302\n"
PAPER_METRICS = "index,acc\n0,0.5\n1,0.6\n2,0.55\n"


def paper_tables(tmp_path: Path) -> list[str]:
    (tmp_path / "r.csv").write_text(PAPER_RATIOS)
    (tmp_path / "m.csv").write_text(PAPER_METRICS)
    return ["import", "--ratios", str(tmp_path / "r.csv"), "--metrics", str(tmp_path / "m.csv")]


def test_import_renormalises_a_rounded_table_with_one_warning_line(tmp_path: Path, capsys):
    out = tmp_path / "rows.parquet"
    argv = [*paper_tables(tmp_path), "--id-column", "index", "--strip-prefix", "ratio_"]
    assert main([*argv, "--renormalise", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.err.splitlines() == [
        f"warning: {tmp_path / 'r.csv'}: renormalised 2 row(s); the worst summed to 0.996 (line 2)"
    ]
    assert "3 run(s), 2 domain(s): math, code" in printed.out
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600 (audit 38)
    table = pd.read_parquet(out)
    assert list(table.columns) == ["run_id", "alpha.math", "alpha.code", "acc"]
    assert table["alpha.math"].tolist() == pytest.approx([0.5, 0.5, 0.7 / 1.002])


def test_import_without_renormalise_names_every_row_off_one(tmp_path: Path, capsys):
    assert main([*paper_tables(tmp_path), "--id-column", "index"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'r.csv'}: 2 bad rows:",
        "  line 2: weights of run '0' sum to 0.996, not 1 (tolerance 0.001)",
        "  line 4: weights of run '2' sum to 1.002, not 1 (tolerance 0.001)",
    ]
    assert main([*paper_tables(tmp_path), "--id-column", "index", "--sum-tolerance", "0.004"]) == 0


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf"])
def test_a_bad_sum_tolerance_is_one_error_line(tmp_path: Path, capsys, value):
    argv = [*paper_tables(tmp_path), "--id-column", "index", "--sum-tolerance", value]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --sum-tolerance {value!r}: must be a number >= 0 (e.g. 0.001)"
    ]


def surrogate_tables(tmp_path: Path) -> tuple[Path, Path, Path]:
    """train (30 rows), test (10 rows, same scale), shifted (the test rows, 3x the score + 1)."""
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), 40)  # (40, 3)
    y = x @ np.array([1.0, 0.2, -0.5]) + 0.5 * x[:, 0] * x[:, 1]  # (40,)
    rows = pd.DataFrame({"run_id": [f"r{i}" for i in range(40)], "score": y})
    for i, d in enumerate("abc"):
        rows[f"alpha.{d}"] = x[:, i]
    paths = tmp_path / "train.parquet", tmp_path / "test.parquet", tmp_path / "shifted.parquet"
    rows.iloc[:30].to_parquet(paths[0])
    rows.iloc[30:40].to_parquet(paths[1])
    rows.iloc[30:].assign(score=lambda t: 3 * t["score"] + 1).to_parquet(paths[2])
    return paths


@pytest.mark.parametrize("folds", ["1", "0", "31"])
def test_surrogate_folds_out_of_range_is_one_error_line(tmp_path: Path, capsys, folds):
    train, test, _ = surrogate_tables(tmp_path)
    argv = ["surrogate", "--train", str(train), "--test", str(test), "--folds", folds]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --folds {folds}: must be at least 2 and at most the 30 rows of {train}"
    ]


def test_surrogate_prints_the_cross_validation_and_scores_every_test_table(tmp_path, capsys):
    train, test, shifted = surrogate_tables(tmp_path)
    argv = ["surrogate", "--train", str(train), "--test", str(test), "--test", str(shifted)]
    assert main([*argv, "--folds", "3"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0] == f"trained on 30 rows of {train}; 3-fold cross-validation:"
    table = pd.read_parquet(train)
    x, y = table[["alpha.a", "alpha.b", "alpha.c"]].to_numpy(), table["score"].to_numpy()
    cv = fit_surrogates(x, {"score": y}, 3, 0).cv["score"]
    assert lines[3].split() == [
        "score",
        *(f"{cv[k]:.3f}" for k in ("spearman", "pearson", "r2")),
        *(f"{cv[k + '_linear']:.3f}" for k in ("spearman", "pearson", "r2")),
    ]
    assert f"tested on 10 rows of {test}:" in lines
    assert f"tested on 10 rows of {shifted}:" in lines
    assert printed.err.splitlines() == [
        f"note: {shifted}: score on another scale than {train} (mean or spread): R² across "
        "scales is meaningless, only the ranking (spearman) counts"
    ]


def test_surrogate_says_when_lightgbm_fits_a_constant(tmp_path, capsys):
    """Five rows give LightGBM no split: its cross-validation printed spearman 0.000 as if it
    meant something (audit 38)."""
    train, test, _ = surrogate_tables(tmp_path)
    small = tmp_path / "small.parquet"
    pd.read_parquet(train).iloc[:5].to_parquet(small)
    assert main(["surrogate", "--train", str(small), "--test", str(test), "--folds", "2"]) == 0
    assert (
        f"note: {small}: LightGBM predicts one value for score from 5 rows (a split needs 10 or "
        "more): its scores are a constant's; read the linear baseline's"
    ) in capsys.readouterr().err.splitlines()
    assert main(["surrogate", "--train", str(train), "--test", str(test)]) == 0
    assert capsys.readouterr().err == ""  # 30 rows: a real fit, no note


def test_surrogate_json_is_one_object_with_the_cv_and_each_test_table(tmp_path, capsys):
    train, test, shifted = surrogate_tables(tmp_path)
    argv = ["surrogate", "--train", str(train), "--test", str(test), "--test", str(shifted)]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    table = pd.read_parquet(train)
    x, y = table[["alpha.a", "alpha.b", "alpha.c"]].to_numpy(), table["score"].to_numpy()
    cv = fit_surrogates(x, {"score": y}, 5, 0).cv["score"]
    assert {k: out["train"][k] for k in ("table", "rows", "folds", "seed")} == {
        "table": str(train),
        "rows": 30,
        "folds": 5,
        "seed": 0,
    }
    assert out["train"]["cv"]["score"]["lightgbm"] == pytest.approx(
        {k: cv[k] for k in ("spearman", "pearson", "r2")}
    )
    assert out["train"]["cv"]["score"]["linear"]["r2"] == pytest.approx(cv["r2_linear"])
    assert [(t["table"], t["rows"], t["scale_differs"]) for t in out["tests"]] == [
        (str(test), 10, []),
        (str(shifted), 10, ["score"]),
    ]
    same, other = (t["scores"]["score"] for t in out["tests"])
    assert same["linear"]["r2"] > 0.9  # a nearly linear target on the same scale
    for model in ("lightgbm", "linear"):  # the same runs on another scale: R² is meaningless...
        assert other[model]["r2"] < 0
        assert other[model]["spearman"] == pytest.approx(same[model]["spearman"])  # ranks hold


def test_surrogate_takes_a_test_table_with_its_domains_in_another_order(tmp_path, capsys):
    train, test, _ = surrogate_tables(tmp_path)
    reordered = tmp_path / "reordered.parquet"
    pd.read_parquet(test)[["alpha.c", "score", "alpha.a", "run_id", "alpha.b"]].to_parquet(
        reordered
    )
    argv = ["surrogate", "--train", str(train), "--test", str(test), "--test", str(reordered)]
    assert main([*argv, "--json"]) == 0
    as_is, other_order = json.loads(capsys.readouterr().out)["tests"]
    assert other_order["scores"] == as_is["scores"]
    assert as_is["scores"]["score"]["linear"]["r2"] > 0.9


def test_surrogate_names_metric_columns_that_hold_no_numbers(tmp_path, capsys):
    """A text column is never fitted in silence: left out with a note, refused when asked for."""
    train, test, _ = surrogate_tables(tmp_path)
    pd.read_parquet(train).assign(grade="A").to_parquet(train)
    text = pd.read_parquet(train)["grade"].dtype  # str in pandas 3, object before
    argv = ["surrogate", "--train", str(train), "--test", str(test), "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert list(json.loads(printed.out)["train"]["cv"]) == ["score"]
    assert printed.err.splitlines() == [
        f"note: {train}: column(s) grade hold no numbers: not scored"
    ]
    assert main([*argv, "--metric", "grade"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {train}: column(s) 'grade' ({text}) hold no numbers; metrics are ['score']"
    ]
    pd.read_parquet(test).assign(score=lambda t: t["score"].map("{:.3f}".format)).to_parquet(test)
    assert main([*argv, "--metric", "score"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {test}: column(s) 'score' ({text}) hold no numbers"
    ]


def test_ctrl_c_says_what_is_kept_and_exits_130(monkeypatch, capsys):
    """An audit (2026-12-07): ^C printed a bare `error: interrupted`, naming no command and not
    saying that a rerun resumes from the finished stages."""
    import flows.cli as cli

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_run", interrupted)
    monkeypatch.setattr(cli, "cmd_show", interrupted)
    assert main(["run"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "error: run: interrupted (Ctrl-C); finished stages are kept in the store: the same "
        "command resumes from them"
    ]
    assert main(["show-config"]) == 130
    assert capsys.readouterr().err.splitlines() == ["error: show-config: interrupted (Ctrl-C)"]
