"""Output records of a stage: JSON-encoded, keyed by their topic contract, sent batch by batch
and awaited together before a snapshot (a stage's snapshot is stored only after its outputs
are in Kafka)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec

from pipeline.contracts.topics import output_key, output_topic

_encoder = msgspec.json.Encoder()


#: `flush()` waits for the broker's acks when this many sends are unacknowledged.
MAX_IN_FLIGHT = 50_000


class OutputSink:
    """Collects encoded outputs; `flush()` sends them in order, `drain()` waits until the broker
    has acknowledged everything sent so far (and raises the first failed send)."""

    def __init__(self, app: Any, prefix: str) -> None:
        self._app = app
        self._prefix = prefix
        self._pending: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.counts: Counter[str] = Counter()
        self._in_flight: list[asyncio.Future[Any]] = []

    def add(self, record: Any) -> None:
        """Queue `record` for its topic (`contracts.topics.output_topic`), keyed and pinned as
        its contract says (`output_key`: late events stay with their source partition)."""
        spec = output_topic(record)
        key, partition = output_key(spec, record)
        if partition is not None:
            # stage-1 topics may have more partitions than the output topic
            partition %= spec.partitions
        self._pending.append((spec.name, key, _encoder.encode(record), partition))

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        producer = self._app.producer
        futures = []
        for name, key, value, partition in pending:
            futures.append(
                await producer.send(f"{self._prefix}{name}", key, value, partition, None, None)
            )
            self.counts[name] += 1
        self._in_flight += futures
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            await self.drain()  # backpressure, and memory stays bounded between snapshots

    async def drain(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        if in_flight:
            await asyncio.gather(*in_flight)
