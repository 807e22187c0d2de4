"""`parammix import` and `parammix surrogate`: the commands on tables of runs made elsewhere
(mixtures and their measured metrics), without the pipeline or a store."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas takes a while to import: the commands load it when they run
    import pandas as pd


def cmd_import(args: argparse.Namespace) -> int:
    from parammix_core.runs import RunsWarning, load_runs

    if args.out:
        _check_out(args.out, (args.ratios, args.metrics))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunsWarning)
        domains, table = load_runs(
            args.ratios,
            args.metrics,
            id_column=args.id_column,
            sum_tolerance=_tolerance(args.sum_tolerance),
            renormalise=args.renormalise,
            strip_prefix=args.strip_prefix,
        )
    _show_warnings(caught)
    metrics = [c for c in table.columns if c != "run_id" and not c.startswith("alpha.")]
    print(f"{len(table)} run(s), {len(domains)} domain(s): {', '.join(domains)}")
    print(f"{len(metrics)} metric(s): {', '.join(metrics)}")
    print(table.drop(columns="run_id").describe().T[["mean", "std", "min", "max"]].to_string())
    if args.out:
        _write(table, args.out)
        print(f"wrote {args.out}")
    return 0


def _write(table: pd.DataFrame, out: str) -> None:
    """Whole or not at all, through a temporary file this command made (O_EXCL: never a name
    someone else put there, such as a symlink)."""
    from parammix_core.runs import RunsError

    path = Path(out)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        table.to_parquet(tmp, index=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for the partial file, not the table
        os.replace(tmp, path)
    except OSError as err:
        raise RunsError(f"--out {out}: cannot write it ({err.strerror or err})") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _check_out(out: str, inputs: tuple[str, ...]) -> None:
    """--out names a new or replaceable file in an existing folder, never an input table."""
    from parammix_core.runs import RunsError
    from parammix_core.store.marker import MARKER

    path = Path(out)
    if any(path.resolve() == Path(i).resolve() for i in inputs):
        raise RunsError(f"--out {out}: is an input table; name a new file")
    if path.is_dir():
        raise RunsError(f"--out {out}: is a folder; name a file (rows.parquet)")
    if not path.resolve().parent.is_dir():
        raise RunsError(f"--out {out}: the folder {path.resolve().parent} does not exist")
    store = next((p for p in path.resolve().parents if (p / MARKER).is_file()), None)
    if store is not None:
        raise RunsError(f"--out {out}: inside the store {store} (only artifacts live there)")


def _tolerance(raw: str) -> float:
    """--sum-tolerance as a number >= 0; anything else is an error naming the option."""
    from parammix_core.runs import RunsError

    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise RunsError(f"--sum-tolerance {raw!r}: must be a number >= 0 (e.g. 0.001)")
    return value


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Our warnings as one `warning:` line each; other libraries' as Python shows them."""
    from parammix_core.runs import RunsWarning

    for w in caught:
        if issubclass(w.category, RunsWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def cmd_surrogate(args: argparse.Namespace) -> int:
    from parammix_core.runs import (
        RunsError,
        constant_fits,
        cv_scores,
        fit_on_table,
        non_numeric,
        read_table,
        scale_differs,
        score_on_table,
    )
    from parammix_core.surrogate import MIN_CHILD_SAMPLES

    domains, metrics, train = read_table(args.train)
    text = non_numeric(train)
    chosen = args.metric or metrics
    named = {m: text[m] for m in chosen if m in text}
    if named:
        shown = ", ".join(f"{m!r} ({dtype})" for m, dtype in named.items())
        raise RunsError(f"{args.train}: column(s) {shown} hold no numbers; metrics are {metrics}")
    unknown = [m for m in chosen if m not in metrics]
    if unknown:
        raise RunsError(f"{args.train}: no metric(s) {unknown}; metrics are {metrics}")
    if text and not args.metric:
        print(
            f"note: {args.train}: column(s) {', '.join(text)} hold no numbers: not scored",
            file=sys.stderr,
        )
    _check_folds(args.folds, len(train), args.train)
    tests = {path: _test_table(path, domains, args.train) for path in args.test}
    fitted = fit_on_table(train, domains, chosen, args.folds, args.seed, name=args.train)
    cv = cv_scores(fitted)
    scores = {path: score_on_table(fitted, t, domains, name=path) for path, t in tests.items()}
    differ = {path: scale_differs(train, t, chosen) for path, t in tests.items()}
    if args.json:
        out = _surrogate_json(args, len(train), cv, tests, scores, differ)
        print(json.dumps(out, allow_nan=False))
    else:
        _print_scores(args, len(train), cv, tests, scores)
    if flat := constant_fits(fitted, train, domains):
        print(
            f"note: {args.train}: LightGBM predicts one value for {', '.join(flat)} from "
            f"{len(train)} rows (a split needs {2 * MIN_CHILD_SAMPLES} or more): its scores are a "
            "constant's; read the linear baseline's",
            file=sys.stderr,
        )
    for path, names in differ.items():
        if names:
            print(
                f"note: {path}: {', '.join(names)} on another scale than {args.train} (mean or "
                "spread): R² across scales is meaningless, only the ranking (spearman) counts",
                file=sys.stderr,
            )
    return 0


def _print_scores(
    args: argparse.Namespace,
    rows: int,
    cv: pd.DataFrame,
    tests: dict[str, pd.DataFrame],
    scores: dict[str, pd.DataFrame],
) -> None:
    """The cross-validation on the train table, then the scores on each test table."""
    print(f"trained on {rows} rows of {args.train}; {args.folds}-fold cross-validation:")
    print(cv.to_string(float_format=lambda v: f"{v:.3f}"))
    for path, test in tests.items():
        print(f"\ntested on {len(test)} rows of {path}:")
        print(scores[path].to_string(float_format=lambda v: f"{v:.3f}"))


def _surrogate_json(
    args: argparse.Namespace,
    rows: int,
    cv: pd.DataFrame,
    tests: dict[str, pd.DataFrame],
    scores: dict[str, pd.DataFrame],
    differ: dict[str, list[str]],
) -> dict[str, Any]:
    """What `_print_scores` and the notes say, as one JSON-ready object."""
    train = {"table": args.train, "rows": rows, "folds": args.folds, "seed": args.seed}
    return {
        "train": {**train, "cv": _scores_json(cv)},
        "tests": [
            {
                "table": path,
                "rows": len(test),
                "scores": _scores_json(scores[path]),
                "scale_differs": differ[path],
            }
            for path, test in tests.items()
        ],
    }


def _check_folds(folds: int, rows: int, path: str) -> None:
    """Every fit of the cross-validation needs 2 rows or more: --folds in 2..rows, rows >= 4."""
    from parammix_core.runs import RunsError

    if rows < 4:
        raise RunsError(f"{path}: {rows} row(s) are too few to cross-validate (4 or more)")
    if not 2 <= folds <= rows:
        raise RunsError(
            f"--folds {folds}: must be at least 2 and at most the {rows} rows of {path}"
        )


def _test_table(path: str, domains: list[str], train: str) -> pd.DataFrame:
    """A table to score on: the train table's domains, in any column order."""
    from parammix_core.runs import RunsError, read_table

    test_domains, _, test = read_table(path)
    if sorted(test_domains) != sorted(domains):
        raise RunsError(f"{path}: domains {test_domains} differ from those of {train}: {domains}")
    return test


def _scores_json(frame: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """{metric: {model: {score: value}}}; NaN (undefined, e.g. a constant metric) as null."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for metric, row in frame.iterrows():
        for column, value in row.items():
            model, score = column.split(".", 1)
            number = float(value)
            out.setdefault(metric, {}).setdefault(model, {})[score] = (
                number if math.isfinite(number) else None
            )
    return out
