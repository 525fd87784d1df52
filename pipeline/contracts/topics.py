"""Every Kafka topic of the pipeline, declared once: name, key, partition count, record type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import msgspec

from pipeline.contracts.records import FacilitySample, GridIntensity, NodeSample, RequestLog

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

    def key_of(self, record: msgspec.Struct) -> bytes | None:
        """The message key of `record` (UTF-8), or None for unkeyed topics."""
        if self.key_field is None:
            return None
        value = getattr(record, self.key_field)
        return str(value).encode()

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
    None,
    "Closed minutes: energy, carbon and latency per node x service.",
)
SITE_MINUTES = TopicSpec(
    "mdc.site-minutes", 1, "site_id", None, "Closed minutes: PUE, carbon and water per site."
)
SLO_BURN = TopicSpec("mdc.slo-burn", 1, "service", None, "SLO burn rates per service and window.")
ALERTS = TopicSpec("mdc.alerts", 1, "service", None, "Firing and resolved alerts.")
LATE_EVENTS = TopicSpec(
    "mdc.late-events", CO_PARTITIONS, None, None, "Records that arrived after their minute closed."
)
DEAD_LETTERS = TopicSpec(
    "mdc.dead-letters",
    1,
    None,
    None,
    "Records that failed to decode or validate, with source position and reason.",
)

NODE_MINUTES = TopicSpec(
    "mdc.node-minutes",
    1,
    "site_id",
    None,
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
