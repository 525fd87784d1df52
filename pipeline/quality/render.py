"""The Rich summary of a quality run: one row per suite, its first failure, notes, Data Docs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.quality.results import QualityResult

if TYPE_CHECKING:
    from rich.console import Console


def print_summary(result: QualityResult, console: Console) -> None:
    """A rich table: suite, rows, expectations, passed, failed, first failure."""
    from rich.table import Table

    verdict = "[green]passed[/]" if result.success else "[red]FAILED[/]"
    table = Table(
        title=f"data quality of {result.db} (Great Expectations {result.gx_version}): {verdict}"
    )
    table.add_column("suite", min_width=18, overflow="fold")
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("expect.", justify="right", no_wrap=True)
    table.add_column("passed", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("first failure", overflow="fold")
    for s in result.suites:
        rows = f"{s.rows_validated:,}" + (f" of {s.rows_total:,} (sample)" if s.sampled else "")
        failed = [o for o in s.outcomes if not o.success]
        first = s.error or (f"{failed[0].expectation}: {failed[0].detail}" if failed else "")
        table.add_row(
            s.suite,
            rows,
            str(len(s.outcomes)),
            str(s.passed),
            f"[red]{s.failed}[/]" if s.failed else "0",
            first,
        )
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"Data Docs: {result.docs_index.resolve()}", highlight=False, soft_wrap=True)
