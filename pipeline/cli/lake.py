"""`microdc lake compact` and `lake rebuild`: maintenance of the Parquet lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.base import (
    FacilityWaitOpt,
    FleetOpt,
    GridWaitOpt,
    LakeOpt,
    console,
    lake_app,
    out,
    parse_day,
    settings_with,
)
from pipeline.cli.render import (
    print_rebuild,
)
from pipeline.errors import ConfigError
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S


@lake_app.command("compact")
def lake_compact(
    lake: LakeOpt = None,
    dataset: Annotated[
        str | None, typer.Option(help="Only this dataset, e.g. request_log (default: all).")
    ] = None,
    target_mb: Annotated[int, typer.Option(help="Target size of a merged file, MiB.")] = 128,
    older_than_days: Annotated[
        int, typer.Option(help="Compact dates at least this many days before the newest one.")
    ] = 1,
) -> None:
    """Merge the small files of closed date partitions into files near --target-mb.

    Rows are unchanged; each directory is swapped atomically, so readers see the old files or
    the merged ones. Safe while `microdc land` runs: the newest segment of every partition is
    kept and a directory a record lands in meanwhile is skipped until the next run.

    Example: microdc lake compact --lake out/lake
    """
    from pipeline.lake import BY_NAME, Lake
    from pipeline.lake.compact import MIB, compact

    location = settings_with(lake=lake).lake
    if "://" not in location and not Path(location).is_dir():
        raise ConfigError(f"no lake at {location}: nothing to compact")
    chosen = None
    if dataset is not None:
        chosen = BY_NAME.get(dataset)
        if chosen is None:
            raise ConfigError(f"--dataset {dataset!r} is not one of {', '.join(sorted(BY_NAME))}")
    target = Lake(location)
    stats = compact(target, chosen, target_bytes=target_mb * MIB, older_than_days=older_than_days)
    table = Table(
        "dataset",
        "files before → after",
        "MiB before → after",
        "rows rewritten",
        "dirs swapped (skipped)",
        title=f"compacted {target.uri}",
    )
    for name, d in sorted(stats.datasets.items()):
        table.add_row(
            name,
            f"{d.files_before:,} → {d.files_after:,}",
            f"{d.bytes_before / MIB:,.1f} → {d.bytes_after / MIB:,.1f}",
            f"{d.rows:,}",
            f"{d.directories:,} ({d.skipped:,})",
        )
    out.print(table)
    if stats.leftovers or stats.rescued:
        out.print(
            f"removed {stats.leftovers} leftover(s) of an interrupted compaction; "
            f"moved {stats.rescued} file(s) landed meanwhile into place"
        )


@lake_app.command("rebuild")
def lake_rebuild(
    date_from: Annotated[
        str, typer.Option("--from", help="First UTC date to rebuild, YYYY-MM-DD.")
    ],
    date_to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Last UTC date to rebuild, YYYY-MM-DD; before the lake's newest date unless "
            "--force.",
        ),
    ],
    lake: LakeOpt = None,
    fleet: FleetOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the rows of each dataset and date now and after; write nothing.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Allow --to on or after the newest date (only when nothing lands there).",
        ),
    ] = False,
    warmup_days: Annotated[
        int | None,
        typer.Option(
            help="Days of bronze before --from run through the core first (default: the 3-day "
            "burn windows, the SLO period and the month so far, so every column is exact).",
            min=0,
        ),
    ] = None,
    lateness_s: Annotated[
        float, typer.Option(help="Allowed lateness, seconds (the worker's).")
    ] = 120.0,
    facility_wait_s: FacilityWaitOpt = FACILITY_WAIT_S,
    grid_wait_s: GridWaitOpt = GRID_WAIT_S,
) -> None:
    """Recompute silver energy, site and SLO minutes and alerts of a date range from bronze.

    Runs the stream core of `microdc process` over the bronze inputs (late records included)
    of the range and its warm-up, then swaps each date directory of energy_minutes,
    site_minutes, slo_burn and alerts atomically for the rebuilt one. late_events and
    dead_letters are kept as they are.

    Example: microdc lake rebuild --lake out/lake --from 2026-03-02 --to 2026-03-03 --dry-run
    """
    from pipeline.fleet import load_fleet
    from pipeline.lake.rebuild import rebuild

    settings = settings_with(lake=lake, fleet=fleet)
    first, last = parse_day(date_from, "--from"), parse_day(date_to, "--to")
    location = settings.lake
    if "://" not in location and not Path(location).is_dir():
        raise ConfigError(f"no lake at {location}: nothing to rebuild")
    fleet_data = load_fleet(settings.fleet)
    with console.status("rebuilding from bronze (the stream core over the warm-up and range)"):
        stats = rebuild(
            location,
            first,
            last,
            fleet_data,
            force=force,
            dry_run=dry_run,
            warmup_days=warmup_days,
            lateness_s=lateness_s,
            facility_wait_s=facility_wait_s,
            grid_wait_s=grid_wait_s,
        )
    print_rebuild(stats, location)
