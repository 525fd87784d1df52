"""Landing throughput (Kafka -> Parquet) and bytes per row, next to baselines from the same run.

1. The simulator fills fresh input topics with N events (rps scale 1.0).
2. RAW CONSUME LIMIT: aiokafka `getmany` + msgspec decoding of the request-log topic, no other
   work - the ceiling any Python consumer has on this machine (as in bench_kafka/bench_worker).
3. LANDING: `Lander` (what `microdc land` runs) over all four input topics into a fresh lake:
   rows/s from its first consumed record until every valid record is in Parquet files.
4. THE STREAM WORKER on the same topics (bench_worker's measurement; `--no-worker` skips it):
   landing is not the pipeline's bottleneck if it keeps up with the worker.
5. Bytes per row: Parquet (zstd) on disk vs the JSON payload on the wire, per dataset.

    python bench/bench_land.py [--events 2000000] [--bootstrap HOST:PORT] [--no-worker]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from pipeline.contracts import INPUT_TOPICS
from pipeline.contracts.topics import REQUEST_LOG
from pipeline.fleet import load_fleet
from pipeline.lake import DATASETS, IpPolicy, Lake, Lander
from pipeline.localkafka import BOOTSTRAP_ENV
from pipeline.simulate import Simulator

sys.path.insert(0, str(Path(__file__).parent))
from bench_kafka import SECURITY, consume
from bench_worker import broker_for, produce, run_worker


async def land(bootstrap: str, prefix: str, lake: Lake, expected_rows: int) -> dict[str, float]:
    """Run a Lander until `expected_rows` rows are landed; seconds from its first record."""
    lander = Lander(
        bootstrap,
        lake,
        topic_prefix=prefix,
        group_id=f"{prefix}bench-land",
        ip_policy=IpPolicy(b"bench-secret"),
        datasets=[d for d in DATASETS if d.layer == "bronze"],
        security=SECURITY,
    )
    task = asyncio.create_task(lander.run())
    first = done = None
    deadline = time.monotonic() + 600
    while done is None:
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
            raise RuntimeError("the lander stopped early")
        if time.monotonic() > deadline:
            raise RuntimeError(f"landed {lander.stats.rows:,} of {expected_rows:,} in 600 s")
        if first is None and lander.stats.consumed:
            first = time.perf_counter()
        if lander.stats.rows >= expected_rows:
            done = time.perf_counter()
    lander.stop()
    await task
    assert first is not None
    return {"seconds": done - first, "rows": lander.stats.rows, "files": lander.stats.files}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000, help="input events (2M)")
    parser.add_argument("--bootstrap", default=os.environ.get(BOOTSTRAP_ENV))
    parser.add_argument("--no-worker", action="store_true", help="skip the stream worker run")
    parser.add_argument("--out", type=Path, default=Path("bench/results/land.json"))
    args = parser.parse_args()
    console = Console()
    fleet = load_fleet()
    bootstrap, broker = broker_for(args.bootstrap)
    lake_dir = Path(tempfile.mkdtemp(prefix="microdc-bench-lake-"))
    try:
        prefix = f"benchl{uuid4().hex[:8]}."
        produced, config = produce(bootstrap, prefix, INPUT_TOPICS, fleet, args.events, console)
        total, n_req = produced.stats.emitted, produced.stats.valid[REQUEST_LOG.name]
        valid = sum(produced.stats.valid.values())
        topic = f"{prefix}{REQUEST_LOG.name}"
        raw_before = asyncio.run(consume(bootstrap, topic, REQUEST_LOG.partitions, n_req, True))
        console.print("landing...")
        lake = Lake(lake_dir)
        landed = asyncio.run(land(bootstrap, prefix, lake, valid))
        raw_after = asyncio.run(consume(bootstrap, topic, REQUEST_LOG.partitions, n_req, True))
        worker = None
        if not args.no_worker:
            console.print("running the stream worker on the same topics...")
            worker = run_worker(
                bootstrap, prefix, "memory://", total, n_req, 2, broker.pid if broker else None
            )
        sizes: Counter[str] = Counter()
        for path in lake_dir.rglob("*.parquet"):
            sizes[path.relative_to(lake_dir).parts[1]] += path.stat().st_size
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(lake_dir, ignore_errors=True)

    raw_rate = n_req / ((raw_before + raw_after) / 2)
    land_rate = landed["rows"] / landed["seconds"]
    rows = [("getmany + msgspec decode = RAW CONSUME LIMIT (baseline)", n_req, raw_rate)]
    rows.append(("LANDING: all input topics -> Parquet (zstd), rows/s", landed["rows"], land_rate))
    if worker is not None:
        rows.append(("stream worker, all input events/s", total, total / worker["seconds"]))
    table = Table(title=f"Landing vs raw consume, {total:,} events, {os.cpu_count()} cores")
    for col, right in (("measurement", False), ("rows", True), ("rows/s", True), ("vs raw", True)):
        table.add_column(col, justify="right" if right else "left")
    results = []
    for name, n, rate in rows:
        table.add_row(name, f"{n:,}", f"{rate:,.0f}", f"{rate / raw_rate:.2f}×")
        results.append({"measurement": name, "rows": n, "rows_per_s": rate})
    console.print(table)
    if worker is not None:
        ratio = land_rate / (total / worker["seconds"])
        console.print(f"landing runs at {ratio:.2f}× the stream worker's rate on the same input")

    wire = produced.stats.valid
    by_bytes = Table(title="bytes per row: Parquet on disk vs JSON on the wire")
    for col in ("dataset", "rows", "Parquet B/row", "JSON B/row"):
        by_bytes.add_column(col, justify="right" if col != "dataset" else "left")
    # JSON size on the wire, averaged over the first 200,000 simulated records per topic.
    sample: Counter[str] = Counter()
    sample_n: Counter[str] = Counter()
    for env in itertools.islice(Simulator(fleet, config), 200_000):
        sample[env.topic.name] += len(env.value)
        sample_n[env.topic.name] += 1
    json_bytes = {name: sample[name] / sample_n[name] for name in sample}
    for dataset in DATASETS:
        if dataset.layer != "bronze" or not wire[dataset.topic.name]:
            continue
        n = wire[dataset.topic.name]
        approx = json_bytes.get(dataset.topic.name)
        by_bytes.add_row(
            dataset.name,
            f"{n:,}",
            f"{sizes[dataset.name] / n:,.1f}",
            "-" if approx is None else f"{approx:,.1f}",
        )
    console.print(by_bytes)
    console.print(f"{landed['files']:,} files landed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "results": results,
                "bytes": dict(sizes),
                "when": datetime.now(UTC).isoformat(),
                "argv": sys.argv[1:],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
