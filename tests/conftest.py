"""Shared fixtures: a real Kafka broker for integration tests and per-test topic names.

The broker is `MICRODC_KAFKA_BOOTSTRAP` if set, otherwise a `LocalKafka` started on first use by
a test that asks for `kafka_bootstrap` (unit-only runs never start Java) and stopped at the end
of the session. Tests under `tests/integration` are marked `integration` and those under
`tests/e2e` `slow`, automatically (the tiers: README.md, Tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from hypothesis import settings

from pipeline.contracts.topics import ALL_TOPICS, TopicSpec
from pipeline.errors import KafkaUnavailableError
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.localkafka import BOOTSTRAP_ENV, HOW_TO_GET_A_BROKER, KAFKA_VERSION, LocalKafka

# These machines are shared: one slow example (a GC pause, a neighbour's build) is not a bug.
# Hypothesis still shrinks and reports real failures; it just does not time examples.
settings.register_profile("microdc", deadline=None)
settings.load_profile("microdc")

_INTEGRATION_DIR = Path(__file__).parent / "integration"
_E2E_DIR = Path(__file__).parent / "e2e"
_SUMMARY: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration `integration` and under tests/e2e `slow`."""
    for item in items:
        if _INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
        elif _E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which broker the integration tests used and how long it took to start."""
    for line in _SUMMARY:
        terminalreporter.write_line(line)


def _reachable(bootstrap: str, timeout: float = 5.0) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        with (
            contextlib.suppress(OSError, ValueError),
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout),
        ):
            return True
    return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker for the whole session (started here if needed)."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        if not _reachable(external):
            pytest.fail(
                f"{BOOTSTRAP_ENV}={external} is not reachable. {HOW_TO_GET_A_BROKER}", pytrace=False
            )
        _SUMMARY.append(f"Kafka: using {BOOTSTRAP_ENV}={external}")
        yield external
        return
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"))
    try:
        bootstrap = kafka.start()
    except KafkaUnavailableError as exc:
        kafka.stop()
        problem = str(exc)
    else:
        problem = ""
    if problem:  # fail outside the except block: one clean message, no chained traceback
        hint = "" if HOW_TO_GET_A_BROKER in problem else f"\n{HOW_TO_GET_A_BROKER}"
        pytest.fail(
            f"could not start a local Kafka broker for integration tests: {problem}{hint}",
            pytrace=False,
        )
    line = f"local Kafka {KAFKA_VERSION} started in {kafka.startup_seconds or 0:.1f} s"
    if kafka.jars_seconds and kafka.jars_seconds > 1:
        line += f" (after fetching its jars in {kafka.jars_seconds:.1f} s)"
    _SUMMARY.append(f"{line} on {bootstrap}; logs in {kafka.workdir}")
    try:
        yield bootstrap
    finally:
        kafka.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic-name prefix, so tests never see each other's records."""
    return f"t{uuid4().hex[:10]}."


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
def kafka_topics(kafka_bootstrap: str, topic_prefix: str) -> Iterator[dict[str, TopicSpec]]:
    """Every pipeline topic created under `topic_prefix`, keyed by its unprefixed name.

    E.g. `kafka_topics["mdc.request-log"].name == "t1a2b3c4d5e.mdc.request-log"`. The topics are
    deleted after the test (best effort).
    """
    specs = {spec.name: spec.with_prefix(topic_prefix) for spec in ALL_TOPICS}
    ensure_topics_sync(kafka_bootstrap, specs.values())
    yield specs
    with contextlib.suppress(Exception):
        asyncio.run(_delete_topics(kafka_bootstrap, [spec.name for spec in specs.values()]))
