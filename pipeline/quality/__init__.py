"""Data quality of the built warehouse: Great Expectations suites per layer and reconciliations."""

from pipeline.quality.checks import (
    ExpectationOutcome,
    QualityResult,
    SuiteOutcome,
    print_summary,
    run_checks,
)

__all__ = ["ExpectationOutcome", "QualityResult", "SuiteOutcome", "print_summary", "run_checks"]
