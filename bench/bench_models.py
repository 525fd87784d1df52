"""`microdc models build` time, rows/s and DuckDB memory for lakes of 1M and 10M request rows.

For each size, one simulated day of the demo fleet is run through the stream core and landed
(the embedded path of `microdc demo`; its request rate scaled to the target), then the models
are built in a child process, three times: the table shows the median time, request rows per
second of build time, and the child's peak RSS (DuckDB's memory). The baseline in the same run
is a plain DuckDB scan of the bronze request logs (`count(*)`, `sum(latency_ms)` by site), the
least any model over them costs; the ratio says how many such scans a build is worth. When
dbt-duckdb is installed (`make dbt-env`, or MICRODC_DBT naming a dbt), `dbt run` of the same
sql/ (models only, like the builder; into a copy of the builder's warehouse, whose dim_ tables
are dbt's fleet source) is timed too, three times, wall clock; otherwise its column says n/a.

    python bench/bench_models.py [--sizes 1000000,10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from pipeline.embedded.landing import simulate_and_land
from pipeline.fleet import load_fleet
from pipeline.lake import BY_NAME, Lake
from pipeline.simulate import SimConfig

REQUESTS_PER_DAY_AT_SCALE_1 = 36_700_000  # the demo fleet's request logs in one day, rps x1.0

CHILD = """
import resource, sys, time
from pathlib import Path
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build
t0 = time.perf_counter()
result = build(Lake(sys.argv[1]), load_fleet(), Path(sys.argv[2]))
seconds = time.perf_counter() - t0
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(result.models))
"""


def build_once(lake: Path, db: Path) -> tuple[float, float]:
    out = (
        subprocess.run(
            [sys.executable, "-c", CHILD, str(lake), str(db)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
        .split()
    )
    return float(out[0]), float(out[1])


REPO = Path(__file__).resolve().parents[1]


def dbt_executable() -> Path | None:
    dbt = Path(os.environ.get("MICRODC_DBT") or REPO / ".venv-dbt" / "bin" / "dbt")
    return dbt if dbt.exists() else None


def dbt_run_once(dbt: Path, work: Path) -> float:
    """`dbt run` of sql/ over `work/lake` into a copy of the builder's `work/w.duckdb`."""
    db = work / "dbt.duckdb"
    shutil.copyfile(work / "w.duckdb", db)
    project = str(REPO / "pipeline" / "sql")
    env = {
        **os.environ,
        "MICRODC_WAREHOUSE": str(db),
        "MICRODC_LAKE": str(work / "lake"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    flags = ["--project-dir", project, "--profiles-dir", project]
    flags += ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    t0 = time.perf_counter()
    subprocess.run([str(dbt), "run", *flags], check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def scan_once(lake: Lake) -> float:
    glob = f"{lake.dataset_root(BY_NAME['request_log'])}/**/*.parquet"
    con = duckdb.connect()
    t0 = time.perf_counter()
    con.execute(
        f"select site_id, count(*), sum(latency_ms) from read_parquet('{glob}', "
        "hive_partitioning = true) group by all"
    ).fetchall()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000", help="request rows per lake")
    parser.add_argument("--out", type=Path, default=Path("bench/results/models.json"))
    args = parser.parse_args()
    console = Console(width=140)
    fleet = load_fleet()
    dbt = dbt_executable()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="microdc-bench-models-"))
        try:
            scale = size / REQUESTS_PER_DAY_AT_SCALE_1
            config = SimConfig(
                start=datetime(2026, 3, 2, tzinfo=UTC), minutes=24 * 60, rps_scale=scale
            )
            console.print(
                f"landing one simulated day at rps scale {scale:.3f} (~{size:,} requests)"
            )
            lake = Lake(work / "lake")
            run = simulate_and_land(fleet, config, lake)
            requests = run.landed.rows_by_dataset["request_log"]
            builds = [build_once(work / "lake", work / "w.duckdb") for _ in range(3)]
            scans = [scan_once(lake) for _ in range(3)]
            dbt_runs = [dbt_run_once(dbt, work) for _ in range(3)] if dbt else []
            seconds = statistics.median(b[0] for b in builds)
            scan = statistics.median(scans)
            rows.append(
                {
                    "request_rows": requests,
                    "lake_rows": run.landed.rows,
                    "build_seconds": seconds,
                    "request_rows_per_s": requests / seconds,
                    "peak_rss_mib": max(b[1] for b in builds),
                    "scan_seconds": scan,
                    "dbt_run_seconds": statistics.median(dbt_runs) if dbt_runs else None,
                    "db_mib": (work / "w.duckdb").stat().st_size / 2**20,
                }
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    table = Table(title="models build vs a plain scan of the request logs (medians of 3)")
    for col in (
        "request rows",
        "all lake rows",
        "build s",
        "request rows/s",
        "scan s (baseline)",
        "build / scan",
        "dbt run s",
        "peak RSS MiB",
        "warehouse MiB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['request_rows']:,}",
            f"{r['lake_rows']:,}",
            f"{r['build_seconds']:.2f}",
            f"{r['request_rows_per_s']:,.0f}",
            f"{r['scan_seconds']:.3f}",
            f"{r['build_seconds'] / r['scan_seconds']:.0f}×",
            "n/a" if r["dbt_run_seconds"] is None else f"{r['dbt_run_seconds']:.2f}",
            f"{r['peak_rss_mib']:,.0f}",
            f"{r['db_mib']:,.1f}",
        )
    console.print(table)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        console.print(
            f"{b['request_rows'] / a['request_rows']:.1f}× the rows took "
            f"{b['build_seconds'] / a['build_seconds']:.1f}× the time"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": rows, "argv": sys.argv[1:]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
