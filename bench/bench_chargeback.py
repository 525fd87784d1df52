"""The chargeback against the facility meter, and what reconciling it costs (issue 16).

One lake is landed from the demo's default run (the demo fleet at 4 servers per site, two days
from 2026-03-02, rps scale 0.005: `microdc demo`'s input). The warehouse is then built from it
by two versions of the models, each in a child process, `--rounds` times:

1. `--baseline-rev` (a `git worktree`; default the commit before issue 16), whose chargeback
   carried node IT x PUE only;
2. this working tree, whose chargeback follows the facility meter.

The first table is what finance sees per site: the facility meter's kWh (read here straight
from the silver site minutes: the metered facility energy, plus node IT x design PUE over the
minutes without a usable meter), the sum of the chargeback's facility kWh, and the gap; the
same for the energy cost against the meter's grid kWh at each minute's local tariff (computed
here in SQL from the fleet's tariffs). The second table is the median build time and the peak
RSS of each version.

    python bench/bench_chargeback.py [--days 2] [--rounds 3] [--baseline-rev 173d6d3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from bench_hostile import ROOT, worktree
from rich.console import Console
from rich.table import Table

BASELINE_REV = "173d6d3"  # main before issue 16: the chargeback summed node IT x PUE
NODES_PER_SITE = 4

CHILD = """
import resource, sys, time
from pathlib import Path
from pipeline.embedded.demo import demo_fleet
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build
t0 = time.perf_counter()
build(Lake(sys.argv[1]), demo_fleet(load_fleet(None), int(sys.argv[3])), Path(sys.argv[2]))
seconds = time.perf_counter() - t0
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

#: The facility meter per site, from the silver site minutes alone, and its energy cost at the
#: local tariff of each minute (dim_site / dim_tariff give the time zone and the periods).
METER_SQL = """
with minutes as (
    select
        m.site_id,
        case when m.pue_source = 'metered' then m.facility_energy_wh
            else m.node_it_energy_wh * m.pue end / 1000 as kwh,
        least(greatest(m.renewable_share, 0), 1) as share,
        timezone(s.timezone, m.window_start) as local_ts
    from read_parquet('{lake}/silver/site_minutes/**/*.parquet', hive_partitioning = true) as m
    join dim_site as s using (site_id)
),
tariffs as (
    select site_id, start_minute, end_minute, usd_per_kwh from dim_tariff
    union all
    select site_id, 0, min(start_minute), arg_max(usd_per_kwh, start_minute)
    from dim_tariff group by site_id having min(start_minute) > 0
)
select
    m.site_id,
    sum(m.kwh) as kwh,
    sum(m.kwh * (1 - m.share) * t.usd_per_kwh) as usd
from minutes as m
join tariffs as t
    on t.site_id = m.site_id
    and hour(m.local_ts) * 60 + minute(m.local_ts) >= t.start_minute
    and hour(m.local_ts) * 60 + minute(m.local_ts) < t.end_minute
group by m.site_id
order by m.site_id
"""


def land(work: Path, days: float) -> Path:
    from pipeline.embedded.demo import DEFAULT_RPS_SCALE, demo_fleet
    from pipeline.embedded.landing import simulate_and_land
    from pipeline.fleet import load_fleet
    from pipeline.lake import Lake
    from pipeline.simulate import SimConfig

    fleet = demo_fleet(load_fleet(None), NODES_PER_SITE)
    config = SimConfig(
        start=datetime(2026, 3, 2, tzinfo=UTC),
        minutes=round(days * 1440),
        seed=7,
        rps_scale=DEFAULT_RPS_SCALE,
    )
    simulate_and_land(fleet, config, Lake(work / "lake"))
    return work / "lake"


def build(source: Path, lake: Path, db: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(lake), str(db), str(NODES_PER_SITE)],
        cwd=source,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, rss = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(rss)


def reconcile(lake: Path, db: Path) -> dict[str, tuple[float, float, float, float]]:
    """Per site: (meter kWh, chargeback kWh, meter USD, chargeback energy USD)."""
    with duckdb.connect(str(db), read_only=True) as con:
        meter = {r[0]: r[1:] for r in con.execute(METER_SQL.format(lake=lake)).fetchall()}
        charged = {
            r[0]: r[1:]
            for r in con.execute(
                "select site_id, sum(facility_energy_kwh), sum(energy_cost_usd)"
                " from fct_chargeback_monthly group by site_id"
            ).fetchall()
        }
    return {
        site: (kwh, charged[site][0], usd, charged[site][1])
        for site, (kwh, usd) in sorted(meter.items())
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    args = parser.parse_args()
    console = Console(width=140)
    work = Path(tempfile.mkdtemp(prefix="microdc-bench-chargeback-"))
    base = worktree(args.baseline_rev)
    try:
        console.print(f"landing {args.days:g} simulated days of the demo fleet")
        lake = land(work, args.days)
        versions = {f"baseline {args.baseline_rev}": base, "this tree": ROOT}
        timings: dict[str, list[tuple[float, float]]] = {}
        results = {}
        for rnd in range(args.rounds):  # alternate, so both see the same machine noise
            for name, source in versions.items():
                db = work / f"{name.split()[0]}.duckdb"
                db.unlink(missing_ok=True)
                timings.setdefault(name, []).append(build(source, lake, db))
                if rnd == 0:
                    results[name] = reconcile(lake, db)
        table = Table(title="chargeback vs the facility meter, per site (the whole run)")
        for col in ("version", "site", "meter kWh", "charged kWh", "gap", "meter USD",
                    "charged USD", "gap USD"):  # fmt: skip
            table.add_column(col, justify="right")
        for name, sites in results.items():
            for site, (kwh, charged, usd, charged_usd) in sites.items():
                table.add_row(
                    name,
                    site,
                    f"{kwh:,.3f}",
                    f"{charged:,.3f}",
                    f"{(charged - kwh) / kwh * 100:+.4f} %",
                    f"{usd:,.4f}",
                    f"{charged_usd:,.4f}",
                    f"{charged_usd - usd:+.4f}",
                )
        console.print(table)
        speed = Table(title=f"models build, median of {args.rounds} (child process each)")
        for col in ("version", "build s", "vs baseline", "peak RSS MiB"):
            speed.add_column(col, justify="right")
        first = statistics.median(t[0] for t in next(iter(timings.values())))
        for name, runs in timings.items():
            seconds = statistics.median(t[0] for t in runs)
            speed.add_row(
                name, f"{seconds:.2f}", f"{seconds / first:.2f}×", f"{max(t[1] for t in runs):,.0f}"
            )
        console.print(speed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False, capture_output=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
