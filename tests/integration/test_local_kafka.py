"""The Kafka plumbing against a real broker: reachability, topic creation, a keyed round trip."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipeline.contracts.topics import ALL_TOPICS, TopicSpec
from pipeline.kafka_admin import TopicMismatchError, ensure_topics, ensure_topics_sync
from pipeline.localkafka import BOOTSTRAP_ENV, LocalKafka, down, status, up


async def _describe(bootstrap: str, names: list[str] | None = None) -> list[dict[str, Any]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        if names is None:
            cluster: dict[str, Any] = await admin.describe_cluster()
            return list(cluster["brokers"])
        return list(await admin.describe_topics(names))
    finally:
        await admin.close()


def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    return {t["topic"]: len(t["partitions"]) for t in asyncio.run(_describe(bootstrap, names))}


async def _round_trip(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], group: str
) -> list[tuple[bytes, bytes, int]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[bytes, bytes, int]] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(messages):
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received += [(r.key, r.value, r.partition) for r in records]
    finally:
        await consumer.stop()
    return received


def test_broker_is_reachable(kafka_bootstrap: str) -> None:
    brokers = asyncio.run(_describe(kafka_bootstrap))
    assert len(brokers) >= 1


def test_ensure_topics_creates_declared_partitions(kafka_bootstrap: str, topic_prefix: str) -> None:
    specs = [spec.with_prefix(topic_prefix) for spec in ALL_TOPICS]
    created = ensure_topics_sync(kafka_bootstrap, specs)
    assert sorted(created) == sorted(spec.name for spec in specs)
    counts = _partitions(kafka_bootstrap, [spec.name for spec in specs])
    assert counts == {spec.name: spec.partitions for spec in specs}
    # Idempotent: nothing new the second time, from sync or async code.
    assert ensure_topics_sync(kafka_bootstrap, specs) == []
    assert asyncio.run(ensure_topics(kafka_bootstrap, specs[:2])) == []


def test_kafka_topics_fixture_is_keyed_by_contract_name(
    kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str
) -> None:
    assert set(kafka_topics) == {spec.name for spec in ALL_TOPICS}
    request_log = kafka_topics["mdc.request-log"]
    assert request_log.name == f"{topic_prefix}mdc.request-log"
    counts = _partitions(kafka_bootstrap, [spec.name for spec in kafka_topics.values()])
    assert counts == {spec.name: spec.partitions for spec in kafka_topics.values()}


def test_keyed_round_trip(kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec]) -> None:
    topic = kafka_topics["mdc.request-log"]
    assert topic.partitions > 1
    messages = [(f"node-{i % 5}".encode(), f"request {i}".encode()) for i in range(25)]
    received = asyncio.run(_round_trip(kafka_bootstrap, topic.name, messages, "rt-" + topic.name))
    assert sorted((k, v) for k, v, _ in received) == sorted(messages)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for key, _, partition in received:
        partitions_of_key[key].add(partition)
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    # Order is kept per key.
    for key in partitions_of_key:
        sent = [v for k, v in messages if k == key]
        assert [v for k, v, _ in received if k == key] == sent


def test_partition_count_mismatch_is_refused(kafka_bootstrap: str, topic_prefix: str) -> None:
    spec = TopicSpec(f"{topic_prefix}mismatch", 2, None, None, "test topic")
    assert ensure_topics_sync(kafka_bootstrap, [spec]) == [spec.name]
    wrong = TopicSpec(spec.name, 3, None, None, "same name, other count")
    with pytest.raises(TopicMismatchError) as info:
        ensure_topics_sync(kafka_bootstrap, [wrong])
    assert info.value.expected == 3
    assert info.value.actual == 2
    assert spec.name in str(info.value)


def test_topic_config_is_applied(kafka_bootstrap: str, topic_prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    spec = TopicSpec(
        f"{topic_prefix}compacted",
        1,
        None,
        None,
        "test topic",
        config={"cleanup.policy": "compact"},
    )
    ensure_topics_sync(kafka_bootstrap, [spec])

    async def policy() -> str:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, spec.name)]
            )
        finally:
            await admin.close()
        entries = response.to_object()["resources"][0]["config_entries"]
        return next(
            str(e["config_value"]) for e in entries if e["config_names"] == "cleanup.policy"
        )

    assert asyncio.run(policy()) == "compact"


local_only = pytest.mark.skipif(
    bool(os.environ.get(BOOTSTRAP_ENV)),
    reason=f"{BOOTSTRAP_ENV} is set: this exercises LocalKafka itself (needs Java 17 + Maven)",
)


@local_only
def test_restart_after_crash_keeps_ports_and_data(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "broker")
    try:
        bootstrap = kafka.start()
        spec = TopicSpec("crash.test", 2, None, None, "test topic")
        ensure_topics_sync(bootstrap, [spec])
        messages = [(b"k1", b"before crash"), (b"k2", b"also before")]
        asyncio.run(_round_trip(bootstrap, spec.name, messages, "g1"))
        kafka.kill()
        assert not kafka.is_running()
        assert kafka.start() == bootstrap  # same port, no reformat
        assert ensure_topics_sync(bootstrap, [spec]) == []
        received = asyncio.run(_round_trip(bootstrap, spec.name, [(b"k3", b"after")], "g2"))
        assert sorted(v for _, v, _ in received) == [b"after", b"also before", b"before crash"]
    finally:
        kafka.stop()
    assert not kafka.is_running()


@local_only
def test_detached_up_status_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert status(state) is None
    try:
        bootstrap = up(state)
        assert status(state) == bootstrap
        assert up(state) == bootstrap  # idempotent
        assert asyncio.run(_describe(bootstrap))
    finally:
        stopped = down(state)
    assert stopped
    assert status(state) is None
    assert down(state) is False


@local_only
def test_detached_up_and_down_from_a_relative_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `microdc kafka up` passes the default `.kafka-local` as is: the JVM must get absolute paths.
    monkeypatch.chdir(tmp_path)
    state = Path(".kafka-local")
    try:
        bootstrap = up(state)
        assert status(state) == bootstrap
        assert asyncio.run(_describe(bootstrap))
        assert (tmp_path / ".kafka-local" / "broker" / "data" / "meta.properties").is_file()
    finally:
        stopped = down(state)
    assert stopped
    assert status(state) is None
