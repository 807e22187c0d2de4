"""Score surrogates on joined mixture -> metric tables: fit on one, score on another.

A joined table is `parammix import`'s parquet or the pipeline's rows.parquet (`read_table`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from parammix_core.runs.csv_tables import ALPHA, RUN_ID, RunsError

if TYPE_CHECKING:
    from parammix_core.surrogate import SurrogateSet

SCORES = ("spearman", "pearson", "r2")  # of a surrogate's predictions; the ranking first
MODELS = (("lightgbm", ""), ("linear", "_linear"))  # model, suffix of its keys in SurrogateSet.cv
NOT_METRICS = {RUN_ID, "seconds", "round", "proposal", "position"}  # bookkeeping of rows.parquet


def read_table(path: str | Path) -> tuple[list[str], list[str], pd.DataFrame]:
    """A joined table (parquet from `parammix import`, or the pipeline's rows.parquet).

    Returns domains (from the `alpha.` columns), metrics (every other numeric column except
    run ids, `*.stderr` and timings; `non_numeric` names the others) and the table.
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
    metrics = [c for c in _value_columns(df) if pd.api.types.is_numeric_dtype(df[c])]
    return domains, metrics, df


def _value_columns(df: pd.DataFrame) -> list[str]:
    """Every column but the weights, run ids, `*.stderr` and timings."""
    return [
        c
        for c in df.columns
        if not c.startswith(ALPHA) and c not in NOT_METRICS and not c.endswith(".stderr")
    ]


def non_numeric(df: pd.DataFrame) -> dict[str, str]:
    """{column: dtype} of the value columns `read_table` leaves out because they hold no
    numbers (text, dates): a surrogate cannot fit them, and the user should hear so."""
    return {
        c: str(df[c].dtype) for c in _value_columns(df) if not pd.api.types.is_numeric_dtype(df[c])
    }


def fit_on_table(
    train: pd.DataFrame,
    domains: list[str],
    metrics: list[str],
    folds: int = 5,
    seed: int = 0,
    name: str = "train table",
) -> SurrogateSet:
    """LightGBM and the linear baseline per metric, fitted on every row of `train`; their
    `folds`-fold cross-validation on those rows comes with them (`cv_scores` lays it out).
    `name` (the file) starts every error."""
    # imported here: lightgbm takes seconds to load, and `parammix import` never needs it
    from parammix_core.surrogate import SurrogateError, fit_surrogates

    x = _inputs(train, domains, metrics, name)
    targets = {m: train[m].to_numpy(dtype=float) for m in metrics}
    try:
        return fit_surrogates(x, targets, folds, seed)
    except SurrogateError as err:
        raise RunsError(f"{name}: {err}") from None


def cv_scores(fitted: SurrogateSet) -> pd.DataFrame:
    """The out-of-fold scores of `fit_on_table`, one row per metric, in `score_on_table`'s
    layout: what the surrogates are worth on the rows they were fitted on."""
    rows = {
        m: {f"{model}.{k}": fitted.cv[m][k + suffix] for model, suffix in MODELS for k in SCORES}
        for m in fitted.targets
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")


def score_on_table(
    fitted: SurrogateSet, test: pd.DataFrame, domains: list[str], name: str = "test table"
) -> pd.DataFrame:
    """Spearman, Pearson and R² of both models on the rows of `test`, one row per metric
    (columns `lightgbm.spearman`, ..., `linear.r2`)."""
    from parammix_core.surrogate import _scores

    x = _inputs(test, domains, fitted.targets, name)
    predicted = {"lightgbm": fitted.predict(x), "linear": fitted.predict_linear(x)}
    rows = {}
    for m in fitted.targets:
        y = test[m].to_numpy(dtype=float)
        scores = {model: _scores(y, pred[m]) for model, pred in predicted.items()}
        rows[m] = {f"{model}.{k}": scores[model][k] for model, _ in MODELS for k in SCORES}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")


def constant_fits(fitted: SurrogateSet, train: pd.DataFrame, domains: list[str]) -> list[str]:
    """Metrics whose LightGBM predicts one value on its own rows: too few rows for a split
    (each leaf needs `min_child_samples`), so its scores are a constant's."""
    predicted = fitted.predict(_inputs(train, domains, fitted.targets, "train table"))
    return [m for m, p in predicted.items() if np.ptp(p) == 0]


def compare_surrogates(
    train: pd.DataFrame,
    test: pd.DataFrame,
    domains: list[str],
    metrics: list[str],
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit on `train` (at most one fold per row), score on `test`: `score_on_table`'s frame."""
    fitted = fit_on_table(train, domains, metrics, min(folds, len(train)), seed)
    return score_on_table(fitted, test, domains)


def scale_differs(train: pd.DataFrame, test: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The metrics whose test values sit on another scale than the train values: means apart
    by more than the larger spread, or one spread over twice the other (merges against real
    runs, another model size). R² then measures the offset between the tables, not the model;
    only the ranking (Spearman) still says how good the surrogate is."""
    out = []
    for m in metrics:
        a, b = train[m].to_numpy(dtype=float), test[m].to_numpy(dtype=float)
        wide, narrow = max(a.std(), b.std()), min(a.std(), b.std())
        if abs(a.mean() - b.mean()) > wide or wide > 2 * narrow:
            out.append(m)
    return out


def _inputs(df: pd.DataFrame, domains: list[str], metrics: list[str], name: str) -> np.ndarray:
    """The mixtures (N, K) of a table that has every domain and metric, metrics finite."""
    cols = [f"{ALPHA}{d}" for d in domains]
    absent = [c for c in [*cols, *metrics] if c not in df.columns]
    if absent:
        raise RunsError(f"{name}: no column(s) {absent}")
    text = {m: dtype for m, dtype in non_numeric(df).items() if m in metrics}
    if text:
        shown = ", ".join(f"{m!r} ({dtype})" for m, dtype in text.items())
        raise RunsError(f"{name}: column(s) {shown} hold no numbers")
    for m in metrics:
        bad = np.flatnonzero(~np.isfinite(df[m].to_numpy(dtype=float)))
        if bad.size:
            raise RunsError(
                f"{name}: metric {m!r} is NaN or inf in {bad.size} row(s) (the first: row "
                f"{bad[0] + 1} of {len(df)})"
            )
    return df[cols].to_numpy(dtype=float)
