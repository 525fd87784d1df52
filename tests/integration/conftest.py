"""Fixtures shared by the integration tests that run stream workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.contracts.topics import TopicSpec
from tests.support.worker_procs import WorkerPool


@pytest.fixture
def pool(
    kafka_bootstrap: str, kafka_topics: dict[str, TopicSpec], topic_prefix: str, tmp_path: Path
) -> Iterator[WorkerPool]:
    """Worker processes on this test's topics, all stopped at the end of the test."""
    workers = WorkerPool(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        yield workers
    finally:
        workers.close()
