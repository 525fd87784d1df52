"""Hostile records in the lander's segments (issue 11): whatever a record holds, `SegmentBuffer.add`
and `SegmentDraft.build` do not raise; the record is `invalid` unless its contract accepts it and
the lake can hold it; every valid record lands exactly once, as it lands without the hostile ones;
and no raw client IP reaches a table.

The reference for "as it lands without them" is the same offsets and Kafka timestamps with the
hostile records left out. Whether a hostile record is valid is the contract's call (bounds are
being added there), so a hostile record that lands is only required to pass its contract.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.codec import decoder
from pipeline.lake import BY_NAME, IpPolicy, Lake, RollPolicy, SegmentBuffer
from pipeline.lake.datasets import Dataset
from pipeline.lake.segment import Segment

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KAFKA_MS = 1_772_445_600_000
#: Client IPs of the valid and hostile records: none may appear in a landed table.
IPS = ("198.51.100.23", "203.0.113.77", "2001:db8::beef:77", "198.51.100.200")
INPUTS = ("node_telemetry", "request_log", "facility_telemetry", "grid_intensity")
DEEP = b"[" * 100_000 + b"]" * 100_000
MEGABYTE = "x" * 1_000_000
POLICIES = {"secret": IpPolicy(b"s3cret"), "no-secret": IpPolicy()}


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def valid_doc(name: str, i: int) -> dict[str, Any]:
    """A plausible, valid record of input dataset `name`, distinct per `i`."""
    at = stamp(T0 + timedelta(seconds=10 * i))
    site = ("bog1", "mex1")[i % 2]
    if name == "node_telemetry":
        return {
            "observed_at": at,
            "site_id": site,
            "rack_id": "r1",
            "node_id": f"{site}-n0{i % 3}",
            "interval_s": 10.0,
            "power_w": 250.0 + i,
            "cpu_util": 0.5,
            "inlet_temp_c": 22.0,
            "outlet_temp_c": 31.5,
            "net_rx_bytes": 1000 + i,
            "net_tx_bytes": 2000 + i,
            "gpu_util": None if i % 3 else 0.25,
        }
    if name == "request_log":
        return {
            "finished_at": at,
            "request_id": f"r{i}",
            "site_id": site,
            "node_id": f"{site}-n01",
            "service": "checkout-api",
            "team": "payments",
            "status": 200 if i % 5 else 503,
            "latency_ms": 10.0 + i,
            "bytes_in": 100 + i,
            "bytes_out": 2000,
            "route": "/pay",
            "client_region": "CO-DC",
            "client_ip": None if i % 7 == 3 else IPS[i % len(IPS)],
        }
    if name == "facility_telemetry":
        return {
            "observed_at": at,
            "site_id": site,
            "interval_s": 60.0,
            "facility_power_w": 12_000.0 + i,
            "it_power_w": 9_000.0,
            "onsite_renewable_w": 500.0,
            "water_l": 1.5,
        }
    start = T0 + timedelta(hours=i)
    return {
        "valid_from": stamp(start),
        "valid_to": stamp(start + timedelta(hours=1)),
        "zone": ("CO", "MX-CE")[i % 2],
        "carbon_intensity_gco2e_per_kwh": 100.0 + i,
        "emission_factor_type": "lifecycle",
        "signal": "average",
        "source": "test",
        "is_estimated": False,
    }


def encode(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)


# -- hostile records ------------------------------------------------------------------------------
_HOSTILE_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [
        10**30,
        2**63,
        -(2**63) - 1,
        -1,
        1e308,
        -1e308,
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "2026-03-02t10:00:00z",
        "\x00",
        "a\x00b",
        "",
        MEGABYTE,
        None,
        [],
        {},
        True,
        "../../etc",
    ]
)
#: JSON text msgspec would not write: spliced into a record as a field's value.
_HOSTILE_TEXT = st.sampled_from(
    [b"1e999", b"NaN", b"-0", b"1" * 400, DEEP, b'"\xff\xfe"', b'"\x00"', b"01", b'"\\ud800"']
)


@st.composite
def hostile_record(draw: st.DrawFn, name: str, i: int) -> bytes | None:
    """A hostile variant of the valid record `i`, or bytes unrelated to it."""
    doc = valid_doc(name, i)
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return draw(st.sampled_from([None, b"", b"\x00", b"null", b"[]", b"{}", DEEP, b" "]))
    if kind == 2:  # one field (or a new one) set to an extreme value
        field = draw(st.sampled_from([*doc, "x-extra"]))
        doc[field] = draw(_HOSTILE_VALUES)
        return encode(doc)
    if kind == 3:  # a field's value replaced by raw text
        field = draw(st.sampled_from(list(doc)))
        doc[field] = "@@"
        return encode(doc).replace(b'"@@"', draw(_HOSTILE_TEXT))
    if kind == 4:  # truncated
        raw = encode(doc)
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == 5:  # a byte inserted anywhere
        raw = encode(doc)
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\x00", b"\xff", b"}", b'"', b"\\"])) + raw[at:]
    if kind == 6:  # a field given twice, the second time with a hostile value
        field = draw(st.sampled_from(list(doc)))
        extra = encode({field: draw(_HOSTILE_VALUES)})[1:-1]
        return encode(doc)[:-1] + b"," + extra + b"}"
    field = draw(st.sampled_from(list(doc)))  # a required field missing, with an IP around
    del doc[field]
    doc["client_ip"] = draw(st.sampled_from(IPS))
    return encode(doc)


# -- landing --------------------------------------------------------------------------------------
def land(
    dataset: Dataset, records: Sequence[tuple[int, bytes | None]], policy: IpPolicy, max_rows: int
) -> list[Segment]:
    buf = SegmentBuffer(dataset, "t", 3, RollPolicy(max_rows=max_rows), policy)
    segments = []
    for offset, value in records:
        buf.add(offset, KAFKA_MS + offset, value)
        if buf.full():
            segments.append(buf.take())
    segments.append(buf.take())
    return [s for s in segments if s is not None]


def rows_by_offset(segments: list[Segment]) -> dict[int, list[dict[str, Any]]]:
    rows: dict[int, list[dict[str, Any]]] = {}
    for segment in segments:
        for part in segment.files:
            for row in part.table.to_pylist():
                rows.setdefault(row["_offset"], []).append({**row, "_dir": part.directory})
    return rows


def table_text(segments: list[Segment]) -> str:
    return "\n".join(repr(f.table.to_pylist()) for s in segments for f in s.files)


def contract_valid(dataset: Dataset, value: bytes | None) -> bool:
    try:
        decoder(dataset.record_type).decode(value or b"")
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def check_mix(
    dataset: Dataset,
    mixed: Sequence[tuple[int, bytes | None, bool]],
    policy: IpPolicy,
    max_rows: int,
) -> tuple[list[Segment], dict[int, list[dict[str, Any]]]]:
    """Land `mixed` ((offset, value, is valid)) and the valid records alone; assert the rules."""
    segments = land(dataset, [(o, v) for o, v, _ in mixed], policy, max_rows)
    clean = land(dataset, [(o, v) for o, v, ok in mixed if ok], policy, max_rows)
    rows, reference = rows_by_offset(segments), rows_by_offset(clean)
    valid = {o for o, _, ok in mixed if ok}
    assert all(len(landed) == 1 for landed in rows.values())  # nothing lands twice
    assert {o: rows.get(o) for o in valid} == reference  # every valid record, as without the rest
    for offset, value, ok in mixed:
        if not ok and offset in rows:
            assert contract_valid(dataset, value), value  # landed: its contract accepts it
    assert sum(s.rows for s in segments) == len(rows)
    assert sum(s.invalid for s in segments) == len(mixed) - len(rows)
    text = table_text(segments)
    assert not [ip for ip in IPS if ip in text]
    return segments, rows


@pytest.mark.parametrize("name", INPUTS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), keyed=st.booleans(), max_rows=st.integers(1, 30))
def test_hostile_records_never_raise_nor_disturb_valid_ones(
    name: str, data: st.DataObject, keyed: bool, max_rows: int
) -> None:
    dataset = BY_NAME[name]
    mixed: list[tuple[int, bytes | None, bool]] = []
    for i in range(data.draw(st.integers(1, 40), label="valid records")):
        mixed.append((len(mixed), encode(valid_doc(name, i)), True))
        for value in data.draw(st.lists(hostile_record(name, i), max_size=3)):
            mixed.append((len(mixed), value, False))
    policy = POLICIES["secret" if keyed else "no-secret"]
    check_mix(dataset, mixed, policy, max_rows)


# -- each case of the issue, next to valid neighbours ---------------------------------------------
def _request(**changes: Any) -> bytes:
    return encode({**valid_doc("request_log", 1), **changes})


CASES = {
    "bytes_in 10**30": _request(bytes_in=10**30),
    "bytes_out 2**63": _request(bytes_out=2**63),
    "latency 1e308": _request(latency_ms=1e308),
    "latency 1e999": _request(latency_ms=1.0).replace(b'"latency_ms":1.0', b'"latency_ms":1e999'),
    "year 9999": _request(finished_at="9999-12-31T23:59:59.999999Z"),
    "year 10000 in UTC": _request(finished_at="9999-12-31T23:59:59-23:59"),
    "year 0 in UTC": _request(finished_at="0001-01-01T00:00:00+01:00"),
    "nested 100,000 deep": _request()[:-1] + b',"x":' + DEEP + b"}",
    "only nesting": DEEP,
    "NUL byte": _request()[:-1] + b',"x":"\x00"}',
    "escaped NUL": _request(route="a\x00b"),
    "invalid UTF-8": _request(route="@@").replace(b"@@", b"\xff\xfe"),
    "1 MB string": _request(route=MEGABYTE),
    "empty": b"",
    "tombstone": None,
}


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
@pytest.mark.parametrize("case", CASES)
def test_each_hostile_case_is_skipped_or_landed_and_its_neighbours_land(
    case: str, policy: IpPolicy, tmp_path: Path
) -> None:
    dataset = BY_NAME["request_log"]
    docs = [encode(valid_doc("request_log", i)) for i in range(6)]
    mixed = [(0, docs[0], True), (1, docs[1], True), (2, CASES[case], False)]
    mixed += [(3 + i, doc, True) for i, doc in enumerate(docs[2:])]
    for max_rows in (1, 3, 100):  # alone in its segment, with some, with all
        segments, rows = check_mix(dataset, mixed, policy, max_rows)
        assert (2 in rows) == contract_valid(dataset, CASES[case])
    lake = Lake(tmp_path)  # and Parquet takes what landed
    for segment in segments:
        lake.write_segment(dataset, segment)


_FILL: dict[type, object] = {
    msgspec.inspect.DateTimeType: stamp(T0),
    msgspec.inspect.IntType: 7,
    msgspec.inspect.FloatType: 1.5,
    msgspec.inspect.BoolType: False,
    msgspec.inspect.DictType: {"1h": 0.5},
    msgspec.inspect.BytesType: "AA==",
}


def filler(dataset: Dataset) -> dict[str, Any]:
    """A valid record of an output dataset, from its Struct's field types."""
    info = msgspec.inspect.type_info(dataset.record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    doc: dict[str, Any] = {}
    for field in info.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.UnionType):
            kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(kind, msgspec.inspect.LiteralType):
            doc[field.name] = kind.values[0]
        else:
            doc[field.name] = _FILL.get(type(kind), "bog1")
    return doc


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("energy_minutes", "requests"),  # raw: Arrow's reader refuses, then the Struct path
        ("slo_burn", "requests"),  # maps: the Struct path only
        ("site_minutes", "nodes_reporting"),
        ("alerts", "fired_at_ms"),
        ("alerts", "at_ms"),  # the event time itself
    ],
)
@pytest.mark.parametrize("value", [10**30, 2**63, -(2**63) - 1])
def test_an_integer_beyond_int64_is_invalid_where_the_contract_has_no_bound(
    name: str, field: str, value: int
) -> None:
    dataset = BY_NAME[name]
    valid = encode(filler(dataset))
    assert contract_valid(dataset, valid)
    hostile = encode({**filler(dataset), field: value})
    assert contract_valid(dataset, hostile)  # the output contracts bound nothing: the lake must
    mixed = [(0, valid, True), (1, hostile, False), (2, valid, True), (3, valid, True)]
    for max_rows in (2, 100):
        _, rows = check_mix(dataset, mixed, IpPolicy(), max_rows)
        assert sorted(rows) == [0, 2, 3]


def test_many_unrepresentable_records_in_one_group_are_all_found() -> None:
    dataset = BY_NAME["energy_minutes"]
    mixed = []
    for offset in range(500):
        bad = offset % 37 == 5
        doc = {**filler(dataset), "requests": 10**30 if bad else offset}
        mixed.append((offset, encode(doc), not bad))
    segments, rows = check_mix(dataset, mixed, IpPolicy(), 1000)
    assert len(rows) == 500 - Counter(o % 37 == 5 for o in range(500))[True]
    assert json.loads(segments[0].files[0].table.schema.metadata[b"microdc.segment"])["files"] == 1


def test_a_record_arrow_refuses_sends_only_its_group_down_the_struct_path() -> None:
    # A lowercase `z` is valid (RFC 3339) but Arrow's JSON reader refuses it: the group is read
    # from Structs, with the same values as Arrow would give.
    dataset = BY_NAME["request_log"]
    docs = [encode(valid_doc("request_log", i)) for i in range(10)]
    odd = _request(request_id="odd", finished_at=stamp(T0 + timedelta(seconds=20))[:-1] + "z")
    mixed = [(i, doc, True) for i, doc in enumerate(docs)] + [(10, odd, False)]
    _, rows = check_mix(dataset, mixed, IpPolicy(b"s3cret"), 100)
    assert rows[10][0]["request_id"] == "odd"
    assert pa.types.is_timestamp(dataset.schema.field("finished_at").type)


# -- a far-future event time ----------------------------------------------------------------------
def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_a_row_dated_far_ahead_lands_but_moves_neither_hour_nor_watermark() -> None:
    """One request dated 2100 first in a segment: it lands, and the segment's hour and event-time
    watermark remain those of its plausible rows (else every segment would roll at every
    fetch). A row within `max_future_ms` of the clock still counts."""
    dataset = BY_NAME["request_log"]
    policy = RollPolicy(max_future_ms=3_600_000)
    buf = SegmentBuffer(dataset, "t", 0, policy, IpPolicy())
    buf.set_horizon(None, _ms(T0))
    buf.add(0, KAFKA_MS, _request(request_id="r2100", finished_at="2100-01-01T00:00:00Z"))
    assert buf.max_event_ms is None and buf.hour_end is None
    buf.add(1, KAFKA_MS + 1, encode(valid_doc("request_log", 1)))
    assert buf.max_event_ms == _ms(T0 + timedelta(seconds=10))
    assert buf.hour_end == _ms(T0 + timedelta(hours=1))
    soon = T0 + timedelta(minutes=50)
    buf.add(2, KAFKA_MS + 2, _request(request_id="r-soon", finished_at=stamp(soon)))
    assert buf.max_event_ms == _ms(soon)
    buf.set_horizon(buf.max_event_ms, _ms(T0))  # the horizon follows the watermark
    assert buf.horizon_ms == _ms(soon) + 3_600_000
    segment = buf.take()
    assert segment is not None and segment.rows == 3 and segment.invalid == 0


def test_the_embedded_lander_rolls_hourly_despite_a_row_dated_2100(tmp_path: Path) -> None:
    """Three hours of requests with one dated 2100 at the start land in the same hourly
    segments as without it (plus that row)."""
    from pipeline.contracts.topics import REQUEST_LOG
    from pipeline.embedded.landing import EmbeddedLander

    def run(lake_dir: Path, hostile: bool) -> list[tuple[int, int]]:
        lander = EmbeddedLander(Lake(lake_dir), now_ms=lambda: _ms(T0))
        if hostile:
            far = _request(request_id="r2100", finished_at="2100-01-01T00:00:00Z")
            lander.add(REQUEST_LOG, b"bog1-n01", far, KAFKA_MS, partition=0)
        for i in range(3 * 360):  # one request per 10 s for three hours
            doc = valid_doc("request_log", i)
            lander.add(REQUEST_LOG, b"bog1-n01", encode(doc), KAFKA_MS + i, partition=0)
        lander.close()
        files = sorted((tmp_path / lake_dir).rglob("*.parquet"))
        spans = []
        for f in files:
            first, last = f.stem.rsplit("+", 1)[1].split("-")
            spans.append((int(first) - hostile, int(last) - hostile))
        return sorted(set(spans))

    plain = run(tmp_path / "plain", hostile=False)
    assert len(plain) == 3  # one segment per hour
    with_far = run(tmp_path / "far", hostile=True)
    assert with_far[1:] == plain[1:] and with_far[0][1] == plain[0][1]
