"""The `microdc` command line: parse options, call one library function, map errors to exits."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import CONFIG_ENV, Settings, use_config_file
from pipeline.errors import ConfigError, OutputError, PipelineError, one_line
from pipeline.kafka_security import KafkaSecurity
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S

app = typer.Typer(
    name="microdc",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)  # its help text: the docstring of `_global_options`
topics_app = typer.Typer(
    no_args_is_help=True, help="Create and inspect the pipeline's Kafka topics."
)
fleet_app = typer.Typer(no_args_is_help=True, help="Validate and describe fleet reference files.")
kafka_app = typer.Typer(no_args_is_help=True, help="Run a local Apache Kafka broker (no Docker).")
app.add_typer(topics_app, name="topics")
app.add_typer(fleet_app, name="fleet")
app.add_typer(kafka_app, name="kafka")
models_app = typer.Typer(no_args_is_help=True, help="Build the DuckDB warehouse from the lake.")
app.add_typer(models_app, name="models")
schemas_app = typer.Typer(no_args_is_help=True, help="Generated contracts in schemas/.")
app.add_typer(schemas_app, name="schemas")
config_app = typer.Typer(
    no_args_is_help=True, help="Inspect settings (flags > MICRODC_* > config file > defaults)."
)
app.add_typer(config_app, name="config")

console = Console(stderr=True)
out = Console()

DEBUG_ENV = "MICRODC_DEBUG"


@dataclass
class _Globals:
    """The global options of this invocation (set by `_global_options`, read by `main`)."""

    log_format: str | None = None
    debug: bool = False


_globals = _Globals()


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=f"TOML settings file (default: ${CONFIG_ENV}, else ./microdc.toml if present). "
            "Flags beat MICRODC_* variables, which beat the file.",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Logs of worker, land and simulate: text or json, one object a line "
            "(default: $MICRODC_LOG_FORMAT or text).",
        ),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Print the traceback of an error (also {DEBUG_ENV}=1)."),
    ] = False,
) -> None:
    """Energy, cost, carbon and SLOs per request for micro data centers.

    Settings: flags > MICRODC_* variables > the TOML file (--config) > defaults.

    Example: microdc demo
    """
    if log_format is not None and log_format not in ("text", "json"):
        raise typer.BadParameter(f"{log_format!r} is not text or json", param_hint="--log-format")
    use_config_file(config)
    _globals.log_format = log_format
    _globals.debug = debug


def _start_logging(settings: Settings, level: str = "WARNING") -> str:
    """Set up logging for a long-running command; returns the format (flag > settings)."""
    from pipeline.logs import configure_logging

    if not isinstance(logging.getLevelName(level.upper()), int):
        raise ConfigError(f"log level {level!r}: use debug, info, warning or error")
    fmt = _globals.log_format or settings.log_format
    configure_logging(fmt, level)
    return fmt


def _say(message: str) -> None:
    """A progress line of a long-running command as a log record (JSON log format)."""
    logging.getLogger("pipeline.cli").info(message)


def _security(settings: Settings) -> KafkaSecurity:
    """The Kafka security settings (protocol, SASL, TLS files), validated."""
    return KafkaSecurity.from_settings(settings)


@contextmanager
def _writing(target: Path, option: str = "--out") -> Iterator[None]:
    """Turn an `OSError` about `target` into one `OutputError` line: which path, why, what to do.

    It counts when it names `target`, a folder on the way to it, something inside it or a file
    beside it (a temporary file renamed into place), or no file at all (a full disk fails a write
    that way); any other `OSError` (an input, say) passes through unchanged.
    """
    try:
        yield
    except OSError as exc:
        if not _names_output(exc, target):
            raise
        raise OutputError(str(target), _os_reason(exc, target), option) from exc


def _names_output(exc: OSError, target: Path) -> bool:
    """Whether `exc` is about `target` (see `_writing`), so that only output errors are renamed."""
    if not isinstance(exc.filename, str):
        return exc.filename is None
    named, wanted = Path(exc.filename).resolve(), target.resolve()
    return (
        named == wanted
        or wanted in named.parents
        or named in wanted.parents
        or named.parent == wanted.parent
    )


def _os_reason(exc: OSError, target: Path) -> str:
    """The system's reason, naming the file that stands where a folder must be, if one does."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # a folder was to be made where a file is
        blocker = next((p for p in (target, *target.parents) if p.is_file()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder ({reason})"
    if exc.errno == errno.EISDIR and target.is_dir():
        return f"{target} is a folder, not a file ({reason})"
    if exc.filename is not None and str(exc.filename) != str(target):
        return f"{reason}: {exc.filename}"
    return reason


_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}

FleetOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet", help="Fleet YAML (default: $MICRODC_FLEET or the built-in demo fleet)."
    ),
]
BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap", help="Kafka bootstrap HOST:PORT (default: $MICRODC_KAFKA_BOOTSTRAP)."
    ),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix", help="Prefix for every topic name (default: $MICRODC_TOPIC_PREFIX)."
    ),
]


def parse_duration(text: str) -> int:
    """Minutes in a duration like `90m`, `6h` or `14d`."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"duration {text!r} is not like 90m, 6h or 14d")
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def parse_start(text: str) -> datetime:
    """An aware UTC start time from RFC 3339 text (a bare date means midnight UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"start {text!r} is not an RFC 3339 time such as 2026-03-02T00:00Z"
        ) from exc
    if value.tzinfo is None:
        if "T" in text:
            raise ConfigError(f"start {text!r} has no time zone; add Z for UTC")
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@app.command()
def simulate(
    sink: Annotated[str, typer.Option(help="Where records go: files or kafka.")] = "files",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for JSON-lines output.")] = Path(
        "out/sim"
    ),
    duration: Annotated[str, typer.Option(help="Simulated time span: 90m, 6h, 14d.")] = "1h",
    start: Annotated[str, typer.Option(help="Simulated start, UTC.")] = "2026-03-02T00:00Z",
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same records.")] = 7,
    rps_scale: Annotated[
        float, typer.Option(help="Multiplies every service's request rate.")
    ] = 1.0,
    node_interval_s: Annotated[int, typer.Option(help="Node telemetry interval, s.")] = 30,
    malformed_rate: Annotated[float, typer.Option(help="Malformed copies per valid record.")] = 0.0,
    late_rate: Annotated[float, typer.Option(help="Share of records past the lateness.")] = 0.0,
    out_of_order_rate: Annotated[float, typer.Option(help="Share delayed within it.")] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(help="Share sent twice.")] = 0.0,
    fleet: FleetOpt = None,
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
) -> None:
    """Simulate the fleet's four input streams, seeded and deterministic.

    Example: microdc simulate --duration 6h --rps-scale 0.1 --out out/sim
    """
    from pipeline.fleet import load_fleet
    from pipeline.simulate import (
        FaultConfig,
        SimConfig,
        SimResult,
        simulate_to_files,
        simulate_to_kafka,
    )

    settings = Settings()
    _start_logging(settings)
    if sink not in ("files", "kafka"):
        raise ConfigError(f"--sink {sink!r} must be files or kafka")
    config = SimConfig(
        start=parse_start(start),
        minutes=parse_duration(duration),
        seed=seed,
        rps_scale=rps_scale,
        node_interval_s=node_interval_s,
        faults=FaultConfig(
            malformed=malformed_rate,
            late=late_rate,
            out_of_order=out_of_order_rate,
            duplicate=duplicate_rate,
        ),
    )
    fleet_data = load_fleet(fleet or settings.fleet)
    with _progress(config.minutes, "simulating") as advance:
        result: SimResult
        if sink == "files":
            result = simulate_to_files(fleet_data, config, out_dir, progress=advance)
        else:
            result = simulate_to_kafka(
                fleet_data,
                config,
                bootstrap or settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix if topic_prefix is None else topic_prefix,
                progress=advance,
                security=_security(settings),
            )
    _print_sim_result(result)


FacilityWaitOpt = Annotated[
    float,
    typer.Option(
        help="Event-time seconds a silent facility feed holds energy and site minutes back "
        "(then design PUE). Worker and process must agree.",
        min=0.0,
    ),
]
GridWaitOpt = Annotated[
    float,
    typer.Option(
        help="Event-time seconds a silent grid feed holds energy and site minutes back (then "
        "the last value, or the static fallback). Worker and process must agree.",
        min=0.0,
    ),
]


@app.command()
def process(
    in_dir: Annotated[
        Path, typer.Option("--in", help="Folder of simulator JSON-lines files.")
    ] = Path("out/sim"),
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for one file per output topic.")
    ] = Path("out/stream"),
    lateness_s: Annotated[float, typer.Option(help="Allowed lateness, seconds.")] = 120.0,
    facility_wait_s: FacilityWaitOpt = FACILITY_WAIT_S,
    grid_wait_s: GridWaitOpt = GRID_WAIT_S,
    fleet: FleetOpt = None,
) -> None:
    """Run the stream core in-process (no Kafka) over JSON-lines input files.

    Example: microdc simulate --out out/sim && microdc process --in out/sim --out out/stream
    """
    from pipeline.embedded import read_jsonl_dir, summarize, write_outputs
    from pipeline.fleet import load_fleet
    from pipeline.runner import run_embedded

    fleet_data = load_fleet(fleet or Settings().fleet)
    with _writing(out_dir):  # before the run, not after it: a wrong --out fails at once
        out_dir.mkdir(parents=True, exist_ok=True)
    result = run_embedded(
        fleet_data,
        read_jsonl_dir(in_dir),
        lateness_s=lateness_s,
        facility_wait_s=facility_wait_s,
        grid_wait_s=grid_wait_s,
    )
    with _writing(out_dir):
        paths = write_outputs(result, out_dir)
    _print_summary(summarize(result))
    for topic, path in paths.items():
        out.print(f"  {topic}: {len(result.outputs[topic]):,} records → {path}")
    _print_dead_letters(result.outputs.get("mdc.dead-letters", []), result.internal_errors)
    if result.duplicates:
        out.print(f"  duplicate deliveries counted once: {result.duplicates:,}")


def _print_dead_letters(letters: list[Any], internal_errors: int) -> None:
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


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (replaced).")] = Path(
        "out/demo"
    ),
    days: Annotated[
        float, typer.Option(help="Simulated days from 2026-03-02 (0.25 = 6 h, 14 = two weeks).")
    ] = 2.0,
    seed: Annotated[int, typer.Option(help="Random seed of the simulator.")] = 7,
    fleet: FleetOpt = None,
    nodes_per_site: Annotated[
        int,
        typer.Option(help="Servers simulated per site (0 = every node of the fleet file)."),
    ] = 4,
    rps_scale: Annotated[float, typer.Option(help="Multiplies every service's request rate.")] = (
        0.005
    ),
    quality: Annotated[
        bool, typer.Option(help="Run the Great Expectations checks (and write Data Docs).")
    ] = True,
) -> None:
    """Run the whole pipeline on the embedded default, no Kafka needed.

    Simulates the demo fleet, runs the stream core, lands the Parquet lake, builds the DuckDB
    warehouse, checks it, writes the chargeback/FOCUS/ROI exports and the HTML report, and
    prints one summary row per site with the paths of everything written.

    Example: microdc demo --days 14 --seed 7 --out out/demo
    """
    from pipeline.demo import DemoOptions, run_demo

    settings = Settings()
    options = DemoOptions(
        out=out_dir,
        days=days,
        seed=seed,
        fleet=fleet or settings.fleet,
        nodes_per_site=nodes_per_site or None,
        rps_scale=rps_scale,
        ip_secret=settings.lake_ip_secret,
        quality=quality,
    )
    with _steps_bar() as bar:

        def step(label: str, total: int | None) -> Callable[[int], None]:
            for done in bar.tasks:  # the previous stage is complete
                bar.update(done.id, total=done.completed or 1, completed=done.completed or 1)
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        with _writing(out_dir):
            result = run_demo(options, step=step)
        step("done", 1)(1)
    _print_demo(result)


def _print_demo(result: Any) -> None:
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
            _fmt(s.pue, ".3f"),
            _fmt(s.wh_per_request, ".2f"),
            _fmt(s.gco2e_per_request, ".3f"),
            _fmt(s.p95_latency_ms, ".0f"),
            f"{s.chargeback_usd:,.0f}",
            _fmt(s.cloud_usd, ",.0f"),
            _fmt(s.cloud_used_usd, ",.2f"),
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


def _print_summary(summaries: list[Any]) -> None:
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
            _fmt(s.wh_per_request, ".3f"),
            _fmt(s.gco2e_per_request, ".3f"),
            _fmt(s.p95_latency_ms, ".0f"),
            str(s.alerts),
        )
    out.print(table)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


#: `pipeline.processors.app.STORES`, checked here without importing Faust (a test compares them).
WORKER_STORES = ("rocksdb://", "memory://")


@app.command()
def worker(
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
    fleet: FleetOpt = None,
    web_port: Annotated[int, typer.Option(help="Port of /health, /metrics.")] = 6066,
    web_bind: Annotated[str, typer.Option(help="Address the web server binds.")] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(help="Folder for table state (RocksDB).")] = None,
    store: Annotated[
        str, typer.Option(help="Table store: rocksdb:// or memory://.")
    ] = WORKER_STORES[0],
    lateness_s: Annotated[float, typer.Option(help="Allowed lateness, seconds.")] = 120.0,
    max_source_skew: Annotated[
        float,
        typer.Option(
            "--max-source-skew",
            help="Seconds of wall clock a node-telemetry or request-log partition that stopped "
            "moving while the other is ahead holds closing back (a shipper running behind).",
            min=0.0,
        ),
    ] = 600.0,
    facility_wait_s: FacilityWaitOpt = FACILITY_WAIT_S,
    grid_wait_s: GridWaitOpt = GRID_WAIT_S,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "warning",
) -> None:
    """Run a stream worker (Faust) on Kafka; start more to share the partitions.

    Example: microdc worker --bootstrap 127.0.0.1:9092 --web-port 6066
    """
    from pipeline.logs import logging_config
    from pipeline.processors import run_worker

    if store not in WORKER_STORES:
        raise ConfigError(f"--store {store!r}: use one of {', '.join(WORKER_STORES)}")
    if data_dir is not None:  # Faust would fail deep inside its start-up instead
        with _writing(data_dir, "--data-dir"):
            data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    fmt = _start_logging(settings, loglevel)  # until Faust sets up its own
    run_worker(
        bootstrap or settings.kafka_bootstrap,
        topic_prefix=settings.topic_prefix if topic_prefix is None else topic_prefix,
        fleet_path=fleet or settings.fleet,
        web_port=web_port,
        web_bind=web_bind,
        data_dir=data_dir,
        store=store,
        lateness_s=lateness_s,
        max_source_skew_s=max_source_skew,
        facility_wait_s=facility_wait_s,
        grid_wait_s=grid_wait_s,
        loglevel=loglevel,
        security=_security(settings),
        # text: Faust's own format; json: ours, through Faust's logging set-up
        logging_config=logging_config("json", loglevel) if fmt == "json" else None,
    )


LakeOpt = Annotated[
    str | None,
    typer.Option("--lake", help="Lake folder or pyarrow URI (default: $MICRODC_LAKE or out/lake)."),
]


@app.command()
def land(
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
    lake: LakeOpt = None,
    group_id: Annotated[
        str | None,
        typer.Option(
            help="Consumer group of the landers (default: <topic prefix>microdc-land, so each "
            "--topic-prefix lands on its own)."
        ),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Roll a segment at this many rows.")] = 250_000,
    until_idle: Annotated[
        bool, typer.Option(help="Exit once every partition is landed to its log end.")
    ] = False,
) -> None:
    """Land every input topic (bronze) and stream output (silver) into the Parquet lake.

    Exactly once per topic/partition/offset; start several to share the partitions. Client IPs
    are replaced by an HMAC keyed with $MICRODC_LAKE_IP_SECRET, or dropped when it is unset.
    A segment that cannot be landed stops it with exit 1, naming topic, partition and offsets;
    nothing of it is committed, so the next run lands it again.

    Example: microdc land --bootstrap 127.0.0.1:9092 --lake out/lake
    """
    from pipeline.lake import IpPolicy, Lake, LandStats, RollPolicy, run_land

    settings = Settings()
    say = _say if _start_logging(settings) == "json" else out.print  # stderr: errors and logs
    security = _security(settings)
    location = lake or settings.lake
    with _writing(Path(location), "--lake"):  # a local lake's folder is made here
        target = Lake(location)
    secret = settings.lake_ip_secret
    ip_policy = IpPolicy(secret.encode() if secret else None)
    say(f"landing into {target.uri} (client_ip: {ip_policy.mode})")

    def report(stats: LandStats) -> None:
        say(
            f"consumed {stats.consumed:,}  landed {stats.rows:,} rows in {stats.files:,} files "
            f"({stats.segments:,} segments)  invalid {stats.invalid:,}"
        )

    stats = run_land(
        bootstrap or settings.kafka_bootstrap,
        target,
        until_idle=until_idle,
        report=report,
        topic_prefix=settings.topic_prefix if topic_prefix is None else topic_prefix,
        group_id=group_id,
        policy=RollPolicy(max_rows=max_rows),
        ip_policy=ip_policy,
        security=security,
    )
    report(stats)


lake_app = typer.Typer(no_args_is_help=True, help="Maintain the Parquet lake.")
app.add_typer(lake_app, name="lake")


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

    location = lake or Settings().lake
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


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(text: str, option: str) -> date:
    """A UTC calendar date written YYYY-MM-DD."""
    try:
        if not _DATE.match(text.strip()):
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date like 2026-03-02") from None


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

    settings = Settings()
    first, last = parse_day(date_from, "--from"), parse_day(date_to, "--to")
    location = lake or settings.lake
    if "://" not in location and not Path(location).is_dir():
        raise ConfigError(f"no lake at {location}: nothing to rebuild")
    fleet_data = load_fleet(fleet or settings.fleet)
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
    _print_rebuild(stats, location)


def _print_rebuild(stats: Any, location: str) -> None:
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


@models_app.command("build")
def models_build(
    lake: LakeOpt = None,
    db: Annotated[Path, typer.Option(help="DuckDB file to build.")] = Path("out/warehouse.duckdb"),
    fleet: FleetOpt = None,
) -> None:
    """Build every model in sql/ (staging views, marts, dim_ tables) into a DuckDB file.

    Example: microdc models build --lake out/demo/lake --db out/warehouse.duckdb
    """
    from pipeline.fleet import load_fleet
    from pipeline.lake import Lake
    from pipeline.models.build import build

    settings = Settings()
    location = lake or settings.lake
    if "://" not in location and not Path(location).is_dir():
        raise ConfigError(
            f"no lake at {location}: land one with `microdc land` (or run `microdc demo`), "
            "or pass --lake / set MICRODC_LAKE"
        )
    with _writing(db, "--db"):
        db.parent.mkdir(parents=True, exist_ok=True)
    with _steps_bar() as bar:
        task = bar.add_task("models", total=None)

        def step(model: Any, i: int, total: int) -> None:
            bar.update(task, completed=i, total=total, description=f"{model.name}")

        result = build(Lake(location), load_fleet(fleet or settings.fleet), db, progress=step)
        bar.update(task, completed=len(result.models), description="models")
    table = Table("model", "kind", "rows", "seconds", title=f"built {db} in {result.seconds:.1f} s")
    for model, rows, seconds in result.models:
        table.add_row(model.name, model.materialized, f"{rows:,}", f"{seconds:.2f}")
    out.print(table)


export_app = typer.Typer(no_args_is_help=True, help="Export warehouse marts as files.")
app.add_typer(export_app, name="export")


@export_app.command("chargeback")
def export_chargeback(
    month: Annotated[str, typer.Option(help="Site-local calendar month, YYYY-MM.")],
    out_path: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="csv, parquet, xlsx, or focus (FinOps FOCUS 1.2 CSV)."),
    ] = "csv",
    db: Annotated[Path, typer.Option(help="Built DuckDB warehouse.")] = Path(
        "out/warehouse.duckdb"
    ),
) -> None:
    """Write one month of fct_chargeback_monthly (team x site) as CSV, Parquet, Excel or FOCUS.

    Stable column order, decimals at 6 places, ISO dates; rows ordered by site and team.
    `focus` writes FinOps FOCUS 1.2 rows (one per team x site, BilledCost = total_usd) as CSV.

    Example: microdc export chargeback --month 2026-03 --format focus --out out/focus-2026-03.csv
    """
    from pipeline.models.export import CHARGEBACK_FORMATS
    from pipeline.models.export import export_chargeback as export

    chosen = next((f for f in CHARGEBACK_FORMATS if f == fmt), None)
    if chosen is None:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(CHARGEBACK_FORMATS)}")
    with _writing(out_path):
        rows = export(db, month, chosen, out_path)
    out.print(f"wrote {rows:,} chargeback rows for {month} to {out_path}")


@export_app.command("roi")
def export_roi(
    out_path: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or xlsx.")] = "csv",
    db: Annotated[Path, typer.Option(help="Built DuckDB warehouse.")] = Path(
        "out/warehouse.duckdb"
    ),
) -> None:
    """Write fct_roi_site (one row per site: micro-DC vs hyperscale baseline) as a file.

    Stable column order, decimals at 6 places; rows ordered by site.

    Example: microdc export roi --format xlsx --out out/roi.xlsx
    """
    from pipeline.models.export import FORMATS
    from pipeline.models.export import export_roi as export

    chosen = next((f for f in FORMATS if f == fmt), None)
    if chosen is None:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    with _writing(out_path):
        rows = export(db, chosen, out_path)
    out.print(f"wrote {rows:,} ROI rows to {out_path}")


@app.command()
def report(
    db: Annotated[Path, typer.Option(help="Built DuckDB warehouse.")] = Path(
        "out/warehouse.duckdb"
    ),
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path(
        "out/report.html"
    ),
    title: Annotated[str | None, typer.Option(help="Page title (default: a generic one).")] = None,
) -> None:
    """Write one self-contained HTML report (charts and tables) of the warehouse; works offline.

    Energy per request and p95 latency per site, PUE, carbon per request, SLO budgets and burn,
    chargeback by team and ROI against the cloud baseline; plotly.js is inlined, no network.

    Example: microdc report --db out/demo/warehouse.duckdb --out out/report.html
    """
    from pipeline.report import build_report

    with _writing(out_path):
        result = build_report(db, out_path, title=title)
    out.print(
        f"wrote {result.path} ({result.size_bytes:,} bytes, {result.charts} charts, "
        f"{result.seconds:.1f} s)"
    )


@schemas_app.command("write")
def schemas_write(
    directory: Annotated[Path, typer.Option("--dir", help="Where schemas/ is.")] = Path("schemas"),
) -> None:
    """Regenerate the output-topic contracts (schemas/outputs/) from their Structs.

    Example: microdc schemas write --dir schemas
    """
    from pipeline.contracts.output_schemas import write_output_schemas

    with _writing(directory / "outputs", "--dir"):
        paths = write_output_schemas(directory / "outputs")
    for path in paths:
        out.print(f"wrote {path}")


docs_app = typer.Typer(no_args_is_help=True, help="Generated documentation in docs/.")
app.add_typer(docs_app, name="docs")


@docs_app.command("data-dictionary")
def docs_data_dictionary(
    out_file: Annotated[Path, typer.Option("--out", help="Markdown file to write.")] = Path(
        "docs/data-dictionary.md"
    ),
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 when the file is not up to date.")
    ] = False,
) -> None:
    """Generate the data dictionary of every lake dataset and warehouse table and column.

    Built from the contracts in schemas/ and the comments of the models in sql/.

    Example: microdc docs data-dictionary --out docs/data-dictionary.md
    """
    from pipeline.docs import data_dictionary

    text = data_dictionary()
    if check:
        current = out_file.read_text(encoding="utf-8") if out_file.is_file() else ""
        if current != text:
            raise PipelineError(
                f"{out_file} is stale: run `microdc docs data-dictionary --out {out_file}`"
            )
        out.print(f"{out_file} is up to date")
        return
    with _writing(out_file):
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(text):,} characters)")


quality_app = typer.Typer(
    no_args_is_help=True, help="Data quality checks of the warehouse (Great Expectations)."
)
app.add_typer(quality_app, name="quality")


@quality_app.command("check")
def quality_check(
    db: Annotated[Path, typer.Option(help="Built DuckDB warehouse.")] = Path(
        "out/demo/warehouse.duckdb"
    ),
    docs: Annotated[
        Path | None,
        typer.Option(help="Folder for the Data Docs HTML (default: <db dir>/quality-docs)."),
    ] = None,
) -> None:
    """Validate the warehouse with Great Expectations suites per layer and reconciliations.

    Bronze, silver and mart tables and the energy/chargeback reconciliations; writes Data Docs
    HTML and exits 1, one line per failed expectation, when anything fails.

    Example: microdc quality check --db out/demo/warehouse.duckdb
    """
    from pipeline.quality import print_summary, run_checks

    with (
        _writing(docs or db.parent / "quality-docs", "--docs"),
        console.status("validating (Great Expectations)") as status,
    ):
        result = run_checks(db, docs, progress=lambda suite: status.update(f"validating {suite}"))
    print_summary(result, out)
    if not result.success:
        failures = result.failures()
        out.print(f"[red]{len(failures)} failed check(s):[/]")
        for line in failures:
            out.print(f"FAIL {line}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
    timeout_s: Annotated[
        float, typer.Option(help="Give up when the broker has not answered after this many s.")
    ] = 30.0,
) -> None:
    """Create every pipeline topic with its declared partition count (idempotent).

    Example: microdc topics create --bootstrap 127.0.0.1:9092
    """
    from pipeline.contracts.topics import iter_topics
    from pipeline.kafka_admin import ensure_topics_sync

    settings = Settings()
    prefix = settings.topic_prefix if topic_prefix is None else topic_prefix
    specs = list(iter_topics(prefix))
    created = ensure_topics_sync(
        bootstrap or settings.kafka_bootstrap,
        specs,
        timeout=timeout_s,
        security=_security(settings),
    )
    table = Table("topic", "partitions", "key", "status")
    for spec in specs:
        table.add_row(
            spec.name,
            str(spec.partitions),
            spec.key_field or "-",
            "created" if spec.name in created else "exists",
        )
    out.print(table)


@fleet_app.command("validate")
def fleet_validate(
    path: Annotated[
        Path | None, typer.Argument(help="Fleet YAML; default: the demo fleet.")
    ] = None,
) -> None:
    """Check a fleet file and summarise it; errors name file, line, path and reason.

    Example: microdc fleet validate my-fleet.yaml
    """
    from pipeline.fleet import load_fleet

    fleet = load_fleet(path)
    table = Table("site", "city", "zone", "nodes", "services", "design PUE")
    for site in fleet.sites:
        services = [s.service for s in fleet.services if site.site_id in s.sites]
        table.add_row(
            site.site_id,
            site.city,
            site.grid_zone,
            str(len(fleet.nodes_by_site[site.site_id])),
            str(len(services)),
            f"{site.design_pue:.2f}",
        )
    out.print(table)
    out.print(f"{len(fleet.teams)} teams, {len(fleet.services)} services: valid")


@fleet_app.command("schema")
def fleet_schema(
    out_path: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Print (or write) the JSON Schema of fleet files, generated from the fleet types.

    Example: microdc fleet schema --out schemas/fleet.schema.json
    """
    from pipeline.fleet.schema import fleet_json_schema

    text = fleet_json_schema()
    if out_path is None:
        sys.stdout.write(text)
    else:
        with _writing(out_path):
            out_path.write_text(text, encoding="utf-8")


@kafka_app.command("up")
def kafka_up(
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the broker keeps its state.")
    ] = None,
) -> None:
    """Fetch Apache Kafka from Maven Central (once) and start a local KRaft broker on 127.0.0.1.

    Example: microdc kafka up && export MICRODC_KAFKA_BOOTSTRAP=$(microdc kafka status)
    """
    from pipeline import localkafka

    bootstrap = localkafka.up(state_dir or Settings().kafka_state_dir)
    out.print(bootstrap)


@kafka_app.command("down")
def kafka_down(
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the broker keeps its state.")
    ] = None,
) -> None:
    """Stop the local broker started by `microdc kafka up`.

    Example: microdc kafka down
    """
    from pipeline import localkafka

    stopped = localkafka.down(state_dir or Settings().kafka_state_dir)
    out.print("stopped" if stopped else "no local broker was running")


@kafka_app.command("status")
def kafka_status(
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the broker keeps its state.")
    ] = None,
) -> None:
    """Print the local broker's bootstrap address, or exit 1 if none runs.

    Example: microdc kafka status
    """
    from pipeline import localkafka

    bootstrap = localkafka.status(state_dir or Settings().kafka_state_dir)
    if bootstrap is None:
        raise PipelineError("no local broker is running; start one with `microdc kafka up`")
    out.print(bootstrap)


@config_app.command("show")
def config_show() -> None:
    """Print every setting, its value (secrets masked) and where it came from.

    Sources: a MICRODC_* variable, the config file (--config, $MICRODC_CONFIG or ./microdc.toml)
    or the default; a command's flags still override them.

    Example: microdc --config microdc.toml config show
    """
    from pipeline.config import config_file, describe_settings

    settings = Settings()
    path, chosen_by = config_file()
    title = f"config file: {path} ({chosen_by})" if path else "config file: none"
    table = Table("setting", "value", "from", title=title)
    for name, value, source in describe_settings(settings):
        table.add_row(name, escape(value), escape(source))
    out.print(table)


def _steps_bar() -> Progress:
    """A progress display of named steps (silent when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


class _progress:
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

    def __enter__(self) -> _progress:
        self._bar.start()
        return self

    def __call__(self, events: int) -> None:
        self._events += events
        self._bar.update(self._task, advance=1, events=self._events)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def _print_sim_result(result: object) -> None:
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error is one line on stderr and a non-zero exit, never a traceback.

    Typer (standalone mode) reports usage errors itself (exit 2). Library errors
    (`PipelineError`) exit with their code, anything unexpected with 1, naming the exception;
    `--debug` or MICRODC_DEBUG=1 adds the traceback. `argv` defaults to `sys.argv[1:]`.
    """
    _globals.log_format, _globals.debug = None, False
    use_config_file(None)
    try:
        app(args=argv, prog_name="microdc")
    except PipelineError as exc:
        _fail(exc, str(exc), exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last resort: one line instead of a traceback
        _fail(
            exc,
            f"unexpected {type(exc).__name__}: {exc} (a bug? rerun with --debug or "
            f"{DEBUG_ENV}=1 for the traceback)",
            1,
        )


def _fail(exc: BaseException, message: str, code: int) -> None:
    debug = _globals.debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
    )
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    text = message if debug else one_line(message)
    console.print(f"[red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    sys.exit(code)
