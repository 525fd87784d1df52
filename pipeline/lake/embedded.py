"""Landing without Kafka (`microdc demo`): the same segments, files and recovery rules as
`microdc land`, fed in-process.

Records get the topic-partition Kafka would give them (the contract's key, murmur2 like the
producers; late events keep their source partition) and consecutive offsets per partition, so
file names and lineage columns look exactly like a landing from Kafka. Kafka timestamps are
simulated too: an input's emit time, an output's own event time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.topics import TopicSpec
from pipeline.lake.datasets import DATASETS, Dataset
from pipeline.lake.land import LandStats
from pipeline.lake.privacy import IpPolicy
from pipeline.lake.segment import HOUR_MS, RollPolicy, SegmentBuffer
from pipeline.lake.store import Lake
from pipeline.metrics.energy import epoch_ms
from pipeline.wallclock import wall_clock_ms

_encoder = msgspec.json.Encoder()


class EmbeddedLander:
    def __init__(
        self,
        lake: Lake,
        *,
        policy: RollPolicy | None = None,
        ip_policy: IpPolicy | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.lake = lake
        self._now_ms = now_ms()  # a run is short: one reading for the far-future rule
        self.policy = policy or RollPolicy()
        self.ip_policy = ip_policy or IpPolicy()
        self.by_topic: dict[str, Dataset] = {d.topic.name: d for d in DATASETS}
        self.buffers: dict[tuple[str, int], SegmentBuffer] = {}
        self.next_offset: Counter[tuple[str, int]] = Counter()
        self.watermarks: dict[str, int] = {}
        self._checked_hour: dict[str, int] = {}
        self.stats = LandStats()

    def add(
        self,
        spec: TopicSpec,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        *,
        partition: int | None = None,
    ) -> None:
        """One record as it would sit in `spec`'s topic."""
        dataset = self.by_topic[spec.name]
        if partition is None:
            partition = 0 if key is None else partition_for(key, spec.partitions)
        tp = (spec.name, partition)
        buffer = self.buffers.get(tp)
        if buffer is None:
            buffer = self.buffers[tp] = SegmentBuffer(
                dataset, spec.name, partition, self.policy, self.ip_policy
            )
        offset = self.next_offset[tp]
        self.next_offset[tp] += 1
        self.stats.consumed += 1
        buffer.set_horizon(self.watermarks.get(dataset.name), self._now_ms)
        buffer.add(offset, timestamp_ms, value)
        if buffer.full():
            self._land(dataset, buffer)
        watermark = buffer.max_event_ms
        if watermark is None or watermark <= self.watermarks.get(dataset.name, watermark - 1):
            return
        self.watermarks[dataset.name] = watermark
        hour = (watermark - self.policy.lateness_ms) // HOUR_MS
        if hour > self._checked_hour.get(dataset.name, hour - 1):  # an hour boundary passed
            self._checked_hour[dataset.name] = hour
            for other in self.buffers.values():
                if other.dataset is dataset and other.hour_passed(watermark):
                    self._land(dataset, other)

    def add_output(self, spec: TopicSpec, record: Any, fallback_ms: int) -> None:
        """A stream output record (a Struct) as the worker would have produced it."""
        key, partition = output_key(spec, record)
        self.add(
            spec,
            key,
            _encoder.encode(record),
            output_event_ms(record, fallback_ms),
            partition=partition,
        )

    def close(self) -> LandStats:
        """Land every open segment (the end of the input)."""
        for buffer in self.buffers.values():
            self._land(buffer.dataset, buffer)
        return self.stats

    def _land(self, dataset: Dataset, buffer: SegmentBuffer) -> None:
        segment = buffer.take()
        if segment is None:
            return
        if segment.files:
            self.lake.write_segment(dataset, segment)
        self.stats.count(dataset, segment)


def output_key(spec: TopicSpec, record: Any) -> tuple[bytes | None, int | None]:
    """The key an output record is produced with (and a late event's source partition)."""
    key_field = spec.key_field
    key_value = getattr(record, key_field, None) if key_field else None
    if key_value is None and key_field is not None:
        key_value = getattr(record, "alert_id", None)
    key = None if key_value is None else str(key_value).encode()
    partition = getattr(record, "partition", None) if spec.name.endswith("late-events") else None
    return key, partition


def output_event_ms(record: Any, fallback_ms: int) -> int:
    """An output record's Kafka timestamp: its own event time, else `fallback_ms`."""
    for name in ("window_start", "event_at"):
        value = getattr(record, name, None)
        if value is not None:
            return epoch_ms(value)
    at_ms = getattr(record, "at_ms", None)
    return int(at_ms) if at_ms is not None else fallback_ms
