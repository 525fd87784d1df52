"""Output records of a stage: JSON-encoded, keyed by their topic contract, sent batch by batch
and awaited together before a snapshot (a stage's snapshot is stored only after its outputs
are in Kafka)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec

from pipeline.contracts.topics import (
    ALERTS,
    DEAD_LETTERS,
    ENERGY_MINUTES,
    LATE_EVENTS,
    NODE_MINUTES,
    SITE_MINUTES,
    SLO_BURN,
    TopicSpec,
)

_encoder = msgspec.json.Encoder()

#: Output record type name -> topic contract.
OUTPUT_SPECS: dict[str, TopicSpec] = {
    "NodeMinute": NODE_MINUTES,
    "PartitionMark": NODE_MINUTES,
    "EnergyMinute": ENERGY_MINUTES,
    "SiteMinute": SITE_MINUTES,
    "SloBurn": SLO_BURN,
    "AlertEvent": ALERTS,
    "LateEvent": LATE_EVENTS,
    "DeadLetter": DEAD_LETTERS,
}


def message_key(spec: TopicSpec, record: Any) -> bytes | None:
    """The message key: the contract's key field; an alert without a service keys on its id."""
    if spec.key_field is None:
        return None
    value = getattr(record, spec.key_field, None)
    if value is None:
        value = getattr(record, "alert_id", None)
    return None if value is None else str(value).encode()


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

    def add(self, record: Any, *, partition: int | None = None) -> None:
        """Queue `record` for its topic; `partition` pins it (e.g. late events stay with their
        source partition, modulo the topic's count), otherwise the key decides."""
        spec = OUTPUT_SPECS[type(record).__name__]
        if partition is not None:
            # stage-1 topics may have more partitions than the output topic
            partition %= spec.partitions
        self._pending.append(
            (spec.name, message_key(spec, record), _encoder.encode(record), partition)
        )

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
