"""Segments: the unit of exactly-once landing (pure: no I/O).

A segment is a contiguous offset range `[first, last]` of one topic-partition. Its valid records
are grouped by hive partition (date, site) and become one Parquet file per group, all named
`<topic>+<partition>+<first>-<last>.parquet`; every file records in its footer how many files
the segment has, so a restart can tell a whole segment from one a crash cut short.

When a segment ends (`RollPolicy`), never by the wall clock:
- `max_rows` valid rows or `max_bytes` of record payload;
- an event-time boundary: the segment holds rows of one UTC hour (by its first row); it rolls
  when the writer's event-time watermark (max event time seen on any of its partitions minus
  the allowed lateness) passes the end of that hour - so a quiet partition rolls too, as the
  others advance. A row dated more than `max_future_ms` past both that watermark and the
  driver's clock (`horizon_ms`, as the stream core's `implausible_time` rule) is landed but
  moves neither the hour nor the watermark: one record dated 2100 must not roll every segment
  after every fetch;
- the end of the log: the driver rolls a partition it has read to its high watermark and that
  stayed there for a whole fetch (a bounded input, a paused producer).
Invalid records take part in the range (they are consumed) but not in any file. Whatever a
record holds, `SegmentBuffer.add` and `SegmentDraft.build` never raise because of it: a record
that fails its contract (malformed, nested too deep, a tombstone) or that the lake cannot hold
(an event time outside years 1-9999, an integer beyond int64) is counted `invalid` and its
neighbours land as usual. Columns that quote records are redacted (`privacy`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.json as pa_json

from pipeline.contracts.codec import decoder, list_decoder
from pipeline.contracts.records import EPOCH, ONE_MS, UtcTime
from pipeline.lake.datasets import Dataset
from pipeline.lake.paths import file_name, partition_value
from pipeline.lake.privacy import HASHED_IP, RAW_IP, IpPolicy

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Footer key: {"topic", "partition", "first", "last", "files"} of the file's segment.
SEGMENT_META = b"microdc.segment"
#: Event times whose date exists (years 1-9999); a record outside cannot be partitioned.
MIN_EVENT_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // ONE_MS
MAX_EVENT_MS = (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC) - EPOCH) // ONE_MS
#: What Arrow raises for a value its column cannot hold (e.g. 10**30 in an int64 column).
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)


@dataclass(frozen=True)
class RollPolicy:
    max_rows: int = 250_000
    max_bytes: int = 64 * 1024 * 1024
    lateness_ms: int = 120_000
    #: How far past the watermark and the clock a row may lie and still count for rolling
    #: (the fleet's default `plausibility.max_future_s`).
    max_future_ms: int = 3_600_000


@dataclass
class SegmentFile:
    """One file of a segment: its directory below the dataset and its rows."""

    directory: str
    name: str
    table: pa.Table


@dataclass
class Segment:
    topic: str
    partition: int
    first: int
    last: int
    files: list[SegmentFile]
    rows: int
    invalid: int


@dataclass
class _Group:
    records: list[Any] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)

    def subset(self, keep: list[int]) -> _Group:
        """The group with only the rows at the indices `keep` (in order)."""
        return _Group(
            [self.records[i] for i in keep],
            [self.offsets[i] for i in keep],
            [self.timestamps[i] for i in keep],
        )


class SegmentBuffer:
    """The open segment of one topic-partition."""

    def __init__(
        self,
        dataset: Dataset,
        topic: str,
        partition: int,
        policy: RollPolicy,
        ip_policy: IpPolicy,
    ) -> None:
        self.dataset = dataset
        self.topic = topic
        self.partition = partition
        self.policy = policy
        self.ip_policy = ip_policy
        self._decode = decoder(dataset.record_type).decode
        self._columns = dataset.columns
        self._time_field = dataset.time_field
        self._time_is_ms = dataset.time_is_ms
        self._partition_field = dataset.partition_field
        self._dates: dict[int, str] = {}
        #: Keep raw JSON for Arrow's reader (no maps or bytes: Arrow reads them differently).
        self._raw = not any(
            pa.types.is_map(f.type) or pa.types.is_binary(f.type) for f in dataset.contract_schema
        )
        #: Raw mode reads only the grouping fields here; full validation happens in `build`.
        self._key_decode = _key_decoder(dataset).decode if self._raw else self._decode
        #: Set by the driver (`set_horizon`): rows dated later do not count for rolling.
        self.horizon_ms: int | None = None
        self._reset()

    def set_horizon(self, watermark_ms: int | None, now_ms: int | None) -> None:
        """Rows later than `max_future_ms` past both the dataset's watermark and the clock
        will land without moving this segment's hour or the watermark."""
        if watermark_ms is None or (now_ms is not None and now_ms > watermark_ms):
            watermark_ms = now_ms  # (the embedded lander sets it per record: no list here)
        self.horizon_ms = None if watermark_ms is None else watermark_ms + self.policy.max_future_ms

    def _reset(self) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.rows = 0
        self.bytes = 0
        self.invalid = 0
        self.hour_end: int | None = None
        self.max_event_ms: int | None = None
        self._groups: dict[tuple[str, str | None], _Group] = {}

    def __len__(self) -> int:
        """Records consumed into this segment (valid or not)."""
        return 0 if self.first is None or self.last is None else self.last - self.first + 1

    def add(self, offset: int, timestamp_ms: int, value: bytes | None) -> str | None:
        """Take one consumed record; returns why it is not landed (invalid), else None.
        (One function: this runs per record, and a call more costs 10 % of it.)"""
        if self.first is None:
            self.first = offset
        self.last = offset
        try:
            if value is None:
                raise msgspec.DecodeError("empty message value (a tombstone)")
            record = self._key_decode(value)
        except msgspec.DecodeError as exc:  # ValidationError included
            return self._invalid(str(exc))
        except RecursionError:
            return self._invalid("JSON nested too deeply")
        if self._time_field is None:
            event_ms = timestamp_ms
        elif self._time_is_ms:
            event_ms = int(getattr(record, self._time_field))
        else:
            event_ms = (getattr(record, self._time_field) - EPOCH) // ONE_MS
        if not MIN_EVENT_MS <= event_ms <= MAX_EVENT_MS:
            return self._invalid(f"event time {event_ms} ms is outside the years 1-9999")
        day = event_ms // DAY_MS
        date = self._dates.get(day)
        if date is None:
            date = self._dates[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
        key = (date, getattr(record, self._partition_field) if self._partition_field else None)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        group.records.append(value if self._raw else record)
        group.offsets.append(offset)
        group.timestamps.append(timestamp_ms)
        self.rows += 1
        self.bytes += len(value)
        if self.horizon_ms is not None and event_ms > self.horizon_ms:
            return None  # implausibly far ahead: landed, but it must not roll anything
        if self.hour_end is None:
            self.hour_end = event_ms - event_ms % HOUR_MS + HOUR_MS
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms
        return None

    def _invalid(self, reason: str) -> str:
        self.invalid += 1
        return reason

    def full(self) -> bool:
        return self.rows >= self.policy.max_rows or self.bytes >= self.policy.max_bytes

    def hour_passed(self, watermark_ms: int | None) -> bool:
        """The writer's watermark (max event time - lateness) passed this segment's hour."""
        return (
            self.hour_end is not None
            and watermark_ms is not None
            and watermark_ms - self.policy.lateness_ms >= self.hour_end
        )

    def take(self) -> Segment | None:
        """Close the segment and build its files (possibly none: all invalid); None if empty."""
        draft = self.take_draft()
        return None if draft is None else draft.build()

    def take_draft(self) -> SegmentDraft | None:
        """Close the segment without building it (cheap): `SegmentDraft.build()` may then run
        in another thread while this buffer takes the next records."""
        if self.first is None or self.last is None:
            return None
        draft = SegmentDraft(
            self.dataset,
            self.topic,
            self.partition,
            self.first,
            self.last,
            sorted(self._groups.items(), key=lambda item: (item[0][0], item[0][1] or "")),
            self.invalid,
            self.ip_policy,
            self._raw,
        )
        self._reset()
        return draft


@dataclass
class SegmentDraft:
    """A closed segment's rows, grouped by directory, not yet turned into Arrow tables."""

    dataset: Dataset
    topic: str
    partition: int
    first: int
    last: int
    groups: list[tuple[tuple[str, str | None], _Group]]
    invalid: int
    ip_policy: IpPolicy
    raw: bool

    def build(self) -> Segment:
        invalid = self.invalid
        parts: list[tuple[str, pa.Table]] = []
        for key, group in self.groups:
            table = self._table(group)
            invalid += len(group.offsets) - (0 if table is None else table.num_rows)
            if table is not None:
                parts.append((self._directory(key), table))
        meta = {
            SEGMENT_META: json.dumps(
                {
                    "topic": self.topic,
                    "partition": self.partition,
                    "first": self.first,
                    "last": self.last,
                    "files": len(parts),
                }
            ).encode()
        }
        name = file_name(self.topic, self.partition, self.first, self.last)
        files = [SegmentFile(d, name, t.replace_schema_metadata(meta)) for d, t in parts]
        rows = sum(table.num_rows for _, table in parts)
        return Segment(self.topic, self.partition, self.first, self.last, files, rows, invalid)

    def _directory(self, key: tuple[str, str | None]) -> str:
        date, value = key
        directory = f"date={date}"
        if self.dataset.partition_field is not None:
            directory += f"/{self.dataset.partition_field}={partition_value(value)}"
        return directory

    def _table(self, group: _Group) -> pa.Table | None:
        """The group's file contents, without the records that fail their contract or that
        Arrow cannot hold; None if no record is left."""
        if self.raw:
            group = self._validated(group)
        columns = self._columns_from_json(group) if self.raw and group.offsets else None
        if columns is None:
            group, columns = self._columns_from_records(group)
        n = len(group.offsets)
        if not n:
            return None
        columns += [
            pa.repeat(pa.scalar(self.topic, pa.string()), n),
            pa.repeat(pa.scalar(self.partition, pa.int32()), n),
            pa.array(group.offsets, pa.int64()),
            pa.array(group.timestamps, pa.timestamp("ms", tz="UTC")),
        ]
        return pa.Table.from_arrays(columns, schema=self.dataset.schema)

    def _validated(self, group: _Group) -> _Group:
        """The group without records that fail their contract: one bulk msgspec decode, and
        record by record only when that fails."""
        decoder_ = list_decoder(self.dataset.record_type)
        try:
            decoder_.decode(b"[" + b",".join(group.records) + b"]")
            return group
        except (msgspec.DecodeError, RecursionError):
            pass
        one = decoder(self.dataset.record_type).decode
        keep = []
        for i, value in enumerate(group.records):
            try:
                one(value)
            except (msgspec.DecodeError, RecursionError):
                continue
            keep.append(i)
        return group.subset(keep)

    def _columns_from_json(self, group: _Group) -> list[pa.Array] | None:
        """Arrow's JSON reader over the group's (validated) raw records, with the contract's
        explicit schema: C++ that releases the GIL. None if Arrow reads a value differently
        from the contract (e.g. a lowercase `z` in a timestamp) or cannot hold it (an integer
        beyond int64): then the Struct path."""
        try:
            table = pa_json.read_json(
                io.BytesIO(b"\n".join(group.records)),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=16 << 20),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=self.dataset.read_schema,
                    unexpected_field_behavior="ignore",
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if table.num_rows != len(group.offsets):
            return None
        columns: list[pa.Array] = []
        for column in self.dataset.columns:
            array = table.column(column).combine_chunks()
            if column == RAW_IP:
                array = self._hashed_ips(array, table.column(HASHED_IP).combine_chunks())
            elif column in self.dataset.redacted:
                array = pa.array(self._redacted(array.to_pylist()), array.type)
            columns.append(array)
        return columns

    def _hashed_ips(self, raw: pa.Array, carried: pa.Array) -> pa.Array:
        """Each raw IP's keyed hash (once per distinct IP), else the hash the record carried."""
        encoded = raw.dictionary_encode()
        hashed = [self.ip_policy(ip) for ip in encoded.dictionary.to_pylist()]
        array = pa_compute.take(pa.array(hashed, pa.string()), encoded.indices)
        if carried.null_count == len(carried):
            return array
        encoded = carried.dictionary_encode()
        kept = [self.ip_policy.carried(h) for h in encoded.dictionary.to_pylist()]
        return pa_compute.coalesce(
            array, pa_compute.take(pa.array(kept, pa.string()), encoded.indices)
        )

    def _columns_from_records(self, group: _Group) -> tuple[_Group, list[pa.Array]]:
        """Column by column from Structs; records with a value Arrow cannot hold are dropped
        (the group returned is what the columns hold)."""
        records = group.records
        if self.raw:  # raw JSON the Arrow reader refused: decode it (it is valid)
            decode = decoder(self.dataset.record_type).decode
            records = [decode(value) for value in records]
        carried = None
        if self.raw and RAW_IP in self.dataset.columns:
            carried = _carried_hashes(group.records)
        while True:
            columns, bad = self._arrays(records, carried)
            if not bad:
                return group, columns
            keep = [i for i in range(len(records)) if i not in bad]
            group, records = group.subset(keep), [records[i] for i in keep]
            carried = None if carried is None else [carried[i] for i in keep]

    def _arrays(
        self, records: list[Any], carried: list[Any] | None
    ) -> tuple[list[pa.Array], set[int]]:
        """The columns of `records`, or the indices of the records Arrow cannot hold."""
        columns: list[pa.Array] = []
        bad: set[int] = set()
        schema = self.dataset.schema
        for column in self.dataset.columns:
            values = list(map(attrgetter(column), records))
            if column == RAW_IP:
                values = self._ip_column(values, carried)
                column = HASHED_IP
            elif column in self.dataset.redacted:
                values = self._redacted(values)
            arrow_type = schema.field(column).type
            try:
                columns.append(_array(values, arrow_type))
            except _ARROW_ERRORS:
                bad.update(_unconvertible(values, arrow_type))
        return columns, bad

    def _ip_column(self, ips: list[str | None], carried: list[Any] | None) -> list[str | None]:
        hashed = [self.ip_policy(ip) for ip in ips]
        if carried is None:
            return hashed
        return [
            self.ip_policy.carried(c) if h is None else h
            for h, c in zip(hashed, carried, strict=True)
        ]

    def _redacted(self, values: list[Any]) -> list[Any]:
        """Text or bytes quoting a record, without raw IPs."""
        policy = self.ip_policy
        return [
            v if v is None else policy.redact(v) if isinstance(v, bytes) else policy.redact_text(v)
            for v in values
        ]


_ONE_US = timedelta(microseconds=1)


def _array(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(arrow_type):
        return _timestamps(values, arrow_type)
    return pa.array(values, type=arrow_type)


def _unconvertible(values: list[Any], arrow_type: pa.DataType) -> list[int]:
    """Indices of the values Arrow cannot hold in `arrow_type`, found by bisection: about
    2 x len(values) conversions for one bad value. Raises if each half converts alone."""
    try:
        _array(values, arrow_type)
        return []
    except _ARROW_ERRORS:
        if len(values) == 1:
            return [0]
        mid = len(values) // 2
        bad = _unconvertible(values[:mid], arrow_type)
        bad += [mid + i for i in _unconvertible(values[mid:], arrow_type)]
        if not bad:
            raise
        return bad


_carried_decoder = msgspec.json.Decoder(msgspec.defstruct("Carried", [(HASHED_IP, Any, None)]))


def _carried_hashes(raw_records: list[bytes]) -> list[Any]:
    """The `client_ip_hmac` each raw (already validated) record carries, or None."""
    return [_carried_hash(value) for value in raw_records]


def _carried_hash(value: bytes) -> Any:
    try:
        return getattr(_carried_decoder.decode(value), HASHED_IP)
    except (msgspec.DecodeError, RecursionError):  # e.g. a deep value: nothing to carry
        return None


def _timestamps(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    """Aware datetimes -> a timestamp array, via integers: pyarrow converts aware datetimes
    one time-zone lookup at a time (about 1.6 us each; this is 0.5 us)."""
    micros = [None if v is None else (v - EPOCH) // _ONE_US for v in values]
    return pa.array(micros, pa.int64()).cast(arrow_type)


def _key_decoder(dataset: Dataset) -> msgspec.json.Decoder[Any]:
    """Decodes only what grouping needs (event time, partition field); unknown fields skipped."""
    fields: list[tuple[str, Any]] = []
    if dataset.time_field is not None:
        fields.append((dataset.time_field, int if dataset.time_is_ms else UtcTime))
    if dataset.partition_field is not None:
        fields.append((dataset.partition_field, str))
    return msgspec.json.Decoder(msgspec.defstruct(f"{dataset.name}_key", fields))
