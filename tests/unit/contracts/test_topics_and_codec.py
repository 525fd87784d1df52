"""Topic declarations are consistent, and records survive an encode/decode round trip."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts import ALL_TOPICS, INPUT_TOPICS, NodeSample, RequestLog, decode, encode
from pipeline.contracts.topics import NODE_TELEMETRY, REQUEST_LOG, topic_for


def test_topic_names_are_unique_and_kebab_case() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"mdc\.[a-z]+(-[a-z]+)*", n) for n in names), names


def test_node_telemetry_and_request_log_are_co_partitioned() -> None:
    assert NODE_TELEMETRY.key_field == REQUEST_LOG.key_field == "node_id"
    assert NODE_TELEMETRY.partitions == REQUEST_LOG.partitions >= 2


def test_every_input_key_field_is_a_required_record_field() -> None:
    for spec in INPUT_TOPICS:
        assert spec.record_type is not None
        info = msgspec.inspect.type_info(spec.record_type)
        assert isinstance(info, msgspec.inspect.StructType)
        required = {f.name for f in info.fields if f.required}
        assert spec.key_field in required, spec.name
        assert topic_for(spec.record_type) is spec


def test_prefix_renames_only() -> None:
    prefixed = REQUEST_LOG.with_prefix("t1.")
    assert prefixed.name == "t1.mdc.request-log"
    assert (prefixed.partitions, prefixed.key_field) == (REQUEST_LOG.partitions, "node_id")


ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
fractions = st.floats(0.0, 1.0)


@given(
    t=times,
    node=ids,
    site=ids,
    rack=ids,
    interval=st.floats(0.001, 3600.0),
    power=st.floats(0.0, 100_000.0),
    cpu=fractions,
    gpu=st.none() | fractions,
    rx=st.integers(0, 10**15),
    temp=st.floats(-60.0, 120.0),
)
def test_node_sample_round_trip(
    t: datetime,
    node: str,
    site: str,
    rack: str,
    interval: float,
    power: float,
    cpu: float,
    gpu: float | None,
    rx: int,
    temp: float,
) -> None:
    rec = NodeSample(
        observed_at=t,
        site_id=site,
        rack_id=rack,
        node_id=node,
        interval_s=interval,
        power_w=power,
        cpu_util=cpu,
        gpu_util=gpu,
        inlet_temp_c=temp,
        outlet_temp_c=temp,
        net_rx_bytes=rx,
        net_tx_bytes=rx,
    )
    raw = encode(rec)
    assert decode(NodeSample, raw) == rec
    assert NODE_TELEMETRY.key_of(rec) == node.encode()


@given(
    t=times,
    status=st.integers(100, 599),
    latency=st.floats(0.0, 1e7),
    route=st.none() | st.text(min_size=1, max_size=40),
    ip=st.none() | st.ip_addresses().map(str),
)
def test_request_log_round_trip(
    t: datetime, status: int, latency: float, route: str | None, ip: str | None
) -> None:
    rec = RequestLog(
        finished_at=t,
        request_id="r",
        site_id="s",
        node_id="n",
        service="svc",
        team="t",
        status=status,
        latency_ms=latency,
        bytes_in=1,
        bytes_out=2,
        route=route,
        client_ip=ip,
    )
    back = decode(RequestLog, encode(rec))
    assert back == rec
    assert back.finished_at.utcoffset() == timedelta(0)


@given(key=st.binary(max_size=64), partitions=st.integers(1, 64))
def test_pure_murmur2_partitioner_matches_aiokafka(key: bytes, partitions: int) -> None:
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    from pipeline.contracts.partitioning import murmur2, partition_for

    assert murmur2(key) == aiokafka_murmur2(key)
    assert partition_for(key, partitions) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_known_java_values() -> None:
    # Values from Kafka's own DefaultPartitionerTest / Utils.murmur2 test vectors.
    from pipeline.contracts.partitioning import murmur2, partition_for

    assert murmur2(b"21") == 0xFFFFFFFF & -973932308
    assert murmur2(b"foobar") == 0xFFFFFFFF & -790332482
    assert partition_for(b"bog1-r1-n01", 4) in range(4)
