"""`microdc collect` and `microdc grid-backfill`: node samples, request logs and grid intensity
from what a site already runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pipeline.cli.base import (
    BootstrapOpt,
    Choice,
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

T = TypeVar("T")

#: The options both commands share: where the records go.
SinkOpt = Annotated[Sink, choice_option(Sink, "--sink", "Where records go.")]
OutDirOpt = Annotated[
    Path, typer.Option("--out", help="Folder the JSON-lines records are appended to.")
]
BufferDirOpt = Annotated[
    Path,
    typer.Option(
        "--buffer", help="Kafka sink: folder of the disk buffer records wait in for Kafka."
    ),
]


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
    sink: SinkOpt = Sink.FILES,
    out_dir: OutDirOpt = Path("out/collect"),
    buffer_dir: BufferDirOpt = Path("out/collect-buffer"),
    buffer_mb: Annotated[
        float, typer.Option(help="Kafka sink: the disk buffer's bound, MB (then polls are gaps).")
    ] = 512.0,
    send_timeout_s: Annotated[
        float,
        typer.Option(
            "--send-timeout", help="Kafka sink with --once: how long to wait for the broker, s."
        ),
    ] = 30.0,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state", help="Folder of the access logs' read positions (keep it across restarts)."
        ),
    ] = Path("out/collect-state"),
    once: Annotated[
        bool,
        typer.Option(
            help="Poll every source once and read the access logs to their end, then exit."
        ),
    ] = False,
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
    Redfish PDUs), follow access logs (nginx, Envoy), receive OTLP/HTTP server spans and poll
    carbon-intensity services; produce node and facility samples, request logs and grid
    intensity to Kafka, or append them as JSON lines that `microdc process --in` reads.

    Credentials come from environment variables or files named in the collector file, never
    from the command line. A source that is down is logged once, counted and retried with
    backoff; a node without power readings gets no sample (a gap, never a guess). With
    --sink kafka every record goes to a bounded disk buffer first: while Kafka is down they
    wait there, and are sent in order, once, when it is back (also after a restart).

    Example: microdc collect --collectors collectors.yaml --sink kafka --bootstrap 127.0.0.1:9092
    """
    from prometheus_client import start_http_server

    from pipeline.collect.config import load_collectors
    from pipeline.collect.run import CollectStats
    from pipeline.collect.run import collect as run_collect
    from pipeline.collect.service import CollectorMetrics
    from pipeline.fleet import load_fleet

    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, fleet=fleet)
    fleet_data = load_fleet(settings.fleet)
    config = load_collectors(_collector_file(collectors, settings, fleet_data), fleet_data)
    start_logging(settings, level="INFO")  # once the files are good: errors are one line
    metrics = CollectorMetrics()
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_bind, registry=metrics.registry)

    def report(stats: CollectStats) -> None:
        if not once:
            out.print(_summary(stats))

    async def body(emit: Emit) -> CollectStats:
        return await run_collect(
            config, fleet_data, emit, state_dir=state_dir, once=once, metrics=metrics, report=report
        )

    if any(source.kind == "access_log" for source in config.requests):
        with writing(state_dir, "--state"):  # only where there are positions to keep
            state_dir.mkdir(parents=True, exist_ok=True)
    target = _Output(
        sink, out_dir, buffer_dir, buffer_mb, send_timeout_s, settings, metrics, wait=once
    )
    stats = asyncio.run(target.run(body))
    out.print(
        f"{stats.samples:,} samples, {stats.gaps:,} gaps, {stats.requests:,} requests, "
        f"{stats.grid:,} grid values, {stats.dead_letters:,} dead letters in {stats.polls:,} "
        f"poll(s) -> {target.where}"
    )


Emit = Callable[[Any], Awaitable[bool]]


def _collector_file(collectors: Path | None, settings: Any, fleet: Any) -> Path:
    from pipeline.errors import ConfigError

    if collectors is not None:
        return collectors
    if fleet.collectors is None or settings.fleet is None:
        raise ConfigError(
            "no collector file: give --collectors, or name one in the fleet file "
            "(collectors: collectors.yaml, relative to the fleet file)"
        )
    return Path(settings.fleet).parent / str(fleet.collectors)


class Factor(Choice):
    LIFECYCLE = "lifecycle"
    DIRECT = "direct"

    @classmethod
    def message(cls) -> str:
        return "{option} {value!r} must be lifecycle or direct"


@app.command("grid-backfill")
def grid_backfill(
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="An Electricity Maps data-portal CSV (hourly) to load."),
    ] = None,
    zone: Annotated[
        str | None,
        typer.Option(help="--csv: the fleet grid zone it is for; else: only this zone's sources."),
    ] = None,
    factor: Annotated[
        Factor, choice_option(Factor, "--factor", "--csv: which column (emission factor type).")
    ] = Factor.LIFECYCLE,
    start: Annotated[
        str | None,
        typer.Option("--from", help="A date range from the grid sources: first day (UTC)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="...up to this day (UTC, exclusive).")
    ] = None,
    collectors: Annotated[
        Path | None,
        typer.Option(
            "--collectors", help="Collector file with the grid sources (default: the fleet's)."
        ),
    ] = None,
    sink: SinkOpt = Sink.FILES,
    out_dir: OutDirOpt = Path("out/collect"),
    buffer_dir: BufferDirOpt = Path("out/collect-buffer"),
    send_timeout_s: Annotated[
        float,
        typer.Option("--send-timeout", help="Kafka sink: how long to wait for the broker, s."),
    ] = 60.0,
    fleet: FleetOpt = None,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Load grid carbon intensity once: a data-portal CSV (--csv FILE --zone Z), or a date
    range (--from DAY --to DAY) from the collector file's grid sources (API keys from their
    environment variables). The records go where `microdc collect` sends them; the stream and
    warehouse use the latest value per zone and hour, so loading twice changes nothing.

    Example: microdc grid-backfill --from 2026-11-01 --to 2026-12-01 --sink kafka
    """
    from datetime import UTC, datetime

    from pipeline.collect.config import load_collectors
    from pipeline.collect.gridpoll import backfill, csv_records
    from pipeline.collect.service import CollectorMetrics, PollResult
    from pipeline.errors import ConfigError
    from pipeline.fleet import load_fleet
    from pipeline.wallclock import wall_clock_ms

    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, fleet=fleet)
    fleet_data = load_fleet(settings.fleet)
    zones = sorted({site.grid_zone for site in fleet_data.sites})
    if zone is not None and zone not in zones:
        raise ConfigError(
            f"--zone {zone!r} is no site's grid_zone (the fleet has {', '.join(zones)})"
        )
    if (csv_file is None) == (start is None and end is None):
        raise ConfigError("give --csv FILE --zone Z, or --from DAY --to DAY (not both)")

    def day(value: str | None, option: str) -> datetime:
        try:
            return datetime.strptime(value or "", "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError(f"{option} {value!r} must be a day, YYYY-MM-DD") from None

    async def body(emit: Emit) -> PollResult:
        if csv_file is not None:
            if zone is None:
                raise ConfigError("--csv needs --zone: the fleet grid zone the file is for")
            result = csv_records(csv_file, zone, factor.value, at_ms=wall_clock_ms())
        else:
            first, last = day(start, "--from"), day(end, "--to")
            if last <= first:
                raise ConfigError("--to must be after --from")
            config = load_collectors(_collector_file(collectors, settings, fleet_data), fleet_data)
            sources = [s for s in config.grid if zone is None or s.zone == zone]
            if not sources:
                raise ConfigError(
                    "the collector file has no grid sources" + (f" for {zone}" if zone else "")
                )
            result = PollResult()
            for source in sources:
                part = await backfill(source, first, last)
                result.grid += part.grid
                result.dead_letters += part.dead_letters
        if not await emit(result):
            raise ConfigError("the disk buffer is full: nothing was loaded (raise --buffer-mb?)")
        return result

    target = _Output(
        sink, out_dir, buffer_dir, 512.0, send_timeout_s, settings, CollectorMetrics(), wait=True
    )
    result = asyncio.run(target.run(body))
    out.print(
        f"{len(result.grid):,} grid values, {len(result.dead_letters):,} skipped (dead letters) "
        f"-> {target.where}"
    )


def _summary(stats: Any) -> str:
    return (
        f"polls {stats.polls:,}  samples {stats.samples:,}  gaps {stats.gaps:,}  "
        f"requests {stats.requests:,}  grid values {stats.grid:,}  "
        f"dead letters {stats.dead_letters:,}"
    )


@dataclass
class _Output:
    """Where records go: JSON-lines files, or Kafka through the disk buffer."""

    sink: Sink
    out_dir: Path
    buffer_dir: Path
    buffer_mb: float
    send_timeout_s: float
    settings: Any
    metrics: Any
    wait: bool

    @property
    def max_bytes(self) -> int:
        return round(self.buffer_mb * 1024 * 1024)

    @property
    def where(self) -> str:
        if self.sink is Sink.FILES:
            return str(self.out_dir)
        return f"Kafka {self.settings.kafka_bootstrap} (buffer {self.buffer_dir})"

    async def run(self, body: Callable[[Emit], Awaitable[T]]) -> T:
        from pipeline.collect.buffer import DiskBuffer
        from pipeline.collect.run import BufferedOutput, FileOutput
        from pipeline.collect.sender import BufferedKafkaSender

        if self.sink is Sink.FILES:
            with writing(self.out_dir), FileOutput(self.out_dir) as output:
                return await body(output)
        with writing(self.buffer_dir, "--buffer"):
            self.buffer_dir.mkdir(parents=True, exist_ok=True)
        segment = max(1024 * 1024, min(64 * 1024 * 1024, self.max_bytes // 8))
        with DiskBuffer(self.buffer_dir, max_bytes=self.max_bytes, segment_bytes=segment) as buffer:
            settings = self.settings
            sender = BufferedKafkaSender(
                buffer,
                settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                security=security_of(settings),
            )
            await sender.start()
            try:
                result = await body(BufferedOutput(buffer, sender.notify, self.metrics))
                if self.wait and not await sender.drained(timeout_s=self.send_timeout_s):
                    out.print(
                        f"Kafka has not confirmed {buffer.pending_records:,} record(s) within "
                        f"{self.send_timeout_s:g} s: they wait in {self.buffer_dir} for the "
                        "next run"
                    )
            finally:
                # what Kafka has not confirmed stays in the buffer for the next start
                await sender.stop()
        return result
