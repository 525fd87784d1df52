"""`microdc collect --sink kafka` against the real broker: samples keyed by their contract and
on the partition Kafka's default partitioner picks; records made while the broker cannot be
reached wait in the disk buffer and are sent by the next run, once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.records import NodeSample
from pipeline.contracts.topics import NODE_TELEMETRY, TopicSpec
from pipeline.fleet import load_fleet
from pipeline.localkafka import free_ports
from tests.support.kafka_read import read_topics
from tests.support.redfish_server import redfish_server


def collector_file(path: Path, urls: list[str]) -> list[str]:
    nodes = load_fleet().nodes[: len(urls)]
    lines = ["poll_interval_s: 1", "nodes:"]
    for node, url in zip(nodes, urls, strict=True):
        lines += [
            f"  - node_id: {node.node_id}",
            "    sources:",
            f"      - {{kind: redfish, url: '{url}', auth: basic, chassis: 1U, timeout_s: 2,",
            "          username_env: TEST_BMC_USER, password_env: TEST_BMC_PASSWORD}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [n.node_id for n in nodes]


def collect_once(collectors: Path, bootstrap: str, prefix: str, buffer: Path) -> str:
    args = [sys.executable, "-m", "pipeline", "collect", "--once", "--sink", "kafka"]
    args += ["--send-timeout", "5"]
    args += ["--collectors", str(collectors), "--bootstrap", bootstrap]
    args += ["--topic-prefix", prefix, "--buffer", str(buffer)]
    env = {**os.environ, "COLUMNS": "200", "TEST_BMC_USER": "admin"}
    env["TEST_BMC_PASSWORD"] = "s3cret-pw"  # tests.support.redfish_server's defaults
    done = subprocess.run(args, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def read_node_samples(
    bootstrap: str, spec: TopicSpec, expected: int
) -> list[tuple[int, bytes | None, NodeSample]]:
    """(partition, key, sample) of every record of the node-telemetry topic."""
    decode = msgspec.json.Decoder(NodeSample).decode
    records = read_topics(bootstrap, [spec], expected, timeout=30)
    return [(r.partition, r.key, decode(r.value)) for r in sorted(records, key=lambda r: r.offset)]


def test_collected_samples_are_keyed_and_partitioned_as_the_contract_says(
    tmp_path: Path, kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str
) -> None:
    with (
        redfish_server("public-rackmount1", tmp_path / "a") as a,
        redfish_server("public-rackmount1", tmp_path / "b") as b,
    ):
        collectors = tmp_path / "collectors.yaml"
        node_ids = collector_file(collectors, [a.url, b.url])
        printed = collect_once(collectors, kafka_bootstrap, topic_prefix, tmp_path / "buffer")
    assert "2 samples" in printed
    spec = kafka_topics[NODE_TELEMETRY.name]
    got = read_node_samples(kafka_bootstrap, spec, 2)
    assert sorted(s.node_id for _, _, s in got) == sorted(node_ids)
    for partition, key, sample in got:
        assert key == sample.node_id.encode()
        assert partition == partition_for(key, spec.partitions)
        assert sample.power_w == 374.0


def test_records_made_while_kafka_is_away_wait_on_disk_and_go_once(
    tmp_path: Path, kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str
) -> None:
    (nothing,) = free_ports(1)
    buffer = tmp_path / "buffer"
    with redfish_server("public-rackmount1", tmp_path / "a") as a:
        collectors = tmp_path / "collectors.yaml"
        (node_id,) = collector_file(collectors, [a.url])
        away = collect_once(collectors, f"127.0.0.1:{nothing}", topic_prefix, buffer)
        assert "wait in" in away  # not confirmed: kept on disk
        collect_once(collectors, kafka_bootstrap, topic_prefix, buffer)
    got = read_node_samples(kafka_bootstrap, kafka_topics[NODE_TELEMETRY.name], 2)
    times = [s.observed_at for _, _, s in got]
    assert [s.node_id for _, _, s in got] == [node_id, node_id]
    assert len(set(times)) == 2 and times == sorted(times)  # the buffered one first, once each
