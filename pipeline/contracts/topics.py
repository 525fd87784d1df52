"""Every Kafka topic of the pipeline, declared once: name, key, partition count, record type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from pipeline.contracts.outputs import (
    AlertEvent,
    DeadLetter,
    EnergyMinute,
    LateEvent,
    NodeMinute,
    PartitionMark,
    SiteMinute,
    SloBurn,
)
from pipeline.contracts.records import (
    FacilitySample,
    GridIntensity,
    NodeSample,
    RequestLog,
    epoch_ms,
)

#: Node telemetry and request logs are co-partitioned on `node_id`: same key, same count. This
#: is the count the pipeline creates them with; existing topics may have any count, as long as
#: both have the same (see `TopicSpec.co_partitioned`).
CO_PARTITIONS = 4


@dataclass(frozen=True)
class TopicSpec:
    """A topic contract. `key_field` names the record field whose value is the message key."""

    name: str
    partitions: int
    key_field: str | None
    record_type: type[msgspec.Struct] | None
    description: str
    config: dict[str, str] = field(default_factory=dict)
    #: Topics of one group are read partition by partition together (stage 1): they may have
    #: any partition count - `partitions` is what the pipeline creates them with - but all
    #: topics of the group the same one. Other topics must have exactly `partitions`.
    co_partitioned: str | None = None
    #: The field that keys a record whose `key_field` is null (an alert without a service).
    key_fallback: str | None = None

    def key_of(self, record: Any) -> bytes | None:
        """The message key of `record` (UTF-8), or None for unkeyed topics and null keys."""
        if self.key_field is None:
            return None
        value = getattr(record, self.key_field, None)
        if value is None and self.key_fallback is not None:
            value = getattr(record, self.key_fallback, None)
        return None if value is None else str(value).encode()

    def with_prefix(self, prefix: str) -> TopicSpec:
        """The same topic under `prefix` (tests give every run its own topics)."""
        return replace(self, name=f"{prefix}{self.name}") if prefix else self


NODE_TELEMETRY = TopicSpec(
    "mdc.node-telemetry",
    CO_PARTITIONS,
    "node_id",
    NodeSample,
    "Per-node power, utilisation and temperatures (NodeSample).",
    co_partitioned="stage-one",
)
REQUEST_LOG = TopicSpec(
    "mdc.request-log",
    CO_PARTITIONS,
    "node_id",
    RequestLog,
    "One record per finished request (RequestLog); co-partitioned with node telemetry.",
    co_partitioned="stage-one",
)
FACILITY_TELEMETRY = TopicSpec(
    "mdc.facility-telemetry",
    1,
    "site_id",
    FacilitySample,
    "Site meters: facility, IT and on-site renewable power (FacilitySample).",
)
GRID_INTENSITY = TopicSpec(
    "mdc.grid-intensity",
    1,
    "zone",
    GridIntensity,
    "Grid carbon intensity per zone and validity interval (GridIntensity).",
)

ENERGY_MINUTES = TopicSpec(
    "mdc.energy-minutes",
    CO_PARTITIONS,
    "node_id",
    EnergyMinute,
    "Closed minutes: energy, carbon and latency per node x service.",
)
SITE_MINUTES = TopicSpec(
    "mdc.site-minutes", 1, "site_id", SiteMinute, "Closed minutes: PUE, carbon and water per site."
)
SLO_BURN = TopicSpec(
    "mdc.slo-burn", 1, "service", SloBurn, "SLO burn rates per service and window."
)
ALERTS = TopicSpec(
    "mdc.alerts", 1, "service", AlertEvent, "Firing and resolved alerts.", key_fallback="alert_id"
)
LATE_EVENTS = TopicSpec(
    "mdc.late-events",
    CO_PARTITIONS,
    None,
    LateEvent,
    "Records that arrived after their minute closed.",
)
DEAD_LETTERS = TopicSpec(
    "mdc.dead-letters",
    1,
    None,
    DeadLetter,
    "Records that failed to decode or validate, with source position and reason.",
)

NODE_MINUTES = TopicSpec(
    "mdc.node-minutes",
    1,
    "site_id",
    NodeMinute,
    "Internal, stage 1 -> stage 2: closed node x service minutes (IT level) and partition marks.",
)

INPUT_TOPICS: tuple[TopicSpec, ...] = (
    NODE_TELEMETRY,
    REQUEST_LOG,
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
)
OUTPUT_TOPICS: tuple[TopicSpec, ...] = (
    ENERGY_MINUTES,
    SITE_MINUTES,
    SLO_BURN,
    ALERTS,
    LATE_EVENTS,
    DEAD_LETTERS,
)
INTERNAL_TOPICS: tuple[TopicSpec, ...] = (NODE_MINUTES,)
ALL_TOPICS: tuple[TopicSpec, ...] = INPUT_TOPICS + OUTPUT_TOPICS + INTERNAL_TOPICS


#: The record -> topic map, declared once: the topic every output record type is produced to
#: (the embedded driver, the workers' sink and the lake all route by it). Node minutes and
#: partition marks share the internal stage-1 -> stage-2 topic.
OUTPUT_TOPIC_OF: dict[type[msgspec.Struct], TopicSpec] = {
    **{spec.record_type: spec for spec in OUTPUT_TOPICS + INTERNAL_TOPICS if spec.record_type},
    PartitionMark: NODE_MINUTES,
}


def output_topic(record: msgspec.Struct) -> TopicSpec:
    """The topic an output record goes to."""
    return OUTPUT_TOPIC_OF[type(record)]


def topic_for(record_type: type[msgspec.Struct]) -> TopicSpec:
    """The input topic that carries `record_type`."""
    for spec in INPUT_TOPICS:
        if spec.record_type is record_type:
            return spec
    raise KeyError(f"no input topic carries {record_type.__name__}")


def iter_topics(prefix: str = "") -> Iterator[TopicSpec]:
    """All topics, optionally renamed under `prefix`."""
    for spec in ALL_TOPICS:
        yield spec.with_prefix(prefix)


def output_key(spec: TopicSpec, record: Any) -> tuple[bytes | None, int | None]:
    """The key an output record is produced with, and the partition it is pinned to: a late
    event stays with its source partition (the producer takes it modulo the topic's count)."""
    partition = record.partition if isinstance(record, LateEvent) else None
    return spec.key_of(record), partition


def output_event_ms(record: Any, fallback_ms: int) -> int:
    """An output record's Kafka timestamp: its own event time, else `fallback_ms`."""
    for name in ("window_start", "event_at"):
        value = getattr(record, name, None)
        if value is not None:
            return epoch_ms(value)
    at_ms = getattr(record, "at_ms", None)
    return int(at_ms) if at_ms is not None else fallback_ms
