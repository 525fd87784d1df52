"""What `microdc quality check` found: one outcome per expectation, per suite, per warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExpectationOutcome:
    """One expectation of one suite: what it asserted, whether it held, and why not."""

    expectation: str
    success: bool
    detail: str = ""  # why it failed: counts, or the error GX raised
    examples: str = ""  # a few unexpected rows (with their key columns)

    @property
    def line(self) -> str:
        return self.detail + (f", e.g. {self.examples}" if self.examples else "")


@dataclass
class SuiteOutcome:
    """One suite (one table, or the reconciliation frame) and its expectations' outcomes."""

    suite: str
    table: str
    rows_validated: int
    rows_total: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    error: str | None = None  # the suite could not run (table missing, fetch failed)

    @property
    def sampled(self) -> bool:
        return self.rows_validated < self.rows_total

    @property
    def passed(self) -> int:
        return sum(o.success for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.success for o in self.outcomes) + (self.error is not None)

    @property
    def success(self) -> bool:
        return self.failed == 0

    def failures(self) -> list[str]:
        lines = [f"{self.suite}: {self.error}"] if self.error is not None else []
        lines += [
            f"{self.suite}: {o.expectation}: {o.line}" for o in self.outcomes if not o.success
        ]
        return lines


@dataclass
class QualityResult:
    """One run over one warehouse: every suite's outcome, notes, and where the Data Docs are."""

    db: Path
    docs_dir: Path
    gx_version: str
    suites: list[SuiteOutcome]
    notes: list[str]
    seconds: float

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    @property
    def docs_index(self) -> Path:
        return self.docs_dir / "index.html"

    @property
    def expectations(self) -> int:
        return sum(len(s.outcomes) for s in self.suites)

    def failures(self) -> list[str]:
        """One readable line per failed expectation (or suite that could not run)."""
        return [line for s in self.suites for line in s.failures()]

    def suite(self, name: str) -> SuiteOutcome:
        for s in self.suites:
            if s.suite == name:
                return s
        raise KeyError(name)
