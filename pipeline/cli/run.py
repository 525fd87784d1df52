"""`microdc simulate`, `process` and `demo`: the simulator and the embedded driver, no Kafka."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.base import (
    BootstrapOpt,
    FacilityWaitOpt,
    FleetOpt,
    GridWaitOpt,
    PrefixOpt,
    Sink,
    app,
    choice_option,
    out,
    parse_duration,
    parse_start,
    security_of,
    settings_with,
    start_logging,
    writing,
)
from pipeline.cli.render import (
    MinutesBar,
    print_dead_letters,
    print_demo,
    print_sim_result,
    print_summary,
    steps_bar,
)
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S


@app.command()
def simulate(
    sink: Annotated[Sink, choice_option(Sink, "--sink", "Where records go.")] = Sink.FILES,
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

    settings = settings_with(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix, fleet=fleet)
    start_logging(settings)
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
    fleet_data = load_fleet(settings.fleet)
    with MinutesBar(config.minutes, "simulating") as advance:
        result: SimResult
        if sink is Sink.FILES:
            result = simulate_to_files(fleet_data, config, out_dir, progress=advance)
        else:
            result = simulate_to_kafka(
                fleet_data,
                config,
                settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                progress=advance,
                security=security_of(settings),
            )
    print_sim_result(result)


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
    from pipeline.embedded.driver import run_embedded
    from pipeline.embedded.files import read_jsonl_dir, write_outputs
    from pipeline.embedded.summary import summarize
    from pipeline.fleet import load_fleet

    fleet_data = load_fleet(settings_with(fleet=fleet).fleet)
    with writing(out_dir):  # before the run, not after it: a wrong --out fails at once
        out_dir.mkdir(parents=True, exist_ok=True)
    result = run_embedded(
        fleet_data,
        read_jsonl_dir(in_dir),
        lateness_s=lateness_s,
        facility_wait_s=facility_wait_s,
        grid_wait_s=grid_wait_s,
    )
    with writing(out_dir):
        paths = write_outputs(result, out_dir)
    print_summary(summarize(result))
    for topic, path in paths.items():
        out.print(f"  {topic}: {len(result.outputs[topic]):,} records → {path}")
    print_dead_letters(result.outputs.get("mdc.dead-letters", []), result.internal_errors)
    if result.duplicates:
        out.print(f"  duplicate deliveries counted once: {result.duplicates:,}")


@app.command()
def demo(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Base folder: lake/, warehouse.duckdb, exports/, report.html and quality-docs/ "
            "(replaced), where every other command looks by default.",
        ),
    ] = Path("out"),
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

    Example: microdc demo --days 14 --seed 7 --out out/two-weeks
    """
    from pipeline.embedded.demo import DemoOptions, run_demo

    settings = settings_with(fleet=fleet)
    options = DemoOptions(
        out=out_dir,
        days=days,
        seed=seed,
        fleet=settings.fleet,
        nodes_per_site=nodes_per_site or None,
        rps_scale=rps_scale,
        ip_secret=settings.lake_ip_secret,
        quality=quality,
    )
    with steps_bar() as bar:

        def step(label: str, total: int | None) -> Callable[[int], None]:
            for done in bar.tasks:  # the previous stage is complete
                bar.update(done.id, total=done.completed or 1, completed=done.completed or 1)
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        with writing(out_dir):
            result = run_demo(options, step=step)
        step("done", 1)(1)
    print_demo(result)
