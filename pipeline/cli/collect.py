"""`microdc collect`: node samples from the BMCs and exporters a site already runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.base import FleetOpt, app, out, settings_with, start_logging, writing


@app.command()
def collect(
    collectors: Annotated[
        Path,
        typer.Option(
            "--collectors", help="Collector file: the sources of each node (README: Collectors)."
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder the JSON-lines records are appended to.")
    ] = Path("out/collect"),
    once: Annotated[bool, typer.Option(help="Poll every source once, then exit.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics (per source: polls, failures, staleness) on this port."),
    ] = None,
    metrics_bind: Annotated[
        str, typer.Option(help="Address /metrics binds to (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    fleet: FleetOpt = None,
) -> None:
    """Poll each node's Redfish BMC and Prometheus exporters; append node samples (and dead
    letters) as JSON lines that `microdc process --in` reads.

    Credentials come from environment variables or files named in the collector file, never
    from the command line. A source that is down is logged once, counted and retried with
    backoff; a node without power readings gets no sample (a gap, never a guess).

    Example: microdc collect --collectors collectors.yaml --out out/collect --once
    """
    from prometheus_client import start_http_server

    from pipeline.collect.config import load_collectors
    from pipeline.collect.run import CollectStats, FileOutput
    from pipeline.collect.run import collect as run_collect
    from pipeline.collect.service import CollectorMetrics
    from pipeline.fleet import load_fleet

    settings = settings_with(fleet=fleet)
    start_logging(settings, level="INFO")
    fleet_data = load_fleet(settings.fleet)
    config = load_collectors(collectors, fleet_data)
    metrics = CollectorMetrics()
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_bind, registry=metrics.registry)

    def report(stats: CollectStats) -> None:
        if not once:
            out.print(
                f"polls {stats.polls:,}  samples {stats.samples:,}  gaps {stats.gaps:,}  "
                f"dead letters {stats.dead_letters:,}"
            )

    with writing(out_dir), FileOutput(out_dir) as output:
        stats = asyncio.run(
            run_collect(config, fleet_data, output, once=once, metrics=metrics, report=report)
        )
    out.print(
        f"{stats.samples:,} node samples, {stats.gaps:,} gaps, {stats.dead_letters:,} dead "
        f"letters in {stats.polls:,} poll(s) -> {out_dir}"
    )
