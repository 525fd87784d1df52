"""The lake's datasets: which topic lands where, partitioned how, with which Arrow schema.

bronze = the four input topics, validated (a record that fails its contract is not landed here;
the stream worker sends it to `mdc.dead-letters`, which lands in silver). silver = every stream
output. Each row also carries its Kafka lineage: `_topic`, `_partition`, `_offset`,
`_kafka_timestamp` - (topic, partition, offset) is unique in a dataset, which is what the
exactly-once tests check; the outputs' natural `key` identifies re-emissions after a failover.

Partition columns (`site_id`, `zone`) live in the directory names only (hive style), not in
the files; `date` is the UTC date of the dataset's event-time field.

No raw client IP lands (see `privacy`): request logs' `client_ip` becomes `client_ip_hmac`, and
the columns that quote a whole record or text about one (`Dataset.redacted`) are redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import msgspec
import pyarrow as pa

from pipeline.contracts.output_schemas import OUTPUT_RECORDS
from pipeline.contracts.records import FacilitySample, GridIntensity, NodeSample, RequestLog
from pipeline.contracts.topics import (
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
    NODE_TELEMETRY,
    REQUEST_LOG,
    TopicSpec,
)
from pipeline.lake.arrow_schema import arrow_schema, load_contract
from pipeline.lake.privacy import HASHED_IP as HASHED_IP  # re-exported (the docs use them)
from pipeline.lake.privacy import RAW_IP as RAW_IP

Layer = Literal["bronze", "silver"]

LINEAGE = (
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_kafka_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
)


@dataclass(frozen=True)
class Dataset:
    layer: Layer
    name: str
    topic: TopicSpec
    record_type: type[msgspec.Struct]
    contract: str
    #: Event-time field whose UTC date partitions the rows; None: the Kafka timestamp.
    time_field: str | None
    #: Second partition level (`site_id`, `zone`), or None.
    partition_field: str | None = None
    #: The time field holds epoch milliseconds rather than a datetime.
    time_is_ms: bool = False
    #: Columns that may quote a record or its key: stored through `IpPolicy.redact`.
    redacted: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.layer}/{self.name}"

    @cached_property
    def contract_schema(self) -> pa.Schema:
        return arrow_schema(load_contract(self.contract), source=f"schemas/{self.contract}")

    @cached_property
    def read_schema(self) -> pa.Schema:
        """What Arrow's JSON reader reads of a raw record: the contract, plus the hash that a
        record redacted from the lake (and reprocessed) carries instead of its raw IP."""
        if RAW_IP not in self.contract_schema.names:
            return self.contract_schema
        return self.contract_schema.append(pa.field(HASHED_IP, pa.string(), nullable=True))

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Record fields stored in the files, in order (partition field excluded)."""
        return tuple(name for name in self.contract_schema.names if name != self.partition_field)

    @cached_property
    def schema(self) -> pa.Schema:
        """The files' schema: the contract's fields, the hashed IP for the raw one, lineage."""
        fields = []
        for name in self.columns:
            field = self.contract_schema.field(name)
            if name == RAW_IP:
                field = pa.field(HASHED_IP, pa.string(), nullable=True)
            fields.append(field)
        return pa.schema([*fields, *LINEAGE])


def _silver(name: str, time_field: str | None, partition_field: str | None, **kw: Any) -> Dataset:
    spec, record_type = OUTPUT_RECORDS[name]
    return Dataset(
        "silver",
        name,
        spec,
        record_type,
        f"outputs/{name}.schema.json",
        time_field,
        partition_field,
        **kw,
    )


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "bronze",
        "node_telemetry",
        NODE_TELEMETRY,
        NodeSample,
        "node_sample.schema.json",
        "observed_at",
        "site_id",
    ),
    Dataset(
        "bronze",
        "request_log",
        REQUEST_LOG,
        RequestLog,
        "request_log.schema.json",
        "finished_at",
        "site_id",
    ),
    Dataset(
        "bronze",
        "facility_telemetry",
        FACILITY_TELEMETRY,
        FacilitySample,
        "facility_sample.schema.json",
        "observed_at",
        "site_id",
    ),
    Dataset(
        "bronze",
        "grid_intensity",
        GRID_INTENSITY,
        GridIntensity,
        "grid_intensity.schema.json",
        "valid_from",
        "zone",
    ),
    _silver("energy_minutes", "window_start", "site_id"),
    _silver("site_minutes", "window_start", "site_id"),
    _silver("slo_burn", "window_start", "site_id"),
    _silver("alerts", "at_ms", None, time_is_ms=True),
    _silver("late_events", "event_at", None, redacted=("value",)),
    _silver("dead_letters", None, None, redacted=("record_key", "value", "error_detail")),
)

BY_TOPIC: dict[str, Dataset] = {d.topic.name: d for d in DATASETS}
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}


def dataset_for(topic: str, prefix: str = "") -> Dataset:
    """The dataset a (possibly prefixed) topic lands in."""
    return BY_TOPIC[topic.removeprefix(prefix)]
