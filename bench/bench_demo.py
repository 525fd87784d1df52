"""How long `microdc demo` takes, stage by stage, at its default size and at two weeks.

Each size runs the whole demo (`pipeline.embedded.demo.run_demo`: simulate → stream core → lake →
models → quality + exports + report) in a fresh folder. The baseline in the same run is the
simulator alone over the same span (generating and JSON-encoding every event, nothing else):
the least the first stage can cost. `demo / sim` says what the rest of the pipeline adds.

    python bench/bench_demo.py [--days 2,14] [--runs 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.embedded.demo import DEFAULT_DAYS, DEMO_START, DemoOptions, demo_fleet, run_demo
from pipeline.fleet import load_fleet
from pipeline.simulate import SimConfig, Simulator


def simulate_only(options: DemoOptions) -> tuple[float, int]:
    fleet = demo_fleet(load_fleet(options.fleet), options.nodes_per_site)
    config = SimConfig(
        start=DEMO_START, minutes=options.minutes, seed=options.seed, rps_scale=options.rps_scale
    )
    started = time.perf_counter()
    events = sum(len(batch) for batch in Simulator(fleet, config).minutes())
    return time.perf_counter() - started, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default=f"{DEFAULT_DAYS:g},14", help="comma-separated sizes")
    parser.add_argument("--runs", type=int, default=1, help="runs per size (median shown)")
    args = parser.parse_args()
    console = Console(width=150)
    table = Table(
        "days",
        "events",
        "lake rows",
        "sim+stream+land s",
        "models s",
        "quality+exports+report s",
        "demo total s",
        "simulator alone s",
        "demo / sim",
        title="microdc demo (default flags; median of runs)",
    )
    for days in (float(d) for d in args.days.split(",")):
        totals: list[tuple[float, float, float, float, float, int, int]] = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
                options = DemoOptions(out=Path(tmp) / "demo", days=days)
                sim_s, _ = simulate_only(options)
                started = time.perf_counter()
                result = run_demo(options)
                total = time.perf_counter() - started
                s = list(result.seconds.values())
                totals.append(
                    (
                        s[0],
                        s[1],
                        s[2],
                        total,
                        sim_s,
                        result.counts["events"],
                        result.counts["lake_rows"],
                    )
                )
                console.print(
                    f"{days:g} d: {total:.1f} s "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
                    + f"; simulator alone {sim_s:.1f} s; quality passed: {result.quality.success}"
                )
        med = [statistics.median(col) for col in zip(*totals, strict=True)]
        table.add_row(
            f"{days:g}",
            f"{int(med[5]):,}",
            f"{int(med[6]):,}",
            f"{med[0]:.1f}",
            f"{med[1]:.1f}",
            f"{med[2]:.1f}",
            f"[bold]{med[3]:.1f}[/]",
            f"{med[4]:.1f}",
            f"{med[3] / med[4]:.1f}x",
        )
    console.print(table)


if __name__ == "__main__":
    main()
