"""Faust workers against a real broker compute what the embedded runner computes.

The simulator writes to fresh topics, workers (child processes) consume them, and every output
topic is read back, de-duplicated by natural key and compared field by field with
`pipeline.embedded.driver.run_embedded` over the same records.

The embedded run ends with `close()`, flushing every open minute; a worker cannot know the input
ended, so it closes only the minutes the watermarks pass. The comparison therefore requires every
embedded record of a minute before `CUTOFF` - the start of the last grid-intensity hour, before
which stage 2 has every input it waits for - and requires every record the worker emitted (later
minutes included) to equal its embedded twin. Late events and dead letters do not depend on
closing minutes and are compared in full.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.topics import INPUT_TOPICS, OUTPUT_TOPICS
from pipeline.embedded.driver import Message, RunResult, from_envelopes, run_embedded
from pipeline.fleet import load_fleet
from pipeline.fleet.model import Fleet
from pipeline.simulate import Envelope, FaultConfig, SimConfig, Simulator
from pipeline.simulate.sinks import KafkaSink
from tests.support.kafka_read import read_topics
from tests.support.live_feed import LiveFeed
from tests.support.worker_procs import WorkerPool, wait_for

START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
MINUTES = 40
#: Grid intensity arrives hourly; stage 2 closes a minute once a value starting at or after it
#: is in, so with data until ~15:10 every minute before 15:00 must be closed by the workers.
CUTOFF = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
COMPARED = ("mdc.energy-minutes", "mdc.site-minutes", "mdc.slo-burn", "mdc.alerts")
IN_FULL = ("mdc.late-events", "mdc.dead-letters")


# -- reference and comparison ------------------------------------------------------------------


def _plain(record: Any) -> dict[str, Any]:
    """A record as the worker's JSON decodes: same encoder, same types on both sides."""
    value: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(record))
    return value


def natural_key(topic: str, record: dict[str, Any]) -> str:
    if topic == "mdc.alerts":
        return f"{record['alert_id']}|{record['state']}|{record['at_ms']}"
    return str(record["key"])


def _minute_ms(topic: str, record: dict[str, Any]) -> int | None:
    if topic == "mdc.alerts":
        return int(record["at_ms"])
    if topic in COMPARED:
        return int(datetime.fromisoformat(record["window_start"]).timestamp() * 1000)
    return None


def expected_outputs(result: RunResult) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for topic in COMPARED + IN_FULL:
        records = (_plain(r) for r in result.outputs.get(topic, []))
        out[topic] = {natural_key(topic, r): r for r in records}
    return out


def _unprefix(topic: str, record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Dead letters name the real (prefixed) source topic; the embedded run names the contract."""
    if topic == "mdc.dead-letters":
        record = dict(record)
        record["source_topic"] = record["source_topic"].removeprefix(prefix)
        record["key"] = record["key"].removeprefix(prefix)
    return record


def worker_outputs(
    bootstrap: str, prefix: str, expected_count: int, timeout: float
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every output record in the broker, by topic and natural key (duplicates kept)."""
    specs = [spec.with_prefix(prefix) for spec in OUTPUT_TOPICS]
    records = read_topics(bootstrap, specs, expected_count, timeout)
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        topic = rec.topic.removeprefix(prefix)
        value = _unprefix(topic, msgspec.json.decode(rec.value), prefix)
        out[topic][natural_key(topic, value)].append(value)
    return out


def required_keys(
    expected: dict[str, dict[str, dict[str, Any]]], cutoff: datetime = CUTOFF
) -> dict[str, set[str]]:
    cutoff_ms = int(cutoff.timestamp() * 1000)
    need: dict[str, set[str]] = {}
    for topic, records in expected.items():
        need[topic] = {
            key
            for key, rec in records.items()
            if (minute := _minute_ms(topic, rec)) is None or minute < cutoff_ms
        }
    return need


def wait_for_outputs(
    bootstrap: str,
    prefix: str,
    expected: dict[str, dict[str, dict[str, Any]]],
    timeout: float,
    cutoff: datetime = CUTOFF,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Read the output topics until every required natural key (minutes before `cutoff`, the
    last one the workers must have closed) is there (or fail)."""
    need = required_keys(expected, cutoff)
    total = sum(len(keys) for keys in need.values())
    got: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def complete() -> bool:
        nonlocal got
        got = worker_outputs(bootstrap, prefix, total, timeout=1.5)
        return all(keys <= got[topic].keys() for topic, keys in need.items())

    try:
        wait_for(complete, timeout, "every closed minute's outputs", every=1.0)
    except AssertionError:
        missing = {t: sorted(keys - got[t].keys())[:5] for t, keys in need.items()}
        # What the worker said instead: late records (by topic, partition and reason) point at
        # a reordered input, none at a row that never reached stage 2.
        late = Counter(
            (e[0]["source_topic"], e[0]["partition"], e[0]["reason"])
            for e in got.get("mdc.late-events", {}).values()
            if e
        )
        raise AssertionError(
            f"outputs missing after {timeout} s, e.g. {missing}; "
            f"late events received: {dict(late) or 'none'}"
        ) from None
    return got


def assert_same(
    got: dict[str, dict[str, list[dict[str, Any]]]],
    expected: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, int]:
    """Each emitted record equals its embedded twin; re-emissions carry identical values."""
    duplicates: dict[str, int] = {}
    for topic in COMPARED + IN_FULL:
        duplicates[topic] = 0
        for key, copies in got[topic].items():
            assert key in expected[topic], f"{topic}: worker emitted {key!r}, embedded did not"
            for copy in copies:
                want = expected[topic][key]
                if copy != want:
                    fields = {f: (copy.get(f), want.get(f)) for f in want if copy.get(f) != want[f]}
                    raise AssertionError(f"{topic} {key}: worker != embedded: {fields}")
            duplicates[topic] += len(copies) - 1
    return duplicates


def kafka_order(bootstrap: str, prefix: str, count: int) -> list[Message]:
    """The input records in the order the workers apply them: Kafka timestamp, then node
    telemetry before request logs (the merge's tie-break), then offset."""
    specs = {spec.name: spec for spec in INPUT_TOPICS}
    rank = {"mdc.node-telemetry": 0, "mdc.request-log": 1}
    records = read_topics(bootstrap, [s.with_prefix(prefix) for s in INPUT_TOPICS], count)
    assert len(records) == count
    records.sort(key=lambda r: (r.timestamp, rank.get(r.topic.removeprefix(prefix), 2), r.offset))
    return [(specs[r.topic.removeprefix(prefix)], r.key, r.value) for r in records]


def simulate(bootstrap: str, prefix: str, fleet: Fleet, config: SimConfig) -> list[Envelope]:
    """The simulator's records, produced to the test's topics (generated once, for both)."""
    envelopes = list(Simulator(fleet, config))

    async def produce() -> None:
        async with KafkaSink(bootstrap, topic_prefix=prefix) as sink:
            await sink.write(envelopes)

    asyncio.run(produce())
    return envelopes


# -- tests -------------------------------------------------------------------------------------


def test_one_worker_equals_the_embedded_runner(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Clean input plus duplicates: the same numbers as the embedded runner over the simulator's
    emission order (no record is near its lateness bound, so the cross-topic order does not
    matter; see the late-events test for records that are)."""
    fleet = load_fleet()
    faults = FaultConfig(duplicate=0.01)
    config = SimConfig(start=START, minutes=MINUTES, seed=11, rps_scale=0.05, faults=faults)
    envelopes = simulate(kafka_bootstrap, topic_prefix, fleet, config)
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    assert expected["mdc.energy-minutes"] and expected["mdc.alerts"]

    worker = pool.add("w1").start()
    worker.wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=90)
    assert_same(got, expected)
    metrics = worker.metrics()
    assert 'microdc_events_in_total{topic="' in metrics
    assert "microdc_open_minutes" in metrics
    health = worker.health()
    assert health is not None
    stage_one = [p for p in health["stages"] if p["stage"] == "stage-one"]
    assert sorted(p["partition"] for p in stage_one) == [0, 1, 2, 3]
    assert all(p["last_closed_minute"] >= "2026-03-02T15:0" for p in stage_one)


def test_late_events_match_the_embedded_runner_in_kafka_order(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Records beyond the lateness bound become the same late events, given the same order.

    Whether a record is late depends on what its partition saw before it. Node telemetry and
    request logs are separate topics, so the order between them is the merge's (Kafka
    timestamp, then node first), which can differ from the simulator's emission order within
    one millisecond of producing; the reference is fed the records in the workers' order.
    """
    fleet = load_fleet()
    faults = FaultConfig(late=0.01, out_of_order=0.05)
    config = SimConfig(start=START, minutes=MINUTES, seed=12, rps_scale=0.05, faults=faults)
    envelopes = simulate(kafka_bootstrap, topic_prefix, fleet, config)
    messages = kafka_order(kafka_bootstrap, topic_prefix, len(envelopes))
    expected = expected_outputs(run_embedded(fleet, messages))
    assert len(expected["mdc.late-events"]) > 20

    worker = pool.add("w1").start()
    worker.wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=90)
    assert_same(got, expected)
    by_reason = Counter(e["reason"] for e in expected["mdc.late-events"].values())
    metrics = worker.metrics()
    late_lines = [
        line for line in metrics.splitlines() if line.startswith("microdc_late_records_total")
    ]
    for reason, n in by_reason.items():
        counted = sum(float(x.rsplit(" ", 1)[1]) for x in late_lines if f'reason="{reason}"' in x)
        assert counted == n, (reason, n, late_lines)


def test_sigkill_and_restart_lose_nothing_and_repeat_identical_values(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    """Workers a and b share a live stream; a is SIGKILLed mid-run, b takes over all partitions
    (state from the changelog), a restarts on its own RocksDB store and rejoins."""
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=13, rps_scale=0.15)
    batches = list(Simulator(fleet, config).minutes())
    feed = LiveFeed(kafka_bootstrap, topic_prefix, batches, pace_s=0.25)
    expected = expected_outputs(run_embedded(fleet, from_envelopes(feed.envelopes)))

    # 6 s is the broker's minimum session timeout: b notices a's death that fast.
    a = pool.add("a", store="rocksdb://", session_timeout_s=6).start()
    b = pool.add("b", store="rocksdb://", session_timeout_s=6).start()
    a.wait_ready()
    b.wait_ready()
    feed.start()
    try:

        def a_mid_run() -> bool:
            parts = [p for p in (a.health() or {}).get("stages", []) if p["stage"] == "stage-one"]
            applied = sum(sum(p["offsets"].values()) for p in parts)
            return feed.produced >= 12 and applied > 0

        wait_for(a_mid_run, 60, "worker a to process part of the live stream")
        a.kill()
        killed_at = feed.produced

        def b_owns_everything() -> bool:
            state = b.health() or {}
            owned = set(state.get("assigned", []))
            return state.get("status") == "ok" and all(
                f"{topic_prefix}mdc.request-log[{p}]" in owned for p in range(4)
            )

        wait_for(b_owns_everything, 60, "worker b to take over a's partitions")
        a.start()
        wait_for(lambda: feed.done, 60, "the live feed to finish")
        assert killed_at < len(feed.batches), "a was killed after the stream ended"
        got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=120)
    finally:
        feed.stop()
    assert_same(got, expected)
    assert a.alive and b.alive
    assert a.wait_ready()


def test_malformed_records_go_to_dead_letters_and_change_nothing_else(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    fleet = load_fleet()
    config = SimConfig(
        start=START, minutes=MINUTES, seed=14, rps_scale=0.05, faults=FaultConfig(malformed=0.02)
    )
    envelopes = simulate(kafka_bootstrap, topic_prefix, fleet, config)
    malformed = dict(_malformed_positions(envelopes))
    assert len(malformed) > 100
    clean = [e for e in envelopes if not (e.fault or "").startswith("malformed")]
    expected_clean = expected_outputs(run_embedded(fleet, from_envelopes(clean)))
    expected = expected_outputs(run_embedded(fleet, from_envelopes(envelopes)))
    for topic in COMPARED:  # the embedded run agrees that bad records change nothing
        assert expected[topic] == expected_clean[topic]

    pool.add("w1").start().wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, expected, timeout=90)
    assert_same(got, expected)
    letters = {key: copies[0] for key, copies in got["mdc.dead-letters"].items()}
    assert letters.keys() == malformed.keys()
    for key, letter in letters.items():
        assert letter["error_kind"] in ("malformed_json", "invalid")
        assert letter["error_detail"]
        assert letter["value"] == _b64(malformed[key])  # the original bytes, base64 in JSON


def _b64(value: bytes) -> str:
    return msgspec.json.decode(msgspec.json.encode(value), type=str)


def _malformed_positions(envelopes: Iterable[Envelope]) -> Iterator[tuple[str, bytes]]:
    """(dead-letter key, bytes) of every malformed record: its topic, partition and offset."""
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    for env in envelopes:
        spec = env.topic
        partition = partition_for(env.key, spec.partitions) if env.key is not None else 0
        offset = offsets[(spec.name, partition)]
        offsets[(spec.name, partition)] += 1
        if (env.fault or "").startswith("malformed"):
            yield f"{spec.name}|{partition}|{offset}", env.value
