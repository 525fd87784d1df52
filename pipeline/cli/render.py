"""Every table and progress display the commands print (Rich): commands compute, this draws."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.cli.base import (
    console,
    out,
)
from pipeline.errors import PipelineError


def print_dead_letters(letters: list[Any], internal_errors: int) -> None:
    """Dead letters by kind (what to look at first); internal errors loudly: they are bugs."""
    if not letters:
        return
    kinds = Counter(letter.error_kind for letter in letters)
    shown = ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items()))
    out.print(f"  dead letters by kind: {shown}")
    if internal_errors:
        out.print(
            f"[red]  {internal_errors:,} records made the stream core raise (internal_error): "
            "a bug - please report it with one of those dead letters[/]"
        )


def print_demo(result: Any) -> None:
    table = Table(
        "site",
        "requests",
        "facility kWh",
        "PUE",
        "Wh/req",
        "gCO2e/req",
        "p95 ms",
        "chargeback USD",
        "cloud, same cores USD",
        "cloud, CPU used USD",
        "ROI 12 mo",
        title="per site over the run (facility energy as metered, idle and shared included; "
        "SCI = operational + embodied; ROI vs renting the same cores)",
    )
    for s in result.sites:
        table.add_row(
            s.site_id,
            f"{s.requests:,}",
            f"{s.facility_kwh:,.1f}",
            fmt_or_dash(s.pue, ".3f"),
            fmt_or_dash(s.wh_per_request, ".2f"),
            fmt_or_dash(s.gco2e_per_request, ".3f"),
            fmt_or_dash(s.p95_latency_ms, ".0f"),
            f"{s.chargeback_usd:,.0f}",
            fmt_or_dash(s.cloud_usd, ",.0f"),
            fmt_or_dash(s.cloud_used_usd, ",.2f"),
            "-" if s.roi_12m_pct is None else f"{s.roi_12m_pct:+.0f} %",
        )
    meter = Table(
        "site",
        "facility meter kWh",
        "design PUE kWh",
        "node rows kWh",
        "shared kWh",
        "charged kWh",
        "charged - expected",
        "meter IT < nodes",
        title="chargeback vs the facility meter (expected = meter + design PUE; shared: metered "
        "IT no node reported, and its overhead)",
    )
    for s in result.sites:
        expected = s.meter_kwh + s.design_pue_kwh
        meter.add_row(
            s.site_id,
            f"{s.meter_kwh:,.3f}",
            f"{s.design_pue_kwh:,.3f}",
            f"{s.node_rows_kwh:,.3f}",
            f"{s.shared_kwh:,.3f} ({s.shared_kwh / expected * 100 if expected else 0:.1f} %)",
            f"{s.facility_kwh:,.3f}",
            f"{s.facility_kwh - expected:+.6f}",
            f"{s.meter_below_nodes_minutes:,} min",
        )
    # Wide enough for every column when the output goes to a file or a pipe (80 by default).
    console = out if out.is_terminal else Console(file=out.file, width=160)
    console.print(table)
    console.print(meter)
    if result.quality is not None:
        q = result.quality
        verdict = "[green]all passed[/]" if q.success else f"[red]{len(q.failures())} failed[/]"
        out.print(f"[bold]quality[/]: {q.expectations} expectations, {verdict}")
        for line in q.failures():
            out.print(f"  FAIL {line}", highlight=False, markup=False, soft_wrap=True)
    counts = result.counts
    out.print(
        f"[bold]ran[/] {counts['events']:,} simulated events → {counts['lake_rows']:,} lake rows "
        f"in {counts['lake_files']:,} files → {counts['models']} models, in "
        + ", ".join(f"{name} {sec:.1f} s" for name, sec in result.seconds.items())
        + f" ({result.total_seconds:.1f} s)"
    )
    out.print("[bold]written[/]")
    for name, path in result.paths.items():
        out.print(f"  [bold]{name}[/]: {path}", soft_wrap=True)
    db = result.paths["DuckDB warehouse"]
    out.print(
        f"Query it: .venv/bin/python -c \"import duckdb; duckdb.connect('{db}', "
        "read_only=True).sql('select * from fct_chargeback_monthly').show()\"",
        soft_wrap=True,
    )


def print_summary(summaries: list[Any]) -> None:
    table = Table(
        "site",
        "requests",
        "IT kWh",
        "fac. kWh",
        "PUE",
        "Wh/req",
        "gCO2e/req",
        "p95 ms",
        "alerts",
        title="per site (facility Wh and SCI gCO2e per request)",
    )
    for s in summaries:
        table.add_row(
            s.site_id,
            f"{s.requests:,}",
            f"{s.it_kwh:,.2f}",
            f"{s.facility_kwh:,.2f}",
            f"{s.pue:.3f}",
            fmt_or_dash(s.wh_per_request, ".3f"),
            fmt_or_dash(s.gco2e_per_request, ".3f"),
            fmt_or_dash(s.p95_latency_ms, ".0f"),
            str(s.alerts),
        )
    out.print(table)


def fmt_or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_rebuild(stats: Any, location: str) -> None:
    span = f"{stats.date_from.isoformat()} .. {stats.date_to.isoformat()}"
    if stats.dry_run:
        table = Table(
            "dataset",
            "date",
            "rows now",
            "rows after",
            "change",
            "files now → after",
            title=f"dry run: what a rebuild of {span} would change (nothing written)",
        )
        for change in stats.changes:
            table.add_row(
                change.dataset,
                change.day.isoformat(),
                f"{change.rows_before:,}",
                f"{change.rows_after:,}",
                f"{change.rows_after - change.rows_before:+,}",
                f"{change.files_before:,} → {change.files_after + change.placeholders:,}",
            )
        out.print(table)
    title = ("dry run of " if stats.dry_run else "rebuilt ") + f"{location}, {span}"
    summary = Table("dataset", "dates", "rows before", "rows after", title=title)
    for name, changes in stats.by_dataset().items():
        days = [c.day for c in changes]
        shown = "-" if not days else days[0].isoformat()
        if len(days) > 1:
            shown += f" .. {days[-1].isoformat()} ({len(days)})"
        summary.add_row(
            name,
            shown,
            f"{sum(c.rows_before for c in changes):,}",
            f"{sum(c.rows_after for c in changes):,}",
        )
    out.print(summary)
    fed = sum(stats.inputs.values())
    out.print(
        f"read bronze from {stats.read_from.isoformat()} ({stats.warmup_days} days of warm-up): "
        f"{fed:,} records; {stats.relanded:,} re-landed rows dropped, {stats.duplicates:,} "
        f"duplicate deliveries counted once (run {stats.run_id})"
    )
    if stats.warmup_days < stats.required_warmup_days:
        out.print(
            f"[yellow]warm-up shorter than the {stats.required_warmup_days} days every column "
            "needs: SLO burns and budgets and energy-budget alerts may differ from the stream's[/]"
        )
    if stats.skipped_dates:
        out.print(
            "no bronze node telemetry or request logs, left as they were: "
            + ", ".join(day.isoformat() for day in stats.skipped_dates)
        )
    if stats.dead_letters or stats.late_events or stats.invalid:
        out.print(
            f"not rebuilt: {stats.dead_letters:,} dead letters, {stats.late_events:,} late "
            f"events, {stats.invalid:,} bronze rows no longer valid"
        )
    if stats.leftovers or stats.rescued:
        out.print(
            f"removed {stats.leftovers} leftover(s) of an interrupted rebuild; "
            f"moved {stats.rescued} file(s) landed meanwhile into place"
        )
    if stats.conflicts:
        raise PipelineError(
            "not swapped, files landed there during the rebuild: "
            + ", ".join(f"{c.dataset} {c.day.isoformat()}" for c in stats.conflicts)
            + "; run the rebuild again for those dates"
        )


def steps_bar() -> Progress:
    """A progress display of named steps (silent when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


class MinutesBar:
    """A rich progress bar over simulated minutes (silent when stderr is not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self._bar = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[events]:,} events"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._bar.add_task(label, total=total, events=0)
        self._events = 0

    def __enter__(self) -> MinutesBar:
        self._bar.start()
        return self

    def __call__(self, events: int) -> None:
        self._events += events
        self._bar.update(self._task, advance=1, events=self._events)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def print_sim_result(result: object) -> None:
    from pipeline.simulate import SimResult

    assert isinstance(result, SimResult)
    table = Table("topic", "valid records", title=f"simulated → {result.destination}")
    for name, count in sorted(result.stats.valid.items()):
        table.add_row(name, f"{count:,}")
    for kind, count in sorted(result.stats.faults.items()):
        table.add_row(f"[dim]fault {kind}", f"{count:,}")
    out.print(table)
    if result.files:
        for name, path in result.files.items():
            out.print(f"  {name}: {path}")
    out.print(
        f"{result.stats.emitted:,} events in {result.seconds:.1f} s "
        f"= {result.events_per_s:,.0f} events/s"
    )


def print_models(result: Any, db: Path) -> None:
    """The models `microdc models build` built: kind, rows and seconds each."""
    table = Table("model", "kind", "rows", "seconds", title=f"built {db} in {result.seconds:.1f} s")
    for model, rows, seconds in result.models:
        table.add_row(model.name, model.materialized, f"{rows:,}", f"{seconds:.2f}")
    out.print(table)
