"""The collector's disk buffer against a real broker that dies and comes back: every record
arrives exactly once, in order per partition, on the partition its key maps to; a restarted
sender on the same buffer sends nothing again.

The broker here is this test's own `LocalKafka` (SIGKILLed and restarted on the same port and
data directory), never the session broker other tests use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.collect.buffer import DiskBuffer, Record
from pipeline.collect.sender import BufferedKafkaSender
from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.topics import FACILITY_TELEMETRY, LATE_EVENTS, NODE_TELEMETRY, TopicSpec
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.localkafka import LocalKafka

TOPICS: tuple[TopicSpec, ...] = (NODE_TELEMETRY, FACILITY_TELEMETRY, LATE_EVENTS)
Placed = tuple[str, int]  # (prefixed topic, partition)


def records(first: int, count: int) -> list[Record]:
    """Node samples keyed by node, site samples keyed by site, and unkeyed late events."""
    out = []
    for i in range(first, first + count):
        spec = TOPICS[i % 3]
        key = None if spec.key_field is None else f"{spec.key_field}-{i % 7}".encode()
        out.append(Record(spec.name, key, f'{{"seq": {i}}}'.encode()))
    return out


def expected_placement(
    prefix: str, recs: list[Record]
) -> dict[Placed, list[tuple[bytes | None, bytes]]]:
    """Where each record must land (position = its index: the buffer starts at 0)."""
    counts = {spec.name: spec.partitions for spec in TOPICS}
    out: dict[Placed, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for position, r in enumerate(recs):
        n = counts[r.topic]
        part = partition_for(r.key, n) if r.key is not None else position % n
        out[(prefix + r.topic, part)].append((r.key, r.value))
    return dict(out)


async def read_all(bootstrap: str, prefix: str) -> dict[Placed, list[tuple[bytes | None, bytes]]]:
    """Everything in the test's topics, per partition in offset order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(prefix + spec.name, p) for spec in TOPICS for p in range(spec.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        got: dict[Placed, list[tuple[bytes | None, bytes]]] = defaultdict(list)
        async with asyncio.timeout(60):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                    got[(tp.topic, tp.partition)] += [(m.key, m.value) for m in batch]
        return {k: v for k, v in got.items() if v}
    finally:
        await consumer.stop()


async def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def _sender(buf: DiskBuffer, bootstrap: str, prefix: str) -> BufferedKafkaSender:
    return BufferedKafkaSender(
        buf,
        bootstrap,
        topic_prefix=prefix,
        batch_records=64,
        backoff_s=0.1,
        max_backoff_s=1.0,
        down_after_s=2.0,
    )


async def _outage(kafka: LocalKafka, buffer_dir: Path, prefix: str) -> list[Record]:
    """Send, kill the broker, buffer more, bring it back; return everything appended."""
    appended: list[Record] = []
    with DiskBuffer(buffer_dir, max_bytes=16 << 20, segment_bytes=4096) as buf:
        async with _sender(buf, kafka.bootstrap, prefix) as sender:
            for _ in range(5):
                appended += records(len(appended), 40)
                buf.append(appended[-40:])
                sender.notify()
            await wait_until(lambda: buf.pending_records == 0, 60, "the first records to be sent")
            assert sender.state == "up"

            kafka.kill()
            for _ in range(6):
                appended += records(len(appended), 50)
                buf.append(appended[-50:])
                sender.notify()
                await asyncio.sleep(0.2)  # a collector's polls go on while Kafka is down
            await wait_until(lambda: sender.state == "down", 30, "the sender to see Kafka down")
            assert buf.pending_records == 300, "nothing is acked while the broker is gone"
            assert len(list(buffer_dir.glob("seg-*.buf"))) > 1  # on disk, several segments
            assert sender.buffered_bytes > 0

            assert kafka.start() == kafka.bootstrap  # same port, same data dir, no reformat
            await wait_until(lambda: buf.pending_records == 0, 120, "the buffer to drain")
            assert sender.state == "up"
            assert sender.records_sent == len(appended)
            assert sender.send_failures == 0  # one producer session rode out the outage
    return appended


async def _restart_sends_nothing(bootstrap: str, buffer_dir: Path, prefix: str) -> int:
    with DiskBuffer(buffer_dir, max_bytes=16 << 20, segment_bytes=4096) as buf:
        assert buf.pending_records == 0
        async with _sender(buf, bootstrap, prefix) as sender:
            await wait_until(lambda: sender.state == "up", 60, "the restarted sender to connect")
        return sender.records_sent


async def _start_while_down(kafka: LocalKafka, buffer_dir: Path, prefix: str) -> list[Record]:
    """A collector restarted while Kafka is down: it buffers, backs off, drains when back."""
    kafka.kill()
    with DiskBuffer(buffer_dir, max_bytes=16 << 20, segment_bytes=4096) as buf:
        more = records(500, 100)
        buf.append(more)
        async with _sender(buf, kafka.bootstrap, prefix) as sender:
            await wait_until(lambda: sender.send_failures >= 2, 60, "connection attempts to fail")
            assert sender.state == "down" and buf.pending_records == 100
            kafka.start()
            await wait_until(lambda: buf.pending_records == 0, 120, "the buffer to drain")
            assert sender.state == "up" and sender.records_sent == 100
    return more


def test_kafka_down_and_back_every_record_once_in_order(
    tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = LocalKafka(tmp_path / "broker")
    try:
        bootstrap = kafka.start()
        ensure_topics_sync(bootstrap, [spec.with_prefix(topic_prefix) for spec in TOPICS])
        buffer_dir = tmp_path / "buffer"
        with caplog.at_level(logging.INFO, logger="pipeline.collect.sender"):
            appended = asyncio.run(_outage(kafka, buffer_dir, topic_prefix))
        ours = [r.getMessage() for r in caplog.records if r.name == "pipeline.collect.sender"]
        assert sum(" is down (" in m for m in ours) == 1, ours
        assert sum(" is back: " in m for m in ours) == 1, ours

        got = asyncio.run(read_all(bootstrap, topic_prefix))
        assert got == expected_placement(topic_prefix, appended)  # once, in order, placed
        assert sum(len(v) for v in got.values()) == 500

        assert asyncio.run(_restart_sends_nothing(bootstrap, buffer_dir, topic_prefix)) == 0
        assert asyncio.run(read_all(bootstrap, topic_prefix)) == got

        appended += asyncio.run(_start_while_down(kafka, buffer_dir, topic_prefix))
        got = asyncio.run(read_all(bootstrap, topic_prefix))
        assert got == expected_placement(topic_prefix, appended)
        assert sum(len(v) for v in got.values()) == 600
    finally:
        kafka.kill()
    assert not kafka.is_running()
