"""Kafka benchmarks of the foundation, each next to a baseline measured in the same run.

(a) simulator produce throughput (acks=all, idempotent) vs the simulator generating alone;
(b) the raw consume limit of one process: aiokafka `getmany` plus msgspec decoding of
    request-log records, no other work, vs `getmany` alone and vs decoding bytes in memory.
(b) is the ceiling every later stream processor is measured against.

    python bench/bench_kafka.py [--minutes 10] [--rps-scale 1.0] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings
from pipeline.contracts import ALL_TOPICS, RequestLog
from pipeline.contracts.codec import decoder
from pipeline.fleet import load_fleet
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.kafka_security import KafkaSecurity, client_kwargs
from pipeline.localkafka import BOOTSTRAP_ENV, LocalKafka
from pipeline.simulate import SimConfig, Simulator, simulate_to_kafka

START = datetime(2026, 3, 2, 15, tzinfo=UTC)  # late morning in Bogotá and Mexico: near peak
#: How every benchmark client connects: MICRODC_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_* (or the
#: config file) for a broker given with --bootstrap; PLAINTEXT by default, as the local broker.
SECURITY = KafkaSecurity.from_settings(Settings())


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def consume(
    bootstrap: str, topic: str, partitions: int, expected: int, decode: bool
) -> float:
    """Seconds to read `expected` records of `topic` from the beginning (optionally decoding)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **client_kwargs(SECURITY),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        dec = decoder(RequestLog).decode
        seen = 0
        started = time.perf_counter()
        deadline = started + 120
        while seen < expected:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{topic}: read {seen:,} of {expected:,} records in 120 s")
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                if decode:
                    for rec in records:
                        dec(rec.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=10, help="simulated minutes (default 10)")
    parser.add_argument("--rps-scale", type=float, default=1.0, help="request-rate multiplier")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--bootstrap", default=os.environ.get(BOOTSTRAP_ENV), help="use this broker"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/kafka.json"))
    args = parser.parse_args()
    console = Console()
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=args.minutes, seed=42, rps_scale=args.rps_scale)

    broker: LocalKafka | None = None
    startup_s = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = LocalKafka(Path(tempfile.mkdtemp(prefix="microdc-bench-")))
        bootstrap = broker.start()
        startup_s = broker.startup_seconds

    sim = Simulator(fleet, config)
    raw_values = [e.value for e in sim if e.topic.name == "mdc.request-log"]
    events, n_req = sim.stats.emitted, len(raw_values)
    prefixes: list[str] = []
    dec = decoder(RequestLog).decode

    def generate() -> float:  # (a) baseline: the same records, no sink at all
        t = time.perf_counter()
        for _batch in Simulator(fleet, config).minutes():
            pass
        return time.perf_counter() - t

    def produce() -> float:  # (a) into fresh topics each time
        prefix = f"bench{uuid4().hex[:8]}."
        ensure_topics_sync(
            bootstrap, [t.with_prefix(prefix) for t in ALL_TOPICS], security=SECURITY
        )
        produced = simulate_to_kafka(
            fleet, config, bootstrap, topic_prefix=prefix, security=SECURITY
        )
        assert produced.stats.emitted == events
        prefixes.append(prefix)
        return produced.seconds

    def decode_in_memory() -> float:  # (b) baseline: decoding alone
        t = time.perf_counter()
        for value in raw_values:
            dec(value)
        return time.perf_counter() - t

    def fetch(decode: bool) -> float:  # (b) from the broker, request-log topic only
        spec = next(t for t in ALL_TOPICS if t.name == "mdc.request-log")
        name = f"{prefixes[0]}{spec.name}"
        return asyncio.run(consume(bootstrap, name, spec.partitions, n_req, decode))

    try:
        gen_s = median(generate() for _ in range(args.repeat))
        produce_s = median(produce() for _ in range(args.repeat))
        decode_mem_s = median(decode_in_memory() for _ in range(args.repeat))
        fetch_s = median(fetch(False) for _ in range(args.repeat))
        raw_s = median(fetch(True) for _ in range(args.repeat))
    finally:
        if broker is not None:
            broker.stop()

    rows = [
        ("a", "simulator, generate only (baseline)", events, gen_s, None),
        ("a", "simulator → Kafka, acks=all, idempotent", events, produce_s, gen_s),
        ("b", "msgspec decode in memory (baseline)", n_req, decode_mem_s, None),
        ("b", "aiokafka getmany only", n_req, fetch_s, decode_mem_s),
        ("b", "getmany + msgspec decode = RAW CONSUME LIMIT", n_req, raw_s, decode_mem_s),
    ]
    table = Table(
        title=f"Kafka foundation benchmarks: {args.minutes} simulated min, rps scale "
        f"{args.rps_scale}, median of {args.repeat}, {os.cpu_count()} cores"
    )
    for col in ("", "measurement", "events", "seconds", "events/s", "vs baseline"):
        right = col in ("events", "seconds", "events/s")
        table.add_column(col, justify="right" if right else "left")
    results = []
    for group, name, n, secs, base in rows:
        rate = n / secs
        ratio = f"{base / secs:.2f}×" if base else "1.00×"
        table.add_row(group, name, f"{n:,}", f"{secs:.2f}", f"{rate:,.0f}", ratio)
        results.append(
            {
                "group": group,
                "measurement": name,
                "events": n,
                "seconds": secs,
                "events_per_s": rate,
                "ratio_to_baseline": (base / secs) if base else 1.0,
            }
        )
    console.print(table)
    if startup_s is not None:
        console.print(f"local Kafka broker start-up: {startup_s:.1f} s")
    console.print(f"peak RSS of this process: {rss_mb():,.0f} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"results": results, "broker_startup_s": startup_s, "argv": sys.argv[1:]}
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
