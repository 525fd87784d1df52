"""Commands that talk to Kafka: `worker`, `land`, `topics create`, and `kafka up|down|status`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli.base import (
    BootstrapOpt,
    FacilityWaitOpt,
    FleetOpt,
    GridWaitOpt,
    LakeOpt,
    PrefixOpt,
    Store,
    app,
    choice_option,
    kafka_app,
    out,
    say,
    security_of,
    settings_with,
    start_logging,
    topics_app,
    writing,
)
from pipeline.errors import PipelineError
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S


@app.command()
def worker(
    bootstrap: BootstrapOpt = None,
    topic_prefix: PrefixOpt = None,
    fleet: FleetOpt = None,
    web_port: Annotated[int, typer.Option(help="Port of /health, /metrics.")] = 6066,
    web_bind: Annotated[str, typer.Option(help="Address the web server binds.")] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(help="Folder for table state (RocksDB).")] = None,
    store: Annotated[Store, choice_option(Store, "--store", "Table store.")] = Store.ROCKSDB,
    lateness_s: Annotated[float, typer.Option(help="Allowed lateness, seconds.")] = 120.0,
    session_timeout_s: Annotated[
        float,
        typer.Option(
            help="Kafka consumer group session timeout, s (a dead worker's partitions "
            "move after it).",
            min=1.0,
        ),
    ] = 30.0,
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

    if data_dir is not None:  # Faust would fail deep inside its start-up instead
        with writing(data_dir, "--data-dir"):
            data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, fleet=fleet)
    fmt = start_logging(settings, loglevel)  # until Faust sets up its own
    run_worker(
        settings.kafka_bootstrap,
        topic_prefix=settings.topic_prefix,
        fleet_path=settings.fleet,
        web_port=web_port,
        web_bind=web_bind,
        data_dir=data_dir,
        store=store.value,
        lateness_s=lateness_s,
        session_timeout_s=session_timeout_s,
        max_source_skew_s=max_source_skew,
        facility_wait_s=facility_wait_s,
        grid_wait_s=grid_wait_s,
        loglevel=loglevel,
        security=security_of(settings),
        # text: Faust's own format; json: ours, through Faust's logging set-up
        logging_config=logging_config("json", loglevel) if fmt == "json" else None,
    )


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

    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, lake=lake)
    emit = say if start_logging(settings) == "json" else out.print  # stderr: errors and logs
    security = security_of(settings)
    location = settings.lake
    with writing(Path(location), "--lake"):  # a local lake's folder is made here
        target = Lake(location)
    secret = settings.lake_ip_secret
    ip_policy = IpPolicy(secret.encode() if secret else None)
    emit(f"landing into {target.uri} (client_ip: {ip_policy.mode})")

    def report(stats: LandStats) -> None:
        emit(
            f"consumed {stats.consumed:,}  landed {stats.rows:,} rows in {stats.files:,} files "
            f"({stats.segments:,} segments)  invalid {stats.invalid:,}"
        )

    stats = run_land(
        settings.kafka_bootstrap,
        target,
        until_idle=until_idle,
        report=report,
        topic_prefix=settings.topic_prefix,
        group_id=group_id,
        policy=RollPolicy(max_rows=max_rows),
        ip_policy=ip_policy,
        security=security,
    )
    report(stats)


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

    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    specs = list(iter_topics(settings.topic_prefix))
    created = ensure_topics_sync(
        settings.kafka_bootstrap,
        specs,
        timeout=timeout_s,
        security=security_of(settings),
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

    bootstrap = localkafka.up(settings_with(kafka_state_dir=state_dir).kafka_state_dir.resolve())
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

    stopped = localkafka.down(settings_with(kafka_state_dir=state_dir).kafka_state_dir.resolve())
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

    state = settings_with(kafka_state_dir=state_dir).kafka_state_dir
    bootstrap = localkafka.status(state.resolve())
    if bootstrap is None:
        raise PipelineError("no local broker is running; start one with `microdc kafka up`")
    out.print(bootstrap)
