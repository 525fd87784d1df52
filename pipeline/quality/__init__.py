"""Data quality of the built warehouse: Great Expectations suites per layer and reconciliations.

`checks.run_checks` runs everything; `suites` declares what each table must hold, `invariants`
the reconciliations (DuckDB SQL), `gx` is the only module talking to Great Expectations,
`results` the outcome types and `render` the Rich summary.
"""

from pipeline.quality.checks import SAMPLE_ROWS, run_checks
from pipeline.quality.render import print_summary
from pipeline.quality.results import ExpectationOutcome, QualityResult, SuiteOutcome

__all__ = [
    "SAMPLE_ROWS",
    "ExpectationOutcome",
    "QualityResult",
    "SuiteOutcome",
    "print_summary",
    "run_checks",
]
