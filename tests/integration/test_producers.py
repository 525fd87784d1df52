"""Producers that are not ours (issue 12): streams that run behind each other, backfills one
topic after the other, a stream that goes silent. The worker must compute what `microdc
process` computes on the same records, key by key and value by value.

Each input topic-partition has its own watermark in stage 1 and a minute closes when both the
node-telemetry and the request-log watermark passed it; a stream that stopped moving while the
other is ahead holds closing back for `--max-source-skew` seconds of wall clock at most.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import subprocess
import time
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.topics import INPUT_TOPICS, NODE_TELEMETRY
from pipeline.embedded.driver import from_envelopes, run_embedded
from pipeline.fleet import load_fleet
from pipeline.localkafka import jars_dir
from pipeline.simulate import Envelope, SimConfig, Simulator
from pipeline.simulate.sinks import KafkaSink
from tests.integration.test_worker import (
    MINUTES,
    assert_same,
    expected_outputs,
    wait_for_outputs,
)
from tests.support.live_feed import LiveFeed
from tests.support.worker_procs import WorkerPool, wait_for

START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
REQUESTS = "mdc.request-log"


def produce(bootstrap: str, prefix: str, envelopes: list[Envelope]) -> None:
    async def run() -> None:
        async with KafkaSink(bootstrap, topic_prefix=prefix) as sink:
            await sink.write(envelopes)
            await sink.flush()

    asyncio.run(run())


def test_request_logs_shipped_minutes_behind_the_node_telemetry_lose_nothing(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """A batching log shipper: each simulated minute's request logs reach Kafka three batches
    after that minute's telemetry (3 minutes of event time, beyond the 120 s lateness). Before
    issue 12 every request was late and no alert fired; now nothing is late and every output
    equals the embedded runner's over the records in event order."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=41, rps_scale=0.05)
    minutes = list(Simulator(fleet, config).minutes())
    lag = 3
    batches: list[list[Envelope]] = []
    for i in range(len(minutes) + lag):
        now = [e for e in minutes[i] if e.topic.name != REQUESTS] if i < len(minutes) else []
        behind = [e for e in minutes[i - lag] if e.topic.name == REQUESTS] if i >= lag else []
        batches.append(now + behind)
    expected = expected_outputs(run_embedded(fleet, from_envelopes(e for m in minutes for e in m)))
    assert not expected["mdc.late-events"]
    assert expected["mdc.alerts"]

    pool.add("w1").start().wait_ready()
    feed = LiveFeed(kafka_bootstrap, topic_prefix, batches, pace_s=0.5).start()
    try:
        got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    finally:
        feed.stop()
    assert_same(got, expected)
    assert not got["mdc.late-events"]


def test_a_backfill_one_topic_after_another_equals_the_embedded_runner(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """A backfill script sends every node sample, meter reading and grid value first, and the
    request logs 5 s later: 26,288 of 30,469 requests were late before issue 12."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=42, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    assert not expected["mdc.late-events"]

    pool.add("w1").start().wait_ready()
    produce(kafka_bootstrap, topic_prefix, [e for e in envelopes if e.topic.name != REQUESTS])
    time.sleep(5.0)
    produce(kafka_bootstrap, topic_prefix, [e for e in envelopes if e.topic.name == REQUESTS])
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]


def test_a_silent_request_stream_holds_closing_back_only_for_the_skew_bound(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """No request log at all (a dead shipper): with `--max-source-skew 5`, the node minutes
    close 5 s of wall clock after the telemetry stopped waiting for it, with the values the
    embedded runner gives the same records, and the worker says which topic it stopped
    waiting for."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=43, rps_scale=0.05)
    envelopes = [e for e in Simulator(fleet, config) if e.topic.name != REQUESTS]
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    assert expected["mdc.energy-minutes"]

    worker = pool.add("w1", max_source_skew_s=5.0).start()
    worker.wait_ready()
    produce(kafka_bootstrap, topic_prefix, envelopes)
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=120)
    assert_same(got, expected)
    log = worker.log_path.read_text(errors="replace")
    assert f"{topic_prefix}{REQUESTS}[" in log and "raise --max-source-skew" in log
    node_topic = f"{topic_prefix}mdc.node-telemetry"
    assert f'microdc_source_behind_seconds{{partition="0",topic="{node_topic}"}} 0.0' in (
        worker.metrics()
    )


def librdkafka_producer(bootstrap: str, **config: Any) -> Any:
    """confluent-kafka's Producer as the README tells sites to configure it: defaults (the CRC32
    partitioner) plus idempotence. Without it librdkafka may retry a timed-out batch behind
    later ones (this machine under a full test run: a broker request times out now and then),
    which reorders a partition by minutes of event time for a send loop this fast: its records
    are then late, rightly, and the numbers differ from `microdc process` on the sent order."""
    from confluent_kafka import Producer

    # Idempotence allows 5 requests in flight per broker, so a send loop this fast outruns the
    # default 100,000-message queue (BufferError: Queue full): give it room for a whole run.
    room = {"queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 2_000_000}
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **room, **config})


def produce_with_librdkafka(bootstrap: str, prefix: str, envelopes: list[Envelope]) -> Counter[str]:
    """confluent-kafka's Producer with its defaults: librdkafka's `consistent_random` (CRC32)
    partitioner, as kcat, Fluent Bit and Vector use; Kafka timestamp = event time. Returns how
    many records went to another partition than the project's murmur2 would choose."""
    producer = librdkafka_producer(bootstrap, **{"linger.ms": 20})
    moved: Counter[str] = Counter()
    for env in envelopes:
        producer.produce(
            f"{prefix}{env.topic.name}", value=env.value, key=env.key, timestamp=env.event_ms
        )
        producer.poll(0)
        if env.key is not None and zlib.crc32(env.key) % env.topic.partitions != partition_for(
            env.key, env.topic.partitions
        ):
            moved[env.topic.name] += 1
    assert producer.flush(30) == 0, "confluent-kafka could not deliver everything"
    return moved


def test_librdkafka_crc32_partitioner_gives_the_embedded_numbers(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Before issue 12: 92 % of energy minutes and no site minute equal (node IT energy -27 %),
    because two stage-1 partitions emitted the same node's minute. Two workers share the
    partitions; every output key and value is `microdc process`'s."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=44, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    moved = produce_with_librdkafka(kafka_bootstrap, topic_prefix, envelopes)
    assert moved["mdc.node-telemetry"] > 1000 and moved[REQUESTS] > 1000  # really elsewhere

    for name in ("w1", "w2"):
        pool.add(name).start().wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]


def produce_spread(
    bootstrap: str, prefix: str, envelopes: list[Envelope], place: Any
) -> dict[str, set[int]]:
    """confluent-kafka sending node telemetry and request logs where `place(index, envelope)`
    says (None: unkeyed, librdkafka picks any partition); the other topics keyed as usual.
    Returns, per node, the partitions its records landed on (from the delivery reports)."""
    # Unkeyed records: a random partition each. librdkafka's default sticky partitioner keeps
    # one partition for 10 ms of wall clock, which for a send loop as fast as this one is
    # minutes of event time: a partition's node telemetry could end minutes before the others',
    # and that source then holds closing back for --max-source-skew (600 s), as it must.
    producer = librdkafka_producer(
        bootstrap, **{"linger.ms": 5, "sticky.partitioning.linger.ms": 0}
    )
    landed: dict[str, set[int]] = defaultdict(set)
    spread = {"mdc.node-telemetry", REQUESTS}

    def report(node_id: str) -> Any:
        def delivered(err: Any, msg: Any) -> None:
            assert err is None, err
            landed[node_id].add(msg.partition())

        return delivered

    for i, env in enumerate(envelopes):
        topic = f"{prefix}{env.topic.name}"
        if env.topic.name not in spread:
            producer.produce(topic, value=env.value, key=env.key, timestamp=env.event_ms)
        else:
            partition = place(i, env)
            extra = {} if partition is None else {"partition": partition}
            assert env.key is not None
            producer.produce(
                topic,
                value=env.value,
                key=None,
                timestamp=env.event_ms,
                on_delivery=report(env.key.decode()),
                **extra,
            )
        producer.poll(0)
    assert producer.flush(30) == 0, "confluent-kafka could not deliver everything"
    return landed


def test_unkeyed_producers_give_the_embedded_numbers(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Node telemetry without a key (librdkafka spreads it: sticky, random partitions) and
    request logs without a key, round-robin (kafka-go's default): every node's records land
    on several partitions. Stage 2 merges each node's minute from the partitions that saw it;
    every output key and value is `microdc process`'s, and the worker counts the merges."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=47, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    requests = count()

    def place(i: int, env: Envelope) -> int | None:
        return next(requests) % env.topic.partitions if env.topic.name == REQUESTS else None

    worker = pool.add("w1").start()
    worker.wait_ready()
    landed = produce_spread(kafka_bootstrap, topic_prefix, envelopes, place)
    assert sum(len(parts) > 1 for parts in landed.values()) == len(fleet.nodes)
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]
    merged = re.search(r"^microdc_split_node_minutes_total ([0-9.e+]+)$", worker.metrics(), re.M)
    assert merged is not None and float(merged.group(1)) > 0
    assert "stage 2 merges them" in worker.log_path.read_text(errors="replace")


def test_a_node_whose_partition_changes_every_minute_gives_the_embedded_numbers(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """A producer whose partition for a node moves on every simulated minute (a partitioner
    change, a topic re-created): each node-minute may sit on one partition, the next on
    another, both streams moving differently. The numbers are `microdc process`'s."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=48, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    shift = {"mdc.node-telemetry": 1, REQUESTS: 3}

    def place(i: int, env: Envelope) -> int:
        assert env.key is not None
        minute = (env.event_ms - int(START.timestamp() * 1000)) // 60_000
        home = partition_for(env.key, env.topic.partitions)
        return (home + shift[env.topic.name] * minute) % env.topic.partitions

    pool.add("w1").start().wait_ready()
    landed = produce_spread(kafka_bootstrap, topic_prefix, envelopes, place)
    assert all(len(parts) == NODE_TELEMETRY.partitions for parts in landed.values())
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]


JAVA_PRODUCER = """
import java.nio.file.*;
import java.util.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Produce {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        props.put("acks", "all");
        props.put("linger.ms", "20");
        Long timestamp = Long.parseLong(args[2]) < 0 ? null : Long.parseLong(args[2]);
        Base64.Decoder b64 = Base64.getDecoder();
        try (Producer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (String line : Files.readAllLines(Paths.get(args[1]))) {
                String[] f = line.split("\\t", -1);
                byte[] key = f[1].isEmpty() ? null : b64.decode(f[1]);
                producer.send(new ProducerRecord<>(f[0], null, timestamp, key, b64.decode(f[2])));
            }
            producer.flush();
        }
    }
}
"""


def produce_with_java(
    bootstrap: str, prefix: str, envelopes: list[Envelope], work: Path, timestamp_ms: int
) -> None:
    """Kafka's own Java producer (kafka-clients, the jar the test broker runs on), default
    partitioner, every record stamped `timestamp_ms` (one millisecond for all of them)."""
    classpath = f"{jars_dir()}/*"
    (work / "Produce.java").write_text(JAVA_PRODUCER)
    subprocess.run(["javac", "-cp", classpath, "-d", str(work), str(work / "Produce.java")],
                   check=True, capture_output=True)  # fmt: skip
    lines = []
    for env in envelopes:
        key = base64.b64encode(env.key).decode() if env.key is not None else ""
        lines.append(f"{prefix}{env.topic.name}\t{key}\t{base64.b64encode(env.value).decode()}")
    (work / "records.tsv").write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        ["java", "-cp", f"{work}:{classpath}", "Produce", bootstrap, str(work / "records.tsv"),
         str(timestamp_ms)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_kafkas_java_producer_with_one_timestamp_for_every_record(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool, tmp_path: Path
) -> None:
    """The Java client (murmur2, the reference partitioner) sending every record with the same
    Kafka timestamp: order and watermarks come from the payload, so the numbers are those of
    `microdc process`."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=45, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    pool.add("w1").start().wait_ready()
    produce_with_java(kafka_bootstrap, topic_prefix, envelopes, tmp_path, 1_772_460_000_000)
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]


def sarama_partition(key: bytes, partitions: int) -> int:
    """sarama's default HashPartitioner (Go): FNV-1a 32-bit, as int32, modulo, absolute."""
    h = 0x811C9DC5
    for byte in key:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    signed = h - (1 << 32) if h >= 1 << 31 else h
    return abs(int(math.fmod(signed, partitions)))


def test_a_sarama_fnv1a_partitioner_and_log_append_time_topics(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Go's sarama picks partitions with FNV-1a; the input topics stamp LogAppendTime (the
    broker's clock, not the producer's): the numbers are still `microdc process`'s."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    log_append = ConfigEntry(
        "message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET
    )
    resources = [
        ConfigResource(
            ResourceType.TOPIC, f"{topic_prefix}{spec.name}", incremental_configs=[log_append]
        )
        for spec in INPUT_TOPICS
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(30)

    def applied() -> bool:  # the broker applies a config change a moment after it accepts it
        described = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, r.name) for r in resources]
        )
        return all(
            f.result(30)["message.timestamp.type"].value == "LogAppendTime"
            for f in described.values()
        )

    wait_for(applied, 30, "LogAppendTime on the input topics", every=0.5)
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=46, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    producer = librdkafka_producer(kafka_bootstrap, **{"linger.ms": 20})
    moved = 0
    for env in envelopes:
        assert env.key is not None
        partition = sarama_partition(env.key, env.topic.partitions)
        moved += partition != partition_for(env.key, env.topic.partitions)
        producer.produce(
            f"{topic_prefix}{env.topic.name}", value=env.value, key=env.key, partition=partition
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert moved > len(envelopes) // 4  # really another partitioning than murmur2

    pool.add("w1").start().wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]


def add_partitions(bootstrap: str, topics: dict[str, int]) -> None:
    """What `kafka-topics.sh --alter --partitions N` does: more partitions for existing topics
    (records already written stay where they are)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({t: NewPartitions(n) for t, n in topics.items()})
            for _ in range(200):  # the metadata shows the new partitions a moment later
                described = await admin.describe_topics(sorted(topics))
                if all(len(t["partitions"]) == topics[t["topic"]] for t in described):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the broker did not add the partitions: {described}")
        finally:
            await admin.close()

    asyncio.run(run())


def test_input_topics_with_another_partition_count_give_the_embedded_numbers(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """A site whose node-telemetry and request-log topics have 6 partitions, not the 4 the
    pipeline would create, fed by librdkafka (CRC32 over 6): two workers share the 6 stage-1
    partitions (their snapshot changelog gets 6 too) and the numbers are `microdc process`'s."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=49, rps_scale=0.05)
    envelopes = list(Simulator(fleet, config))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    names = [f"{topic_prefix}{NODE_TELEMETRY.name}", f"{topic_prefix}{REQUESTS}"]
    add_partitions(kafka_bootstrap, dict.fromkeys(names, 6))
    produce_with_librdkafka(kafka_bootstrap, topic_prefix, envelopes)

    workers = [pool.add(name).start() for name in ("w1", "w2")]
    for worker in workers:
        worker.wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=180)
    assert_same(got, expected)
    assert not got["mdc.late-events"]
    owned = {
        entry
        for worker in workers
        for entry in (worker.health() or {}).get("assigned", [])
        if entry.startswith(names[1])
    }
    assert owned == {f"{names[1]}[{p}]" for p in range(6)}


def test_co_partitioned_topics_with_different_counts_are_refused_with_the_fix(
    kafka_bootstrap: str, topic_prefix: str, kafka_topics: dict[str, Any]
) -> None:
    """Request logs on 6 partitions, node telemetry on 4: stage 1 reads partition p of both
    together, so the worker refuses to start and says how to align them."""
    from pipeline.contracts.topics import iter_topics
    from pipeline.kafka_admin import CoPartitionMismatchError, ensure_topics_sync

    add_partitions(kafka_bootstrap, {kafka_topics[REQUESTS].name: 6})
    try:
        ensure_topics_sync(kafka_bootstrap, iter_topics(topic_prefix))
    except CoPartitionMismatchError as exc:
        message = str(exc)
    else:
        raise AssertionError("a 4/6 co-partitioned pair was accepted")
    assert f"{topic_prefix}{REQUESTS} has 6" in message
    assert f"{topic_prefix}{NODE_TELEMETRY.name} has 4" in message
    assert "--partitions 6" in message
