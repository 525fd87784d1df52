"""`microdc land` against a real broker: SIGKILLed at random moments and restarted, and across a
broker restart, the lake ends up with every valid produced record exactly once.

"Valid produced records" are read back from the input topics themselves and checked against
their contracts, so the expectation is (topic, partition, offset) of every valid record in the
log; the lake's lineage columns give the same triple for every landed row.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import INPUT_TOPICS, TopicSpec
from pipeline.contracts.codec import decoder
from pipeline.fleet import load_fleet
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.lake import BY_NAME, Lake
from pipeline.localkafka import LocalKafka
from pipeline.simulate import FaultConfig, SimConfig, Simulator
from tests.support.kafka_read import read_topics
from tests.support.live_feed import LiveFeed
from tests.support.worker_procs import Lander, wait_for

START = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # crosses midnight: two date partitions
BRONZE = [d for d in BY_NAME.values() if d.layer == "bronze"]


def valid_offsets(bootstrap: str, topics: list[TopicSpec], total: int) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of every record in `topics` that passes its contract."""
    by_name = {spec.name: spec for spec in topics}
    valid = set()
    for rec in read_topics(bootstrap, topics, total, timeout=120):
        spec = by_name[rec.topic]
        assert spec.record_type is not None
        try:
            decoder(spec.record_type).decode(rec.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        valid.add((rec.topic, rec.partition, rec.offset))
    return valid


def landed(lake: Path) -> Counter[tuple[str, int, int]]:
    """(topic, partition, offset) of every landed row, file by file: a lander that is running
    (or recovering after a kill) may have created a directory with no file yet, or remove an
    incomplete segment's files while they are listed."""
    rows: Counter[tuple[str, int, int]] = Counter()
    for dataset in BRONZE:
        for path in sorted((lake / dataset.path).rglob("*.parquet")):
            try:
                table = pq.read_table(path, columns=["_topic", "_partition", "_offset"])
            except FileNotFoundError:
                continue  # removed by the lander's recovery meanwhile
            cols = table.to_pydict()
            rows.update(zip(cols["_topic"], cols["_partition"], cols["_offset"], strict=True))
    return rows


@pytest.fixture
def input_topics(kafka_bootstrap: str, topic_prefix: str) -> Iterator[list[TopicSpec]]:
    specs = [spec.with_prefix(topic_prefix) for spec in INPUT_TOPICS]
    ensure_topics_sync(kafka_bootstrap, specs)
    yield specs


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    kafka_bootstrap: str, topic_prefix: str, input_topics: list[TopicSpec], tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    faults = FaultConfig(malformed=0.002, late=0.01, duplicate=0.005, out_of_order=0.01)
    config = SimConfig(start=START, minutes=40, seed=17, rps_scale=0.12, faults=faults)
    feed = LiveFeed(
        kafka_bootstrap, topic_prefix, list(Simulator(load_fleet(), config).minutes()), 0.35
    )
    assert feed.total >= 200_000, f"only {feed.total} events"
    lake = tmp_path / "lake"
    lander = Lander(kafka_bootstrap, topic_prefix, lake, tmp_path / "land.log", max_rows=4_000)
    lander.start()
    feed.start()
    kills = 0
    while kills < 5 or not feed.done:
        wait_for(lambda: landed_files(lake) > 0, 60, "the lander to land something")
        # A random moment: mid-segment, mid-write or between landing and commit.
        threading.Event().wait(rng.uniform(0.2, 2.5))
        lander.check_alive()
        lander.kill()
        kills += 1
        lander.start()
    expected = valid_offsets(kafka_bootstrap, input_topics, feed.total)
    wait_for(
        lambda: set(landed(lake)) >= expected, 180, f"every valid record (seed {seed})", every=1
    )
    assert lander.stop() == 0
    rows = landed(lake)
    duplicates = {k: n for k, n in rows.items() if n > 1}
    assert not duplicates, f"seed {seed}: {len(duplicates)} rows landed twice"
    assert set(rows) == expected, f"seed {seed}: extra {len(set(rows) - expected)}"
    assert kills >= 5
    # Nothing half-written is left: no temps, and every file belongs to a whole segment.
    assert not [p for p in lake.rglob(".*") if p.is_file() and "_landing" not in p.parts]
    store = Lake(lake)
    for dataset in BRONZE:
        for topic_partition in {(r[0], r[1]) for r in rows if r[0].endswith(dataset.topic.name)}:
            assert store.recover(dataset, *topic_partition) is not None


def landed_files(lake: Path) -> int:
    return sum(1 for _ in lake.rglob("*.parquet")) if lake.exists() else 0


def test_a_broker_restart_mid_run_is_survived_without_help(
    tmp_path_factory: pytest.TempPathFactory, topic_prefix: str, tmp_path: Path
) -> None:
    kafka = LocalKafka(tmp_path_factory.mktemp("restart-kafka"))
    bootstrap = kafka.start()
    try:
        specs = [spec.with_prefix(topic_prefix) for spec in INPUT_TOPICS]
        ensure_topics_sync(bootstrap, specs)
        config = SimConfig(start=START, minutes=12, seed=3, rps_scale=0.05)
        batches = list(Simulator(load_fleet(), config).minutes())
        first = LiveFeed(bootstrap, topic_prefix, batches[:6], pace_s=0.0)
        second = LiveFeed(bootstrap, topic_prefix, batches[6:], pace_s=0.0)
        lake = tmp_path / "lake"
        lander = Lander(bootstrap, topic_prefix, lake, tmp_path / "land.log", max_rows=2_000)
        lander.start()
        first.start()
        wait_for(lambda: first.done, 60, "the first half to be produced")
        wait_for(lambda: sum(landed(lake).values()) > 0, 60, "some rows to land")
        kafka.restart()
        lander.check_alive()
        second.start()
        wait_for(lambda: second.done, 60, "the second half to be produced")
        total = first.total + second.total
        expected = valid_offsets(bootstrap, specs, total)
        wait_for(lambda: set(landed(lake)) >= expected, 120, "every record after the restart")
        lander.check_alive()
        assert lander.stop() == 0
        rows = landed(lake)
        assert max(rows.values()) == 1 and set(rows) == expected
    finally:
        kafka.stop()
