"""Import mixture -> metric tables produced elsewhere, and score surrogates on them.

Two CSV files: ratios (one row per run: the run id, then one weight column per domain, each
row summing to 1) and metrics (the run id, then one numeric column per metric). Every problem
is reported with the file, the 1-based line (the header is line 1) and the column, because
these tables are usually hand-edited or exported from someone else's tracker; every bad row
is counted and the first `SHOWN` are listed, so one pass finds them all. Weights whose sum is
within `SUM_TOLERANCE` of 1 (rounded exports: 0.333, 0.333, 0.333) are renormalised; tables
released with papers are rounded further (rows summing to 0.996-1.003), and
`renormalise=True` accepts any positive sum, with a `RunsWarning` naming the worst row.

The joined table has `run_id`, `alpha.<domain>` per domain and the metric columns: the same
`alpha.` layout as the pipeline's own evaluated rows, so both feed the same surrogates.

The package, by what each module holds: `csv_tables.py` (validating and joining the ratios and
metrics tables, `load_runs`) and `scoring.py` (surrogates fitted and scored on joined tables).
"""

from parammix_core.runs.csv_tables import (
    ALPHA,
    FLOAT_SLACK,
    RUN_ID,
    SHOWN,
    SUM_TOLERANCE,
    RunsError,
    RunsWarning,
    load_runs,
)
from parammix_core.runs.scoring import (
    MODELS,
    NOT_METRICS,
    SCORES,
    compare_surrogates,
    constant_fits,
    cv_scores,
    fit_on_table,
    non_numeric,
    read_table,
    scale_differs,
    score_on_table,
)

__all__ = [
    "ALPHA",
    "FLOAT_SLACK",
    "MODELS",
    "NOT_METRICS",
    "RUN_ID",
    "SCORES",
    "SHOWN",
    "SUM_TOLERANCE",
    "RunsError",
    "RunsWarning",
    "compare_surrogates",
    "constant_fits",
    "cv_scores",
    "fit_on_table",
    "load_runs",
    "non_numeric",
    "read_table",
    "scale_differs",
    "score_on_table",
]
