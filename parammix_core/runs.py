"""Import mixture -> metric tables produced elsewhere, and score surrogates on them.

Two CSV files: ratios (one row per run: `run_id`, then one weight column per domain, each row
summing to 1) and metrics (`run_id`, then one numeric column per metric). Every problem is
reported with the file, the 1-based line (the header is line 1) and the column, because these
tables are usually hand-edited or exported from someone else's tracker. Weights whose sum is
within `SUM_TOLERANCE` of 1 (rounded exports: 0.333, 0.333, 0.333) are renormalised.

The joined table has `run_id`, `alpha.<domain>` per domain and the metric columns: the same
`alpha.` layout as the pipeline's own evaluated rows, so both feed the same surrogates.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

RUN_ID = "run_id"
ALPHA = "alpha."
SUM_TOLERANCE = 1e-3
# Row sums of weights parsed from decimal text are off by ~1e-16 per weight (0.499 + 0.5 is
# 0.99899999999999999911): the tolerance is widened by this much so its bound is inclusive.
FLOAT_SLACK = 1e-9
NOT_METRICS = {RUN_ID, "seconds", "round", "proposal", "position"}  # bookkeeping of rows.parquet


class RunsError(ValueError):
    """A ratios/metrics table that cannot be used; the message names file, line and column."""


def _where(path: Path, row: int | None = None, column: str | None = None) -> str:
    out = str(path)
    if row is not None:
        out += f", line {row + 2}"  # row 0 is line 2: line 1 is the header
    if column is not None:
        out += f", column {column!r}"
    return out


def _check_fields(path: Path, kind: str) -> None:
    """Every line has as many fields as the header (pandas would quietly turn a first column
    into the index when all rows have one more, and then blame the wrong column)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            for row in reader:
                if row and len(row) != len(header or []):
                    raise RunsError(
                        f"{path}, line {reader.line_num}: {len(row)} fields, but the header "
                        f"has {len(header or [])}"
                    )
    except UnicodeDecodeError as err:
        raise RunsError(f"{path}: not UTF-8 text (byte offset {err.start})") from None
    except csv.Error as err:
        raise RunsError(f"{path}: not a readable CSV {kind} table: {err}") from None


def _read(path: str | Path, kind: str) -> tuple[Path, pd.DataFrame]:
    path = Path(path)
    if not path.is_file():
        raise RunsError(f"{path}: no such {kind} file")
    _check_fields(path, kind)
    try:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunsError(f"{path}: not a readable CSV {kind} table: {err}") from None
    df.columns = [c.strip() for c in df.columns]
    if RUN_ID not in df.columns:
        raise RunsError(f"{_where(path, column=RUN_ID)}: missing; columns are {list(df.columns)}")
    if len(df.columns) < 2:
        raise RunsError(f"{path}: no {kind} columns besides {RUN_ID!r}")
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise RunsError(f"{path}: duplicated column(s) {dupes}")
    if df.empty:
        raise RunsError(f"{path}: no rows")
    ids = df[RUN_ID].str.strip()
    for i, run in enumerate(ids):
        if not run:
            raise RunsError(f"{_where(path, i, RUN_ID)}: empty run id")
    seen: dict[str, int] = {}
    for i, run in enumerate(ids):
        if run in seen:
            raise RunsError(
                f"{_where(path, i, RUN_ID)}: duplicated run id {run!r} "
                f"(first on line {seen[run] + 2})"
            )
        seen[run] = i
    df[RUN_ID] = ids
    return path, df


def _numbers(path: Path, df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns as floats; the first non-numeric or NaN/inf cell is an error."""
    out = {}
    for c in columns:
        values = []
        for i, raw in enumerate(df[c]):
            text = raw.strip()
            try:
                v = float(text)
            except ValueError:
                what = "empty" if not text else f"not a number: {raw!r}"
                raise RunsError(f"{_where(path, i, c)}: {what}") from None
            if not math.isfinite(v):
                raise RunsError(f"{_where(path, i, c)}: {text} is not a finite number")
            values.append(v)
        out[c] = values
    return pd.DataFrame(out, index=df.index)


def load_runs(ratios_csv: str | Path, metrics_csv: str | Path) -> tuple[list[str], pd.DataFrame]:
    """Validate and join a ratios table and a metrics table on `run_id`.

    Returns:
        domains (the ratio columns, in file order) and the joined table: `run_id`,
        `alpha.<domain>` (rows summing to 1), the metric columns; in the ratios' row order.
    """
    rpath, ratios = _read(ratios_csv, "ratios")
    mpath, metrics = _read(metrics_csv, "metrics")
    domains = [c for c in ratios.columns if c != RUN_ID]
    weights = _numbers(rpath, ratios, domains)
    for i in range(len(weights)):
        row = weights.iloc[i]
        neg = [d for d in domains if row[d] < 0]
        if neg:
            raise RunsError(f"{_where(rpath, i, neg[0])}: negative weight {row[neg[0]]:g}")
        total = float(row.sum())
        if abs(total - 1.0) > SUM_TOLERANCE + FLOAT_SLACK:
            raise RunsError(
                f"{_where(rpath, i)}, columns {domains}: weights of run {ratios[RUN_ID].iloc[i]!r} "
                f"sum to {total:.10g}, not 1 (tolerance {SUM_TOLERANCE:g})"
            )
    weights = weights.div(weights.sum(axis=1), axis=0)

    names = [c for c in metrics.columns if c != RUN_ID]
    clash = [c for c in names if c.startswith(ALPHA)]
    if clash:
        raise RunsError(f"{mpath}: metric column(s) {clash} clash with the {ALPHA}<domain> columns")
    values = _numbers(mpath, metrics, names)
    known = set(ratios[RUN_ID])
    for i, run in enumerate(metrics[RUN_ID]):
        if run not in known:
            raise RunsError(f"{_where(mpath, i, RUN_ID)}: run id {run!r} is not in {rpath}")
    measured = set(metrics[RUN_ID])
    for i, run in enumerate(ratios[RUN_ID]):
        if run not in measured:
            raise RunsError(f"{_where(rpath, i, RUN_ID)}: run id {run!r} has no row in {mpath}")

    table = pd.concat(
        [ratios[[RUN_ID]], weights.rename(columns=lambda d: f"{ALPHA}{d}")], axis=1
    ).merge(pd.concat([metrics[[RUN_ID]], values], axis=1), on=RUN_ID, how="left")
    return domains, table


def read_table(path: str | Path) -> tuple[list[str], list[str], pd.DataFrame]:
    """A joined table (parquet from `parammix import`, or the pipeline's rows.parquet).

    Returns domains (from the `alpha.` columns), metrics (every other numeric column except
    run ids, `*.stderr` and timings) and the table.
    """
    path = Path(path)
    if not path.is_file():
        raise RunsError(f"{path}: no such table")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise RunsError(f"{path}: not a readable parquet table: {err}") from None
    domains = [c.removeprefix(ALPHA) for c in df.columns if c.startswith(ALPHA)]
    if not domains:
        raise RunsError(f"{path}: no {ALPHA}<domain> columns; columns are {list(df.columns)}")
    metrics = [
        c
        for c in df.columns
        if not c.startswith(ALPHA)
        and c not in NOT_METRICS
        and not c.endswith(".stderr")
        and pd.api.types.is_numeric_dtype(df[c])
    ]
    return domains, metrics, df


def compare_surrogates(
    train: pd.DataFrame,
    test: pd.DataFrame,
    domains: list[str],
    metrics: list[str],
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit LightGBM and the linear baseline per metric on `train`, score them on `test`.

    Returns one row per metric: spearman, pearson, r2 for each model (`lightgbm`, `linear`)
    on the test rows.
    """
    # imported here: lightgbm takes seconds to load, and `parammix import` never needs it
    from parammix_core.surrogate import _scores, fit_surrogates

    cols = [f"{ALPHA}{d}" for d in domains]
    for name, df in (("train", train), ("test", test)):
        absent = [c for c in [*cols, *metrics] if c not in df.columns]
        if absent:
            raise RunsError(f"{name} table lacks column(s) {absent}")
    x_train = train[cols].to_numpy(dtype=float)  # (N, K)
    x_test = test[cols].to_numpy(dtype=float)  # (M, K)
    targets = {m: train[m].to_numpy(dtype=float) for m in metrics}
    fitted = fit_surrogates(x_train, targets, min(folds, len(train)), seed)
    trees, linear = fitted.predict(x_test), fitted.predict_linear(x_test)
    rows = []
    for m in metrics:
        y = test[m].to_numpy(dtype=float)
        if not np.isfinite(y).all():
            raise RunsError(f"test table: metric {m!r} has NaN or inf")
        row = {"metric": m}
        for model, pred in (("lightgbm", trees[m]), ("linear", linear[m])):
            row.update({f"{model}.{k}": v for k, v in _scores(y, pred).items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")
