"""`microdc collect`: node samples from the BMCs and exporters a site already runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.base import (
    BootstrapOpt,
    FleetOpt,
    PrefixOpt,
    Sink,
    app,
    choice_option,
    out,
    security_of,
    settings_with,
    start_logging,
    writing,
)


@app.command()
def collect(
    collectors: Annotated[
        Path | None,
        typer.Option(
            "--collectors",
            help="Collector file: the sources of each node and site (README: Collectors); "
            "default: the fleet file's `collectors:`.",
        ),
    ] = None,
    sink: Annotated[Sink, choice_option(Sink, "--sink", "Where records go.")] = Sink.FILES,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder the JSON-lines records are appended to.")
    ] = Path("out/collect"),
    buffer_dir: Annotated[
        Path,
        typer.Option(
            "--buffer", help="Kafka sink: folder of the disk buffer records wait in for Kafka."
        ),
    ] = Path("out/collect-buffer"),
    buffer_mb: Annotated[
        float, typer.Option(help="Kafka sink: the disk buffer's bound, MB (then polls are gaps).")
    ] = 512.0,
    send_timeout_s: Annotated[
        float,
        typer.Option(
            "--send-timeout", help="Kafka sink with --once: how long to wait for the broker, s."
        ),
    ] = 30.0,
    once: Annotated[bool, typer.Option(help="Poll every source once, then exit.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics (per source: polls, failures, staleness) on this port."),
    ] = None,
    metrics_bind: Annotated[
        str, typer.Option(help="Address /metrics binds to (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    fleet: FleetOpt = None,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Poll each node's BMC (Redfish) and exporters (Prometheus) and each site's meters (SNMP,
    Redfish PDUs); produce node and facility samples to Kafka, or append them as JSON lines
    that `microdc process --in` reads.

    Credentials come from environment variables or files named in the collector file, never
    from the command line. A source that is down is logged once, counted and retried with
    backoff; a node without power readings gets no sample (a gap, never a guess). With
    --sink kafka every record goes to a bounded disk buffer first: while Kafka is down they
    wait there, and are sent in order, once, when it is back (also after a restart).

    Example: microdc collect --collectors collectors.yaml --sink kafka --bootstrap 127.0.0.1:9092
    """
    from prometheus_client import start_http_server

    from pipeline.collect.config import load_collectors
    from pipeline.collect.run import CollectStats, FileOutput
    from pipeline.collect.run import collect as run_collect
    from pipeline.collect.service import CollectorMetrics
    from pipeline.errors import ConfigError
    from pipeline.fleet import load_fleet

    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, fleet=fleet)
    fleet_data = load_fleet(settings.fleet)
    if collectors is None:
        if fleet_data.collectors is None or settings.fleet is None:
            raise ConfigError(
                "no collector file: give --collectors, or name one in the fleet file "
                "(collectors: collectors.yaml, relative to the fleet file)"
            )
        collectors = Path(settings.fleet).parent / fleet_data.collectors
    config = load_collectors(collectors, fleet_data)
    start_logging(settings, level="INFO")  # once the files are good: errors are one line
    metrics = CollectorMetrics()
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_bind, registry=metrics.registry)

    def report(stats: CollectStats) -> None:
        if not once:
            out.print(
                f"polls {stats.polls:,}  samples {stats.samples:,}  gaps {stats.gaps:,}  "
                f"dead letters {stats.dead_letters:,}"
            )

    if sink is Sink.FILES:
        with writing(out_dir), FileOutput(out_dir) as output:
            stats = asyncio.run(
                run_collect(config, fleet_data, output, once=once, metrics=metrics, report=report)
            )
        where = str(out_dir)
    else:
        stats = asyncio.run(
            _to_kafka(
                config,
                fleet_data,
                settings.kafka_bootstrap,
                settings.topic_prefix,
                security_of(settings),
                buffer_dir,
                round(buffer_mb * 1024 * 1024),
                send_timeout_s,
                once=once,
                metrics=metrics,
                report=report,
            )
        )
        where = f"Kafka {settings.kafka_bootstrap} (buffer {buffer_dir})"
    out.print(
        f"{stats.samples:,} samples, {stats.gaps:,} gaps, {stats.dead_letters:,} dead "
        f"letters in {stats.polls:,} poll(s) -> {where}"
    )


async def _to_kafka(
    config: Any,
    fleet: Any,
    bootstrap: str,
    prefix: str,
    security: Any,
    buffer_dir: Path,
    max_bytes: int,
    send_timeout_s: float,
    **options: Any,
) -> Any:
    from pipeline.collect.buffer import DiskBuffer
    from pipeline.collect.run import BufferedOutput
    from pipeline.collect.run import collect as run_collect
    from pipeline.collect.sender import BufferedKafkaSender

    with writing(buffer_dir, "--buffer"):
        buffer_dir.mkdir(parents=True, exist_ok=True)
    segment = max(1024 * 1024, min(64 * 1024 * 1024, max_bytes // 8))
    with DiskBuffer(buffer_dir, max_bytes=max_bytes, segment_bytes=segment) as buffer:
        sender = BufferedKafkaSender(buffer, bootstrap, topic_prefix=prefix, security=security)
        await sender.start()
        try:
            output = BufferedOutput(buffer, sender.notify, options["metrics"])
            stats = await run_collect(config, fleet, output, **options)
            if options.get("once") and not await sender.drained(timeout_s=send_timeout_s):
                out.print(
                    f"Kafka has not confirmed {buffer.pending_records:,} record(s) within "
                    f"{send_timeout_s:g} s: they wait in {buffer_dir} for the next run"
                )
        finally:
            # what Kafka has not confirmed stays in the buffer for the next start
            await sender.stop()
    return stats
