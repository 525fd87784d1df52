"""Simulator → real Kafka → consumer: exactly N records per topic, keyed and partitioned as
designed, every one valid; injected malformed records travel too, and only they fail."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from pipeline.contracts import INPUT_TOPICS, TopicSpec, decode
from pipeline.errors import ContractError
from pipeline.fleet import load_fleet
from pipeline.simulate import FaultConfig, SimConfig, Simulator, partition_for, simulate_to_kafka
from tests.support.kafka_read import read_topics

START = datetime(2026, 3, 2, 14, tzinfo=UTC)


def test_every_record_arrives_once_with_its_key_and_partition(
    kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str
) -> None:
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=6, seed=21, rps_scale=0.05)
    expected = list(Simulator(fleet, config))
    sent_after_ms = time.time() * 1000
    result = simulate_to_kafka(fleet, config, kafka_bootstrap, topic_prefix=topic_prefix)
    sent_before_ms = time.time() * 1000

    by_topic = Counter(e.topic.name for e in expected)
    assert result.stats.valid == by_topic
    assert all(by_topic[spec.name] > 0 for spec in INPUT_TOPICS)

    names = {kafka_topics[spec.name].name: spec for spec in INPUT_TOPICS}
    records = read_topics(kafka_bootstrap, [kafka_topics[n] for n in by_topic], len(expected))
    assert Counter(names[r.topic].name for r in records) == by_topic

    sent = Counter((e.topic.name, e.value) for e in expected)
    got: Counter[tuple[str, bytes]] = Counter()
    for rec in records:
        spec = names[rec.topic]
        assert spec.record_type is not None
        value = decode(spec.record_type, rec.value, topic=rec.topic)
        assert rec.key == spec.key_of(value)
        assert rec.partition == partition_for(rec.key, spec.partitions)
        got[(spec.name, rec.value)] += 1
        # Kafka timestamps are ingestion time: months-old event times would let the broker's
        # time-based retention delete simulated history (the event time is in the payload).
        assert sent_after_ms - 5_000 <= rec.timestamp <= sent_before_ms + 5_000
    assert got == sent


def test_co_partitioned_topics_put_a_node_on_one_partition_number(
    kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str
) -> None:
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=3, seed=5, rps_scale=0.05)
    total = simulate_to_kafka(fleet, config, kafka_bootstrap, topic_prefix=topic_prefix)
    telemetry = kafka_topics["mdc.node-telemetry"]
    requests = kafka_topics["mdc.request-log"]
    expected = total.stats.valid["mdc.node-telemetry"] + total.stats.valid["mdc.request-log"]
    records = read_topics(kafka_bootstrap, [telemetry, requests], expected)
    assert len(records) == expected
    where: dict[bytes, set[int]] = {}
    for rec in records:
        where.setdefault(rec.key, set()).add(rec.partition)
    assert len(where) >= 60  # nodes seen
    assert all(len(parts) == 1 for parts in where.values())


def test_faults_travel_and_only_malformed_records_fail_validation(
    kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str
) -> None:
    fleet = load_fleet()
    faults = FaultConfig(malformed=0.02, late=0.01, out_of_order=0.05, duplicate=0.02)
    config = SimConfig(start=START, minutes=5, seed=8, rps_scale=0.05, faults=faults)
    result = simulate_to_kafka(fleet, config, kafka_bootstrap, topic_prefix=topic_prefix)
    names = {kafka_topics[spec.name].name: spec for spec in INPUT_TOPICS}
    records = read_topics(
        kafka_bootstrap, [kafka_topics[s.name] for s in INPUT_TOPICS], result.stats.emitted
    )
    assert len(records) == result.stats.emitted
    bad = 0
    for rec in records:
        spec = names[rec.topic]
        assert spec.record_type is not None
        try:
            decode(spec.record_type, rec.value, topic=rec.topic)
        except ContractError:
            bad += 1
    malformed = sum(n for k, n in result.stats.faults.items() if k.startswith("malformed"))
    assert malformed > 0
    assert bad == malformed
    assert len(records) - bad == sum(result.stats.valid.values()) + result.stats.faults["duplicate"]
