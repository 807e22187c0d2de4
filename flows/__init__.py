"""Prefect flows: the pipeline's DAG, wiring only (the work is in `tasks/` and `parammix_core`).

Library progress bars off before anything imports tqdm (it reads TQDM_* at import): lm-eval
draws one per task per candidate, hundreds of lines in a worker's terminal per run. The
stages' own progress goes to the Prefect UI and the log, one line per tenth of a stage.
DeepSpeed's "unable to detect" accelerator line is dropped before anything imports it, in the
CLI and in a worker's flow-run process alike, and a failed run's exception shows its traceback
once in the run's log.
"""

import os

from flows.debug_log import (
    drop_accelerator_guess,
    one_traceback_per_error,
    strip_console_tracebacks,
)

os.environ.setdefault("TQDM_DISABLE", "1")
drop_accelerator_guess()
strip_console_tracebacks()
one_traceback_per_error()
