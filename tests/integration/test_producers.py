"""Producers that are not ours (issue 12): streams that run behind each other, backfills one
topic after the other, a stream that goes silent. The worker must compute what `microdc
process` computes on the same records, key by key and value by value.

Each input topic-partition has its own watermark in stage 1 and a minute closes when both the
node-telemetry and the request-log watermark passed it; a stream that stopped moving while the
other is ahead holds closing back for `--max-source-skew` seconds of wall clock at most.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from pipeline.fleet import load_fleet
from pipeline.runner import from_envelopes, run_embedded
from pipeline.simulate import Envelope, SimConfig, Simulator
from pipeline.simulate.sinks import KafkaSink
from tests.integration.live_feed import LiveFeed
from tests.integration.test_worker import (
    MINUTES,
    assert_same,
    expected_outputs,
    wait_for_outputs,
)
from tests.integration.worker_procs import WorkerPool

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
