"""Import of external runs: every malformed table is rejected naming file, line and column."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from parammix_core.runs import (
    RunsError,
    RunsWarning,
    compare_surrogates,
    cv_scores,
    fit_on_table,
    load_runs,
    read_table,
    scale_differs,
    score_on_table,
)

RATIOS = "run_id,math,code\nr1,0.25,0.75\nr2,0.5,0.5\nr3,0.333,0.667\n"
METRICS = "run_id,acc,loss\nr2,0.6,2.0\nr1,0.5,2.5\nr3,0.55,2.2\n"


def write(tmp_path: Path, ratios: str = RATIOS, metrics: str = METRICS) -> tuple[Path, Path]:
    r, m = tmp_path / "ratios.csv", tmp_path / "metrics.csv"
    r.write_text(ratios)
    m.write_text(metrics)
    return r, m


def test_load_joins_on_run_id_in_ratio_order(tmp_path):
    domains, table = load_runs(*write(tmp_path))
    assert domains == ["math", "code"]
    assert list(table.columns) == ["run_id", "alpha.math", "alpha.code", "acc", "loss"]
    assert table["run_id"].tolist() == ["r1", "r2", "r3"]
    np.testing.assert_allclose(table["acc"], [0.5, 0.6, 0.55])
    np.testing.assert_allclose(table[["alpha.math", "alpha.code"]].sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("weights", ["0.499,0.5", "0.101,0.9"], ids=["0.999", "1.001"])
def test_sums_at_the_tolerance_are_accepted(tmp_path, weights):
    """The tolerance bound is inclusive, whatever the float error of the sum."""
    _, table = load_runs(*write(tmp_path, RATIOS.replace("0.25,0.75", weights)))
    raw = np.array([float(w) for w in weights.split(",")])
    np.testing.assert_allclose(table.loc[0, ["alpha.math", "alpha.code"]], raw / raw.sum())


@pytest.mark.parametrize(("weights", "total"), [("0.4989,0.5", "0.9989"), ("0.5011,0.5", "1.0011")])
def test_sums_beyond_the_tolerance_are_refused(tmp_path, weights, total):
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, RATIOS.replace("0.25,0.75", weights)))
    assert str(err.value) == (
        f"{tmp_path / 'ratios.csv'}, line 2: weights of run 'r1' sum to {total}, not 1 "
        "(tolerance 0.001)"
    )


@pytest.mark.parametrize(
    ("ratios", "metrics", "file", "message"),
    [
        (
            RATIOS.replace("r3,0.333", "r2,0.333"),
            METRICS,
            "ratios.csv",
            "line 4, column 'run_id': duplicated run id 'r2' (first on line 3)",
        ),
        (
            RATIOS,
            METRICS.replace("r3,0.55", "r9,0.55"),
            "metrics.csv",
            "line 4, column 'run_id': run id 'r9' is not in",
        ),
        (
            RATIOS.replace("r2,0.5,0.5", "r2,0.5,0.6"),
            METRICS,
            "ratios.csv",
            "line 3: weights of run 'r2' sum to 1.1, not 1",
        ),
        (
            RATIOS.replace("r1,0.25,0.75", "r1,-0.25,1.25"),
            METRICS,
            "ratios.csv",
            "line 2, column 'math': negative weight -0.25",
        ),
        (
            RATIOS.replace("r2,0.5,0.5", "r2,nan,0.5"),
            METRICS,
            "ratios.csv",
            "line 3, column 'math': nan is not a finite number",
        ),
        (
            RATIOS,
            METRICS.replace("r1,0.5,2.5", "r1,,2.5"),
            "metrics.csv",
            "line 3, column 'acc': empty",
        ),
        (
            RATIOS,
            METRICS.replace("r1,0.5,2.5", "r1,0.5,high"),
            "metrics.csv",
            "line 3, column 'loss': not a number: 'high'",
        ),
        (RATIOS.replace("run_id", "run"), METRICS, "ratios.csv", "column 'run_id': missing"),
        (
            RATIOS,
            METRICS.replace("r3,0.55,2.2\n", ""),
            "ratios.csv",
            "line 4, column 'run_id': run id 'r3' has no row in",
        ),
        (
            RATIOS.replace("r2,0.5,0.5", "r2,0.5,0.5,7"),
            METRICS,
            "ratios.csv",
            "line 3: 4 fields, but the header has 3",
        ),
        (
            "run_id,math,code\nr1,0.25,0.75,1\nr2,0.5,0.5,2\n",  # pandas: run_id as the index
            METRICS,
            "ratios.csv",
            "line 2: 4 fields, but the header has 3",
        ),
        (
            RATIOS,
            METRICS.replace("r1,0.5,2.5", "r1,0.5"),
            "metrics.csv",
            "line 3: 2 fields, but the header has 3",
        ),
    ],
    ids=[
        "duplicate",
        "unknown-id",
        "sum",
        "negative",
        "nan",
        "empty",
        "text",
        "no-id",
        "no-metrics",
        "extra-field",
        "extra-field-on-every-row",
        "missing-field",
    ],
)
def test_malformed_tables_name_file_line_and_column(tmp_path, ratios, metrics, file, message):
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, ratios, metrics))
    assert str(err.value).startswith(str(tmp_path / file))
    assert message in str(err.value)


def test_cli_import_then_surrogate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), 80)  # (N, 3)
    y = x @ np.array([1.0, 0.2, -0.5]) + 0.5 * x[:, 0] * x[:, 1]
    runs = [f"run{i}" for i in range(80)]
    pd.DataFrame({"run_id": runs, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}).to_csv(
        tmp_path / "r.csv", index=False
    )
    pd.DataFrame({"run_id": runs[::-1], "score": y[::-1]}).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "rows.parquet"
    assert (
        main(
            [
                "import",
                "--ratios",
                str(tmp_path / "r.csv"),
                "--metrics",
                str(tmp_path / "m.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "80 run(s), 3 domain(s): a, b, c" in capsys.readouterr().out
    domains, metrics, table = read_table(out)
    assert (domains, metrics) == (["a", "b", "c"], ["score"])
    table.iloc[:60].to_parquet(tmp_path / "train.parquet")
    table.iloc[60:].to_parquet(tmp_path / "test.parquet")
    assert (
        main(
            [
                "surrogate",
                "--train",
                str(tmp_path / "train.parquet"),
                "--test",
                str(tmp_path / "test.parquet"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "lightgbm.spearman" in printed and "linear.r2" in printed
    scores = compare_surrogates(table.iloc[:60], table.iloc[60:], domains, ["score"])
    assert scores.loc["score", "linear.r2"] > 0.9  # nearly linear target
    assert scores.loc["score", "lightgbm.spearman"] > 0.8


def test_cli_reports_import_errors(tmp_path, capsys):
    r, m = write(tmp_path, RATIOS.replace("r2,0.5,0.5", "r2,0.5,0.6"))
    assert main(["import", "--ratios", str(r), "--metrics", str(m)]) == 2
    assert "ratios.csv, line 3" in capsys.readouterr().err


PAPER_RATIOS = (  # rounded to 3 decimals, as released: rows sum to 0.996, 1, 1.003
    "index,ratio_math,ratio_code,ratio_web\n0,0.332,0.332,0.332\n1,0.5,0.25,0.25\n"
    "2,0.201,0.402,0.4\n"
)
PAPER_METRICS = "index,metric_acc\n2,0.55\n0,0.5\n1,0.6\n"


def test_every_bad_row_is_counted_and_the_first_five_listed(tmp_path):
    rows = ["r1,x,0.5", "r2,0.5,0.5", "r3,0.9,0.9", "r4,-0.1,1.1", "r5,0.2,", "r2,0.5,0.5"]
    rows += ["r7,0.6,0.6", "r8,0.7,0.7"]
    ratios = "run_id,math,code\n" + "\n".join(rows) + "\n"
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, ratios))
    assert str(err.value).splitlines() == [
        f"{tmp_path / 'ratios.csv'}: 7 bad rows, the first 5:",
        "  line 2, column 'math': not a number: 'x'",
        "  line 4: weights of run 'r3' sum to 1.8, not 1 (tolerance 0.001)",
        "  line 5, column 'math': negative weight -0.1",
        "  line 6, column 'code': empty",
        "  line 7, column 'run_id': duplicated run id 'r2' (first on line 3)",
    ]


def test_every_line_with_a_wrong_field_count_is_listed(tmp_path):
    ratios = "run_id,math,code\nr1,0.5,0.5,1\nr2,0.5,0.5\nr3,1\nr4,x,0.5\n"
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, ratios))
    first, *listed = str(err.value).splitlines()
    assert first.endswith(
        "ratios.csv: 2 bad rows (the values are checked once every row has the header's fields):"
    )
    assert listed == [
        "  line 2: 4 fields, but the header has 3",
        "  line 4: 2 fields, but the header has 3",
    ]


def test_a_missing_id_column_names_only_the_first_columns(tmp_path):
    ratios = "id," + ",".join(f"d{i}" for i in range(40)) + "\nr1," + ",".join(["0.025"] * 40)
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, ratios + "\n"))
    assert str(err.value) == (
        f"{tmp_path / 'ratios.csv'}, column 'run_id': missing (the run id column); the columns "
        "are 'id', 'd0', 'd1', 'd2', 'd3' and 36 more"
    )


def test_renormalise_accepts_a_rounded_paper_table_and_warns_of_the_worst_row(tmp_path):
    files = write(tmp_path, PAPER_RATIOS, PAPER_METRICS)
    with pytest.warns(RunsWarning) as caught:
        domains, table = load_runs(
            *files, id_column="index", renormalise=True, strip_prefix="ratio_"
        )
    assert [str(w.message) for w in caught] == [
        f"{files[0]}: renormalised 2 row(s); the worst summed to 0.996 (line 2)"
    ]
    assert domains == ["math", "code", "web"]
    assert list(table.columns) == ["run_id", "alpha.math", "alpha.code", "alpha.web", "metric_acc"]
    assert table["run_id"].tolist() == ["0", "1", "2"]
    np.testing.assert_allclose(table["metric_acc"], [0.5, 0.6, 0.55])
    np.testing.assert_allclose(table.iloc[0, 1:4].to_numpy(float), [1 / 3] * 3)
    np.testing.assert_allclose(table.iloc[2, 1:4], np.array([0.201, 0.402, 0.4]) / 1.003)


def test_renormalise_still_refuses_negative_and_zero_rows(tmp_path):
    ratios = "run_id,math,code\nr1,0,0\nr2,0.5,0.5\nr3,-0.5,1.5\n"
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, ratios), renormalise=True)
    assert str(err.value).splitlines()[1:] == [
        "  line 2: weights of run 'r1' sum to 0: no mixture to scale",
        "  line 4, column 'math': negative weight -0.5",
    ]


def test_the_paper_table_without_renormalise_lists_both_rows_off_one(tmp_path):
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, PAPER_RATIOS, PAPER_METRICS), id_column="index")
    assert str(err.value).splitlines()[1:] == [
        "  line 2: weights of run '0' sum to 0.996, not 1 (tolerance 0.001)",
        "  line 4: weights of run '2' sum to 1.003, not 1 (tolerance 0.001)",
    ]


def test_a_wider_sum_tolerance_accepts_the_rounded_rows_without_warning(tmp_path, recwarn):
    files = write(tmp_path, PAPER_RATIOS, PAPER_METRICS)
    domains, table = load_runs(*files, id_column="index", sum_tolerance=0.004)
    assert domains == ["ratio_math", "ratio_code", "ratio_web"]
    np.testing.assert_allclose(table.iloc[:, 1:4].sum(axis=1), 1.0)
    assert not [w for w in recwarn if issubclass(w.category, RunsWarning)]


@pytest.mark.parametrize("tolerance", [-0.001, math.nan, math.inf])
def test_a_bad_sum_tolerance_is_refused(tmp_path, tolerance):
    with pytest.raises(RunsError, match=r"sum tolerance .*: must be a finite number >= 0"):
        load_runs(*write(tmp_path), sum_tolerance=tolerance)


def test_a_weight_column_without_the_prefix_is_named(tmp_path):
    ratios = PAPER_RATIOS.replace("ratio_code", "code")
    with pytest.raises(RunsError) as err:
        load_runs(*write(tmp_path, ratios, PAPER_METRICS), id_column="index", strip_prefix="ratio_")
    assert str(err.value) == (
        f"{tmp_path / 'ratios.csv'}, column 'code': does not start with the prefix 'ratio_'"
    )


def test_a_metric_named_run_id_clashes_with_the_joined_id(tmp_path):
    metrics = "index,run_id\n0,1\n1,2\n2,3\n"
    with pytest.raises(RunsError, match=r"metric column\(s\) \['run_id'\] clash"):
        load_runs(*write(tmp_path, PAPER_RATIOS, metrics), id_column="index", renormalise=True)


def scored_rows(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.dirichlet(np.ones(2), n)  # (n, 2)
    return pd.DataFrame({"alpha.a": x[:, 0], "alpha.b": x[:, 1], "score": 2 * x[:, 0] + 0.1})


def test_cv_scores_lay_out_the_cross_validation_of_the_fit():
    fitted = fit_on_table(scored_rows(), ["a", "b"], ["score"], folds=4, seed=3)
    cv = cv_scores(fitted)
    assert list(cv.index) == ["score"]
    assert list(cv.columns) == [
        f"{m}.{k}" for m in ("lightgbm", "linear") for k in ("spearman", "pearson", "r2")
    ]
    assert cv.loc["score", "lightgbm.spearman"] == fitted.cv["score"]["spearman"]
    assert cv.loc["score", "linear.r2"] == fitted.cv["score"]["r2_linear"]
    assert cv.loc["score", "linear.r2"] > 0.99  # a linear target


def test_scale_differs_flags_a_shift_or_a_stretch_not_a_split_of_the_same_runs():
    rows = scored_rows()
    train, test = rows.iloc[:30], rows.iloc[30:]
    assert scale_differs(train, test, ["score"]) == []
    assert scale_differs(train, test.assign(score=test["score"] + 1), ["score"]) == ["score"]
    mean = test["score"].mean()
    stretched = test.assign(score=mean + 3 * (test["score"] - mean))
    assert scale_differs(train, stretched, ["score"]) == ["score"]


def test_a_nan_metric_or_a_mixture_off_the_simplex_is_refused_naming_the_table():
    rows = scored_rows(20)
    fitted = fit_on_table(rows, ["a", "b"], ["score"], folds=2)
    with pytest.raises(RunsError) as err:
        score_on_table(
            fitted, rows.assign(score=[*[0.5] * 2, math.nan, *[0.5] * 17]), ["a", "b"], "B.parquet"
        )
    assert (
        str(err.value)
        == "B.parquet: metric 'score' is NaN or inf in 1 row(s) (the first: row 3 of 20)"
    )
    with pytest.raises(
        RunsError, match=r"^A\.parquet: mixture row\(s\) \[0\] are not on the simplex"
    ):
        fit_on_table(
            rows.assign(**{"alpha.a": [0.9, *rows["alpha.a"][1:]]}),
            ["a", "b"],
            ["score"],
            2,
            name="A.parquet",
        )
