"""Every Kafka client of the pipeline against a broker that demands SASL/PLAIN authentication.

This module starts its own broker (a `LocalKafka` whose client listener is SASL_PLAINTEXT with
mechanism PLAIN; the KRaft controller listener stays PLAINTEXT), on 127.0.0.1, for this module
only, and stops it at the end. The right password gets a produce/consume round trip through
`client_kwargs` and the whole CLI (topics, simulator, lander, Faust worker); a wrong one gets one
clear line and exit code 3 from every command.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.contracts import INPUT_TOPICS, TopicSpec
from pipeline.errors import KafkaUnavailableError
from pipeline.fleet import load_fleet
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.kafka_security import KafkaSecurity, client_kwargs
from pipeline.localkafka import LocalKafka, free_ports
from pipeline.simulate import SimConfig, simulate_to_kafka
from tests.support.worker_procs import _die_with_parent, wait_for

USER = "alice"
PASSWORD = f"pw-{uuid4().hex}"
MICRODC = str(Path(sys.executable).parent / "microdc")


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of its own that only speaks SASL_PLAINTEXT (PLAIN) to clients."""
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka-sasl"), sasl_users={USER: PASSWORD})
    try:
        kafka.start()
    except KafkaUnavailableError as exc:
        kafka.stop()
        problem = str(exc)
    else:
        problem = ""
    if problem:  # fail outside the except block: one clean message
        pytest.fail(f"could not start a SASL Kafka broker: {problem}", pytrace=False)
    assert kafka.security_protocol == "SASL_PLAINTEXT"
    try:
        yield kafka
    finally:
        kafka.stop()


def security(password: str = PASSWORD) -> KafkaSecurity:
    return KafkaSecurity(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=USER,
        sasl_password=password,
    )


def cli_env(tmp_path: Path, bootstrap: str, prefix: str, password: str) -> dict[str, str]:
    """The environment of a `microdc` child: settings in ./microdc.toml, the password in a
    variable, as one would run it against one's own cluster."""
    (tmp_path / "microdc.toml").write_text(
        f'kafka_bootstrap = "{bootstrap}"\n'
        f'topic_prefix = "{prefix}"\n'
        'kafka_security_protocol = "SASL_PLAINTEXT"\n'
        'kafka_sasl_mechanism = "PLAIN"\n'
        f'kafka_sasl_username = "{USER}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRODC_")}
    env["MICRODC_KAFKA_SASL_PASSWORD"] = password
    return env


def microdc(
    args: list[str], tmp_path: Path, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MICRODC, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=timeout,
        preexec_fn=_die_with_parent(),
    )


async def _count(
    bootstrap: str, specs: list[TopicSpec], expected: int, kwargs: dict[str, Any]
) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kwargs,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(s.name, p) for s in specs for p in range(s.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        deadline = asyncio.get_running_loop().time() + 60
        while seen < expected and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            seen += sum(len(records) for records in batches.values())
        return seen
    finally:
        await consumer.stop()


def test_round_trip_through_the_client_factory(sasl_kafka: LocalKafka) -> None:
    bootstrap, prefix = sasl_kafka.bootstrap, f"t{uuid4().hex[:10]}."
    specs = [spec.with_prefix(prefix) for spec in INPUT_TOPICS]
    created = ensure_topics_sync(bootstrap, specs, security=security())
    assert sorted(created) == sorted(spec.name for spec in specs)
    config = SimConfig(start=datetime(2026, 3, 2, tzinfo=UTC), minutes=2, rps_scale=0.01, seed=3)
    result = simulate_to_kafka(
        load_fleet(), config, bootstrap, topic_prefix=prefix, security=security()
    )
    expected = sum(result.stats.valid.values())
    assert expected > 100
    kwargs = client_kwargs(security())
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert asyncio.run(_count(bootstrap, specs, expected, kwargs)) == expected


def test_the_cli_works_with_the_right_password(sasl_kafka: LocalKafka, tmp_path: Path) -> None:
    prefix = f"t{uuid4().hex[:10]}."
    env = cli_env(tmp_path, sasl_kafka.bootstrap, prefix, PASSWORD)
    for args in (
        ["topics", "create"],
        ["simulate", "--sink", "kafka", "--duration", "2m", "--rps-scale", "0.01"],
    ):
        proc = microdc(args, tmp_path, env)
        assert proc.returncode == 0, proc.stderr
    proc = microdc(
        ["--log-format", "json", "land", "--until-idle", "--lake", "lake", "--group-id", prefix],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, proc.stderr
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert logs and all({"ts", "level", "logger", "msg"} <= set(entry) for entry in logs)
    assert any(entry["msg"].startswith("consumed ") for entry in logs)
    assert list((tmp_path / "lake" / "bronze" / "request_log").rglob("*.parquet"))

    # The Faust worker: broker_credentials from the same settings.
    port = free_ports(1)[0]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [MICRODC, "--log-format", "json", "worker", "--store", "memory://",
             "--web-port", str(port), "--data-dir", str(tmp_path / "worker"), "--loglevel", "info"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),
        )  # fmt: skip
    try:

        def ready() -> dict[str, Any] | None:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    state: dict[str, Any] = json.loads(r.read())
            except OSError:
                return None
            return state if state["status"] == "ok" and state["assigned"] else None

        state = wait_for(ready, 90, "the SASL worker to join its group")
        assert f"{prefix}mdc.request-log[0]" in state["assigned"]
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    # --log-format json reaches Faust's logging too: every line is one JSON object.
    lines = (tmp_path / "worker.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert any(entry["logger"].startswith("faust") for entry in entries), lines[:5]


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "create"],
        ["simulate", "--sink", "kafka", "--duration", "1m"],
        ["land", "--lake", "lake"],
        ["worker", "--store", "memory://", "--web-port", "{port}"],
    ],
    ids=["topics", "simulate", "land", "worker"],
)
def test_a_wrong_password_is_one_clear_line(
    args: list[str], sasl_kafka: LocalKafka, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, sasl_kafka.bootstrap, f"t{uuid4().hex[:10]}.", "wrong-password")
    argv = [a.format(port=free_ports(1)[0]) for a in args]
    proc = microdc(argv, tmp_path, env)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"error: cannot connect to Kafka at {sasl_kafka.bootstrap} (SASL_PLAINTEXT, PLAIN as "
        f"'{USER}'): "
    )
    assert "Invalid username or password" in lines[0]
    assert "check kafka_sasl_username / kafka_sasl_password" in lines[0]
    assert "wrong-password" not in proc.stderr


def test_a_plaintext_client_is_told_to_check_the_protocol(
    sasl_kafka: LocalKafka, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRODC_")}
    proc = microdc(
        ["topics", "create", "--bootstrap", sasl_kafka.bootstrap, "--timeout-s", "10"],
        tmp_path,
        env,
    )
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "(PLAINTEXT)" in lines[0]
    assert "kafka_security_protocol matches the broker's listener" in lines[0]
