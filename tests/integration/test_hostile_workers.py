"""Hostile records on a real broker: workers and the lander neither crash nor restart, every bad
record is a dead letter with its reason, every valid number equals the embedded runner's over
the same records without them, and no raw client IP reaches any lake file (issue 11).

The records are the simulator's, with hostile variants (`pipeline.simulate.hostile`) inserted
right after the valid record each is made from, produced with the project's producer: the
embedded reference sees the same per-partition order and offsets, so dead letters (keyed by
source position) compare one for one.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.codec import decoder
from pipeline.contracts.records import RequestLog
from pipeline.embedded.driver import from_envelopes, run_embedded
from pipeline.fleet import load_fleet
from pipeline.simulate import Envelope, SimConfig, Simulator
from pipeline.simulate.hostile import KINDS, expected_of, mix_hostile
from pipeline.simulate.sinks import KafkaSink
from tests.integration.test_worker import (
    COMPARED,
    MINUTES,
    assert_same,
    expected_outputs,
    kafka_order,
    wait_for_outputs,
)
from tests.support.live_feed import LiveFeed
from tests.support.worker_procs import Lander, WorkerPool, wait_for

START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
#: The cases that crashed or poisoned a worker before issue 11 (its table), a few per minute.
POISON = (
    "huge_int",
    "float_1e308",
    "year_9999",
    "year_2100",
    "grid_inverted",
    "nested_100k",
    "unknown_service",
    "unknown_team",
    "other_site",
    "power_100x",
    "unknown_zone",
)
#: Kafka's default max.message.bytes (1 MB) refuses the 1 MB-string records before any consumer.
ON_KAFKA = [k.name for k in KINDS if k.name != "huge_string"]
#: The simulator's client IPs and the hostile ones are all in RFC 5737's documentation ranges.
RAW_IP = re.compile(rb"(?:192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}")


def poison_for(batch: list[Envelope], i: int) -> list[str]:
    """Every poison kind in turn, one per minute; the grid's where grid values are."""
    grid = [k for k in POISON if k in ("grid_inverted", "unknown_zone")]
    if any(e.topic.name == "mdc.grid-intensity" for e in batch):
        return grid
    others = [k for k in POISON if k not in grid]
    return [others[i % len(others)]]


def produce(bootstrap: str, prefix: str, envelopes: list[Envelope]) -> None:
    async def run() -> None:
        async with KafkaSink(bootstrap, topic_prefix=prefix) as sink:
            await sink.write(envelopes)

    asyncio.run(run())


def no_traceback(worker_log: str) -> None:
    assert "Traceback" not in worker_log, worker_log[-3000:]


def test_poison_records_in_a_live_stream_survive_sigkill_and_restart(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Each record of issue 11's table, a few per minute of a live stream; the worker is
    SIGKILLed mid-run and restarted on its RocksDB store, so it replays what followed its last
    snapshot, poison included: it must start exactly twice, and compute the embedded numbers."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=40, seed=31, rps_scale=0.1)
    batches = [
        mix_hostile(batch, fleet, 4, seed=i, kinds=poison_for(batch, i))
        for i, batch in enumerate(Simulator(fleet, config).minutes())
    ]
    feed = LiveFeed(kafka_bootstrap, topic_prefix, batches, pace_s=0.25)
    expected = expected_outputs(run_embedded(fleet, from_envelopes(feed.envelopes)))
    clean = [e for e in feed.envelopes if e.fault is None]
    reference = expected_outputs(run_embedded(fleet, from_envelopes(clean)))
    for topic in COMPARED:
        assert expected[topic] == reference[topic], topic
    poison = sum(1 for e in feed.envelopes if e.fault)
    assert len(expected["mdc.dead-letters"]) == poison > 100

    worker = pool.add("a", store="rocksdb://", session_timeout_s=6).start()
    worker.wait_ready()
    feed.start()
    try:
        wait_for(lambda: feed.produced >= 15, 60, "the live feed to be a third through")
        worker.kill()
        killed_at = feed.produced
        worker.start()
        wait_for(lambda: feed.done, 60, "the live feed to finish")
        assert killed_at < len(feed.batches), "killed after the stream ended"
        got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=120)
    finally:
        feed.stop()
    assert_same(got, expected)
    assert worker.alive and worker.starts == 2, worker.log_tail()
    metrics = worker.metrics()
    kinds = ("invalid", "malformed_json", "unknown_reference", "implausible_value")
    for kind in (*kinds, "implausible_time"):
        assert f'kind="{kind}"' in metrics, kind
    no_traceback(worker.log_path.read_text(errors="replace"))


def test_fuzz_100k_hostile_records_through_two_workers_and_a_lander(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool, tmp_path: Path
) -> None:
    """100,000 hostile records of every kind (but the 1 MB ones Kafka refuses) mixed into valid
    traffic: 0 crashes and 0 restarts of two workers and a lander, every hostile record a dead
    letter of the kind it must be (or a late event), every valid number the embedded runner's
    without them, every valid record landed, and no raw IP in any file of the lake."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=32, rps_scale=0.05)
    valid = list(Simulator(fleet, config))
    mixed = mix_hostile(valid, fleet, 100_000, seed=5, kinds=ON_KAFKA)
    want_kinds = Counter(k for e in mixed if (k := expected_of(e)) not in (None, "late"))
    reference = expected_outputs(run_embedded(fleet, from_envelopes(valid)))
    produce(kafka_bootstrap, topic_prefix, mixed)
    # The workers apply each partition's two topics merged by Kafka timestamp: the embedded run
    # in that order is the exact reference (a late event notes the clock it met, which depends
    # on the order), and its valid numbers are those of the valid records alone.
    messages = kafka_order(kafka_bootstrap, topic_prefix, len(mixed))
    expected = expected_outputs(run_embedded(fleet, messages))
    for topic in COMPARED:
        assert expected[topic] == reference[topic], topic
    late = sum(1 for e in mixed if expected_of(e) == "late")
    assert len(expected["mdc.late-events"]) == late

    lake = tmp_path / "lake"
    lander = Lander(kafka_bootstrap, topic_prefix, lake, tmp_path / "land.log", max_rows=20_000)
    lander.start()
    workers = [pool.add(name).start() for name in ("w1", "w2")]
    for worker in workers:
        worker.wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=300)
    assert_same(got, expected)
    letters = Counter(copies[0]["error_kind"] for copies in got["mdc.dead-letters"].values())
    assert letters == want_kinds
    for worker in workers:
        assert worker.alive and worker.starts == 1, worker.log_tail()
        no_traceback(worker.log_path.read_text(errors="replace"))

    # Bronze holds every request that passes its contract: the valid ones and the hostile ones
    # only the stream can judge (unknown service, far future, decades late).
    landable = decoder(RequestLog).decode
    bronze_requests = 0
    for e in mixed:
        if e.topic.name == "mdc.request-log":
            try:
                landable(e.value)
                bronze_requests += 1
            except (msgspec.DecodeError, RecursionError):
                pass
    valid_ids = {landable(e.value).request_id for e in valid if e.topic.name == "mdc.request-log"}

    def landed_all() -> bool:
        lander.check_alive()
        return rows(lake, "bronze/request_log") == bronze_requests and rows(
            lake, "silver/dead_letters"
        ) >= len(expected["mdc.dead-letters"])

    wait_for(
        landed_all,
        180,
        "the lander to land every valid request and every dead letter",
        every=2.0,
    )
    assert lander.stop() == 0
    landed = {
        rid
        for f in (lake / "bronze/request_log").rglob("*.parquet")
        for rid in pq.read_table(f, columns=["request_id"]).column(0).to_pylist()
    }
    assert valid_ids <= landed
    leaks = raw_ips(lake)
    assert not leaks, f"raw client IPs in the lake: {leaks[:5]}"


def rows(lake: Path, dataset: str) -> int:
    root = lake / dataset
    return sum(pq.ParquetFile(f).metadata.num_rows for f in root.rglob("*.parquet"))


def raw_ips(lake: Path) -> list[tuple[str, str]]:
    """(file, match) for every documentation-range IPv4 address in any text or binary column."""
    found = []
    for path in sorted(lake.rglob("*.parquet")):
        table = pq.read_table(path)
        for column in table.itercolumns():
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                blob = "\n".join(v for v in column.to_pylist() if v is not None).encode()
            elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                blob = b"\n".join(v for v in column.to_pylist() if v is not None)
            else:
                continue
            found += [(str(path), m.decode()) for m in RAW_IP.findall(blob)]
    return found
