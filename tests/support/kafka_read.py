"""Read whole topics back from the broker, waiting on a count with a deadline (never a sleep)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.contracts import TopicSpec


async def _read(
    bootstrap: str, topics: list[TopicSpec], expected: int, timeout: float
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(spec.name, p) for spec in topics for p in range(spec.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for batch in batches.values():
                records.extend(batch)
        # One more poll proves nothing beyond `expected` is there.
        extra = await consumer.getmany(timeout_ms=1000)
        for batch in extra.values():
            records.extend(batch)
        return records
    finally:
        await consumer.stop()


def read_topics(
    bootstrap: str, topics: list[TopicSpec], expected: int, timeout: float = 60
) -> list[Any]:
    """All records of `topics` (ConsumerRecord objects); stops once `expected` have arrived."""
    return asyncio.run(_read(bootstrap, topics, expected, timeout))
