"""Validate and join a ratios table and a metrics table (CSV) into one mixture -> metric table.

Every problem is reported with the file, the 1-based line (the header is line 1) and the
column; every bad row is counted and the first `SHOWN` are listed, so one pass finds them all.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import pandas as pd

RUN_ID = "run_id"
ALPHA = "alpha."
SUM_TOLERANCE = 1e-3
# Row sums of weights parsed from decimal text are off by ~1e-16 per weight (0.499 + 0.5 is
# 0.99899999999999999911): the tolerance is widened by this much so its bound is inclusive.
FLOAT_SLACK = 1e-9
SHOWN = 5  # bad rows listed in one error; the rest are counted


class RunsError(ValueError):
    """A ratios/metrics table that cannot be used; the message names file, line and column."""


class RunsWarning(UserWarning):
    """A table accepted after a change its author should know of (renormalised weights)."""


def _where(path: Path, row: int | None = None, column: str | None = None) -> str:
    out = str(path)
    if row is not None:
        out += f", line {row + 2}"  # row 0 is line 2: line 1 is the header
    if column is not None:
        out += f", column {column!r}"
    return out


def _names(columns: list[str]) -> str:
    """The first few column names: a wide table's full header would drown the message."""
    shown = ", ".join(repr(c) for c in columns[:SHOWN])
    return shown + (f" and {len(columns) - SHOWN} more" if len(columns) > SHOWN else "")


class _Faults:
    """Every bad line of one file, raised together: the count and the first `SHOWN`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_line: dict[int, str] = {}

    def add(self, line: int, text: str, column: str | None = None) -> None:
        """Keep the first fault of a line: later ones usually follow from it."""
        where = f"line {line}" + ("" if column is None else f", column {column!r}")
        self.by_line.setdefault(line, f"{where}: {text}")

    def add_row(self, row: int, text: str, column: str | None = None) -> None:
        self.add(row + 2, text, column)  # row 0 is line 2: line 1 is the header

    def raise_any(self, note: str = "") -> None:
        """Raise the faults found, if any; `note` (a parenthesis) says what was not checked."""
        faults = [self.by_line[line] for line in sorted(self.by_line)]
        after = f" {note}" if note else ""
        if len(faults) == 1:
            raise RunsError(f"{self.path}, {faults[0]}{after}")
        if faults:
            first = f", the first {SHOWN}" if len(faults) > SHOWN else ""
            listed = "".join(f"\n  {f}" for f in faults[:SHOWN])
            raise RunsError(f"{self.path}: {len(faults)} bad rows{first}{after}:{listed}")


def _check_fields(path: Path, kind: str) -> None:
    """Every line has as many fields as the header (pandas would quietly turn a first column
    into the index when all rows have one more, and then blame the wrong column)."""
    faults = _Faults(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            width = len(header or [])
            _check_header([c.strip() for c in header or []], path)
            for row in reader:
                if row and len(row) != width:
                    faults.add(reader.line_num, f"{len(row)} fields, but the header has {width}")
    except UnicodeDecodeError as err:
        raise RunsError(f"{path}: not UTF-8 text (byte offset {err.start})") from None
    except csv.Error as err:
        raise RunsError(f"{path}: not a readable CSV {kind} table: {err}") from None
    faults.raise_any("(the values are checked once every row has the header's fields)")


def _check_header(names: list[str], path: Path) -> None:
    """Every column named once (pandas renames a repeated `math` to `math.1` and a blank one
    to `Unnamed: 2`, which then read as domains or metrics)."""
    blank = [i + 1 for i, name in enumerate(names) if not name]
    if blank and len(names) > 1:
        raise RunsError(f"{path}, line 1: column {blank[0]} has no name")
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise RunsError(f"{path}, line 1: column(s) {dupes} given more than once")


def _read(path: str | Path, kind: str, id_column: str) -> tuple[pd.DataFrame, _Faults]:
    """The table as text, its ids stripped; structural problems raise, bad ids are collected."""
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
    if id_column not in df.columns:
        raise RunsError(
            f"{_where(path, column=id_column)}: missing (the run id column); the columns are "
            f"{_names(list(df.columns))}"
        )
    if len(df.columns) < 2:
        raise RunsError(f"{path}: no {kind} columns besides {id_column!r}")
    if df.empty:
        raise RunsError(f"{path}: no rows")
    faults = _Faults(path)
    ids = df[id_column].str.strip()
    seen: dict[str, int] = {}
    for i, run in enumerate(ids):
        if not run:
            faults.add_row(i, "empty run id", id_column)
        elif run in seen:
            faults.add_row(
                i, f"duplicated run id {run!r} (first on line {seen[run] + 2})", id_column
            )
        else:
            seen[run] = i
    df[id_column] = ids
    return df, faults


def _numbers(df: pd.DataFrame, columns: list[str], faults: _Faults) -> pd.DataFrame:
    """The columns as floats; a non-numeric, NaN or inf cell is a fault, and NaN here."""
    out = {}
    for c in columns:
        values = []
        for i, raw in enumerate(df[c]):
            text = raw.strip()
            try:
                v = float(text)
            except ValueError:
                faults.add_row(i, "empty" if not text else f"not a number: {raw!r}", c)
                v = math.nan
            else:
                if not math.isfinite(v):
                    faults.add_row(i, f"{text} is not a finite number", c)
                    v = math.nan
            values.append(v)
        out[c] = values
    return pd.DataFrame(out, index=df.index)


def _domains(columns: list[str], path: Path, strip_prefix: str | None) -> dict[str, str]:
    """Weight column -> domain name: the column, or the column without `strip_prefix`."""
    if not strip_prefix:
        return {c: c for c in columns}
    bare = [c for c in columns if not c.startswith(strip_prefix)]
    if bare:
        more = f" (nor do {len(bare) - 1} more weight column(s))" if len(bare) > 1 else ""
        raise RunsError(
            f"{_where(path, column=bare[0])}: does not start with the prefix {strip_prefix!r}{more}"
        )
    if strip_prefix in columns:
        raise RunsError(f"{_where(path, column=strip_prefix)}: no domain name after the prefix")
    return {c: c.removeprefix(strip_prefix) for c in columns}


def _check_sums(
    weights: pd.DataFrame, ids: pd.Series, faults: _Faults, tolerance: float, renormalise: bool
) -> None:
    """Negative weights and row sums off 1 (or not positive, when renormalising) are faults."""
    totals = weights.sum(axis=1, skipna=False)
    for i, total in enumerate(totals):
        row = weights.iloc[i]
        neg = [c for c in weights.columns if row[c] < 0]
        if neg:
            faults.add_row(i, f"negative weight {row[neg[0]]:g}", neg[0])
        elif not math.isfinite(total):
            continue  # a cell of the row is not a number: already a fault
        elif total <= 0:
            faults.add_row(i, f"weights of run {ids.iloc[i]!r} sum to 0: no mixture to scale")
        elif not renormalise and abs(total - 1.0) > tolerance + FLOAT_SLACK:
            faults.add_row(
                i,
                f"weights of run {ids.iloc[i]!r} sum to {total:.10g}, not 1 "
                f"(tolerance {tolerance:g})",
            )


def _warn_renormalised(totals: pd.Series, path: Path) -> None:
    """Name how far from 1 the rows were, so a badly rounded table is not taken silently."""
    off = (totals - 1.0).abs()
    changed = int((off > FLOAT_SLACK).sum())
    if changed:
        worst = int(off.to_numpy().argmax())
        warnings.warn(
            f"{path}: renormalised {changed} row(s); the worst summed to "
            f"{totals.iloc[worst]:.6g} (line {worst + 2})",
            RunsWarning,
            stacklevel=3,
        )


def load_runs(
    ratios_csv: str | Path,
    metrics_csv: str | Path,
    *,
    id_column: str = RUN_ID,
    sum_tolerance: float = SUM_TOLERANCE,
    renormalise: bool = False,
    strip_prefix: str | None = None,
) -> tuple[list[str], pd.DataFrame]:
    """Validate and join a ratios table and a metrics table on their run ids.

    Args:
        id_column: the column holding the run id in both tables (`index` in some papers').
        sum_tolerance: how far from 1 a row's weights may sum (>= 0); such rows are scaled to 1.
        renormalise: accept any positive sum and scale every row to 1, warning (`RunsWarning`)
            with the worst row; for rounded published tables. `sum_tolerance` is then unused.
        strip_prefix: removed from every weight column to give the domain (`ratio_math` ->
            `math`), so domains match the pipeline's own rows.

    Returns:
        domains (the ratio columns, in file order) and the joined table: `run_id`,
        `alpha.<domain>` (rows summing to 1), the metric columns; in the ratios' row order.
    """
    if not (math.isfinite(sum_tolerance) and sum_tolerance >= 0):
        raise RunsError(f"sum tolerance {sum_tolerance!r}: must be a finite number >= 0")
    ratios, rfaults = _read(ratios_csv, "ratios", id_column)
    metrics, mfaults = _read(metrics_csv, "metrics", id_column)
    rpath, mpath = rfaults.path, mfaults.path
    columns = [c for c in ratios.columns if c != id_column]
    domains = _domains(columns, rpath, strip_prefix)
    weights = _numbers(ratios, columns, rfaults)
    _check_sums(weights, ratios[id_column], rfaults, sum_tolerance, renormalise)
    rfaults.raise_any()

    names = [c for c in metrics.columns if c != id_column]
    clash = [c for c in names if c.startswith(ALPHA) or c == RUN_ID]
    if clash:
        raise RunsError(
            f"{mpath}: metric column(s) {clash} clash with the joined table's {RUN_ID!r} and "
            f"{ALPHA}<domain> columns"
        )
    values = _numbers(metrics, names, mfaults)
    known, measured = set(ratios[id_column]), set(metrics[id_column])
    for i, run in enumerate(metrics[id_column]):
        if run not in known:
            mfaults.add_row(i, f"run id {run!r} is not in {rpath}", id_column)
    mfaults.raise_any()
    for i, run in enumerate(ratios[id_column]):
        if run not in measured:
            rfaults.add_row(i, f"run id {run!r} has no row in {mpath}", id_column)
    rfaults.raise_any()

    totals = weights.sum(axis=1)
    if renormalise:
        _warn_renormalised(totals, rpath)
    weights = weights.div(totals, axis=0).rename(columns=lambda c: f"{ALPHA}{domains[c]}")
    ids = ratios[[id_column]].rename(columns={id_column: RUN_ID})
    measured_rows = pd.concat(
        [metrics[[id_column]].rename(columns={id_column: RUN_ID}), values], axis=1
    )
    table = pd.concat([ids, weights], axis=1).merge(measured_rows, on=RUN_ID, how="left")
    return list(domains.values()), table
