"""The pure parts of pipeline.localkafka: cluster ids, server.properties, ports, jar cache."""

from __future__ import annotations

import base64
import re
import socket
from importlib import resources
from pathlib import Path

import pytest

from pipeline.errors import KafkaUnavailableError
from pipeline.localkafka import (
    KAFKA_VERSION,
    cache_dir,
    ensure_jars,
    free_ports,
    jars_dir,
    new_cluster_id,
    server_properties,
    status,
)
from tests.support.cli_run import one_error_line, run


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_cluster_id_is_16_random_bytes_urlsafe_without_padding() -> None:
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_server_properties_bind_loopback_only(tmp_path: Path) -> None:
    props = _props(server_properties(port=19092, controller_port=19093, log_dir=tmp_path))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    hosts = re.findall(r"//([^:,]*):", props["listeners"] + "," + props["advertised.listeners"])
    assert hosts and set(hosts) == {"127.0.0.1"}
    assert "0.0.0.0" not in server_properties(port=1, controller_port=2, log_dir=tmp_path)


def test_server_properties_single_node_settings(tmp_path: Path) -> None:
    props = _props(server_properties(port=19092, controller_port=19093, log_dir=tmp_path))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path)
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
        "num.partitions",
        "offsets.topic.num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_free_ports_are_distinct_and_bindable_on_loopback() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        assert 1024 <= port <= 65535
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MICRODC_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert jars_dir("9.9.9") == tmp_path / "kafka" / "9.9.9" / "libs"
    monkeypatch.delenv("MICRODC_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "microdc"


def test_ensure_jars_uses_the_cache_without_maven(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MICRODC_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    libs = jars_dir("9.9.9")
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-9.9.9.jar").touch()
    (libs / ".complete").touch()
    assert ensure_jars("9.9.9") == libs


def test_ensure_jars_without_maven_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MICRODC_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(KafkaUnavailableError) as info:
        ensure_jars("9.9.9")
    message = str(info.value)
    for hint in ("mvn", "Java 17", "MICRODC_KAFKA_BOOTSTRAP", "docker-compose.kafka.yml"):
        assert hint in message


def test_packaged_pom_and_logging_config() -> None:
    files = resources.files("pipeline.localkafka")
    pom = files.joinpath("pom.xml").read_text(encoding="utf-8")
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    log4j = files.joinpath("log4j2.properties").read_text(encoding="utf-8")
    assert "SYSTEM_ERR" in log4j


def test_status_and_cli_without_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(tmp_path / "nothing") is None
    code, out, err = run(["kafka", "status", "--state-dir", str(tmp_path / "nothing")], capsys)
    assert code == 1
    assert out == ""
    assert "no local broker is running" in one_error_line(err)
