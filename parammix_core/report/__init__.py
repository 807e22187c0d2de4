"""The experiment report, and the verdicts every run prints.

By what each module holds: `document.py` (`write_report`: `report.md` and its figures),
`validation.py` (the proxy validation's table and verdict), `final.py` (the final training's
verdict and section), `summary.py` (the lines a run ends with) and `markdown.py` (tables and
cells without `tabulate`).
"""

from parammix_core.report.document import (
    CHOICE_PNG,
    FIT_PNG,
    LANDSCAPE_PNG,
    TOP_MEASURED,
    ReportError,
    write_report,
)
from parammix_core.report.final import final_section, final_verdict, is_beside
from parammix_core.report.markdown import markdown_table
from parammix_core.report.summary import run_summary, summary_lines
from parammix_core.report.validation import (
    real_training_outlook,
    validation_section,
    validation_table,
    validation_verdict,
)

__all__ = [
    "CHOICE_PNG",
    "FIT_PNG",
    "LANDSCAPE_PNG",
    "TOP_MEASURED",
    "ReportError",
    "final_section",
    "final_verdict",
    "is_beside",
    "markdown_table",
    "real_training_outlook",
    "run_summary",
    "summary_lines",
    "validation_section",
    "validation_table",
    "validation_verdict",
    "write_report",
]
