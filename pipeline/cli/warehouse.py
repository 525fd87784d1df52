"""`microdc models build`, `export`, `report` and `quality check`: the DuckDB warehouse and what
is made from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.base import (
    ChargebackFormat,
    DbOpt,
    FleetOpt,
    LakeOpt,
    TableFormat,
    app,
    choice_option,
    console,
    export_app,
    models_app,
    out,
    quality_app,
    settings_with,
    writing,
)
from pipeline.cli.render import (
    print_models,
    steps_bar,
)
from pipeline.errors import ConfigError


@models_app.command("build")
def models_build(lake: LakeOpt = None, db: DbOpt = None, fleet: FleetOpt = None) -> None:
    """Build every model in sql/ (staging views, marts, dim_ tables) into a DuckDB file.

    Example: microdc models build --lake out/lake --db out/warehouse.duckdb
    """
    from pipeline.fleet import load_fleet
    from pipeline.lake import Lake
    from pipeline.models.build import build

    settings = settings_with(lake=lake, warehouse=db, fleet=fleet)
    location, target = settings.lake, settings.warehouse
    if "://" not in location and not Path(location).is_dir():
        raise ConfigError(
            f"no lake at {location}: land one with `microdc land` (or run `microdc demo`), "
            "or pass --lake / set MICRODC_LAKE"
        )
    with writing(target, "--db"):
        target.parent.mkdir(parents=True, exist_ok=True)
    with steps_bar() as bar:
        task = bar.add_task("models", total=None)

        def step(model: Any, i: int, total: int) -> None:
            bar.update(task, completed=i, total=total, description=f"{model.name}")

        result = build(Lake(location), load_fleet(settings.fleet), target, progress=step)
        bar.update(task, completed=len(result.models), description="models")
    print_models(result, target)


@models_app.command("dims")
def models_dims(db: DbOpt = None, fleet: FleetOpt = None) -> None:
    """Write only the dim_ tables of the fleet file into a DuckDB file (for `dbt build`).

    sql/ is also a dbt project: dbt reads these tables as its `fleet` source. The rest of the
    file is left as it is.

    Example: microdc models dims --db out/dbt.duckdb
    """
    from pipeline.fleet import load_fleet
    from pipeline.models.build import build_dims

    settings = settings_with(warehouse=db, fleet=fleet)
    target = settings.warehouse
    with writing(target, "--db"):
        names = build_dims(load_fleet(settings.fleet), target)
    console.print(f"{len(names)} dim_ tables ({', '.join(names)}) in {target}")


@export_app.command("chargeback")
def export_chargeback(
    month: Annotated[str, typer.Option(help="Site-local calendar month, YYYY-MM.")],
    out_path: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[
        ChargebackFormat,
        choice_option(ChargebackFormat, "--format", "focus: FinOps FOCUS 1.2 CSV."),
    ] = ChargebackFormat.CSV,
    db: DbOpt = None,
) -> None:
    """Write one month of fct_chargeback_monthly (team x site) as CSV, Parquet, Excel or FOCUS.

    Stable column order, decimals at 6 places, ISO dates; rows ordered by site and team.
    `focus` writes FinOps FOCUS 1.2 rows (one per team x site, BilledCost = total_usd) as CSV.

    Example: microdc export chargeback --month 2026-03 --format focus --out out/focus-2026-03.csv
    """
    from pipeline.models.export import export_chargeback as export

    with writing(out_path):
        rows = export(settings_with(warehouse=db).warehouse, month, fmt.value, out_path)
    out.print(f"wrote {rows:,} chargeback rows for {month} to {out_path}")


@export_app.command("roi")
def export_roi(
    out_path: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[
        TableFormat, choice_option(TableFormat, "--format", "File format.")
    ] = TableFormat.CSV,
    db: DbOpt = None,
) -> None:
    """Write fct_roi_site (one row per site: micro-DC vs hyperscale baseline) as a file.

    Stable column order, decimals at 6 places; rows ordered by site.

    Example: microdc export roi --format xlsx --out out/roi.xlsx
    """
    from pipeline.models.export import export_roi as export

    with writing(out_path):
        rows = export(settings_with(warehouse=db).warehouse, fmt.value, out_path)
    out.print(f"wrote {rows:,} ROI rows to {out_path}")


@app.command()
def report(
    db: DbOpt = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default: report.html beside the --db)."),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Page title (default: a generic one).")] = None,
) -> None:
    """Write one self-contained HTML report (charts and tables) of the warehouse; works offline.

    Energy per request and p95 latency per site, PUE, carbon per request, SLO budgets and burn,
    chargeback by team and ROI against the cloud baseline; plotly.js is inlined, no network.

    Example: microdc report --db out/warehouse.duckdb --out out/report.html
    """
    from pipeline.report import build_report

    warehouse = settings_with(warehouse=db).warehouse
    target = out_path or warehouse.parent / "report.html"
    with writing(target):
        result = build_report(warehouse, target, title=title)
    out.print(
        f"wrote {result.path} ({result.size_bytes:,} bytes, {result.charts} charts, "
        f"{result.seconds:.1f} s)"
    )


@quality_app.command("check")
def quality_check(
    db: DbOpt = None,
    docs: Annotated[
        Path | None,
        typer.Option(help="Folder for the Data Docs HTML (default: <db dir>/quality-docs)."),
    ] = None,
) -> None:
    """Validate the warehouse with Great Expectations suites per layer and reconciliations.

    Bronze, silver and mart tables and the energy/chargeback reconciliations; writes Data Docs
    HTML and exits 1, one line per failed expectation, when anything fails.

    Example: microdc quality check --db out/warehouse.duckdb
    """
    from pipeline.quality import print_summary, run_checks

    warehouse = settings_with(warehouse=db).warehouse
    with (
        writing(docs or warehouse.parent / "quality-docs", "--docs"),
        console.status("validating (Great Expectations)") as status,
    ):
        result = run_checks(
            warehouse, docs, progress=lambda suite: status.update(f"validating {suite}")
        )
    print_summary(result, out)
    if not result.success:
        failures = result.failures()
        out.print(f"[red]{len(failures)} failed check(s):[/]")
        for line in failures:
            out.print(f"FAIL {line}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)
