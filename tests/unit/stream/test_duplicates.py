"""Duplicate deliveries count once (issue 12): a request by `request_id`, a node sample by
(`node_id`, `observed_at`), in the stream as in the warehouse (`stg_request_log`,
`stg_node_telemetry` keep the first copy from bronze).

Producers retry, shippers replay a file after a restart, backfills overlap: the same record then
arrives twice, possibly with other records between the copies. Whatever the copies, while the
record's minute is open the second one changes nothing but a counter.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import NodeSample, RequestLog
from pipeline.contracts.codec import decoder
from pipeline.contracts.outputs import LateEvent
from pipeline.embedded.driver import from_envelopes, run_embedded
from pipeline.fleet import load_fleet
from pipeline.simulate import FaultConfig, SimConfig, Simulator
from pipeline.stream.node_stage import NodeStage
from tests.unit.stream.test_node_stage import (
    PARTITIONS,
    T12,
    event_ms,
    feed,
    fleet,
    partition_nodes,
    request,
    rows_of,
    run,
    sample,
    synthetic,
)

Record = NodeSample | RequestLog


def test_a_request_and_a_sample_delivered_twice_count_once() -> None:
    node_id = partition_nodes(0)[0]
    at = T12 + timedelta(seconds=40)
    records: list[Record] = [
        sample(node_id, at, 300.0),  # covers 12:00:10-12:00:40
        request(node_id, at, "checkout-api", 200.0),
    ]
    once = NodeStage(fleet(), 0, PARTITIONS)
    feed(once, records)
    twice = NodeStage(fleet(), 0, PARTITIONS)
    feed(twice, [*records, *records])  # other offsets: not a replay, a redelivery
    assert (twice.duplicate_samples, twice.duplicate_requests) == (1, 1)
    once.flush()
    twice.flush()
    rows = rows_of(twice.drain())
    assert rows == rows_of(once.drain())
    checkout = [r for r in rows if r.node_id == node_id and r.service == "checkout-api"]
    assert [r.requests for r in checkout] == [1]
    # 300 W for 30 s = 2.5 Wh, coverage 0.5, whatever the copies
    node_rows = [r for r in rows if r.node_id == node_id]
    assert node_rows[0].node_energy_wh == 2.5 and node_rows[0].coverage == 0.5


def test_a_sample_with_the_same_time_but_another_node_is_not_a_duplicate() -> None:
    a, b = partition_nodes(0)[:2]
    at = T12 + timedelta(seconds=30)
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(stage, [sample(a, at, 200.0), sample(b, at, 200.0), sample(a, at, 200.0)])
    assert stage.duplicate_samples == 1
    stage.flush()
    energy = {r.node_id: r.node_energy_wh for r in rows_of(stage.drain())}
    assert energy[a] == energy[b] == pytest.approx(200.0 * 30 / 3600, abs=1e-6)  # whole µWh


def test_a_copy_after_its_minute_closed_is_a_late_event_not_a_second_count() -> None:
    node_id = partition_nodes(0)[0]
    first = request(node_id, T12 + timedelta(seconds=5), "auth", 10.0)
    # both streams at 12:04: their watermarks (12:03:30 and 12:04 - 120 s) close 12:00 and 12:01
    later = [
        sample(node_id, T12 + timedelta(minutes=4), 200.0),
        request(node_id, T12 + timedelta(minutes=4), "auth", 10.0),
    ]
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(stage, [first, *later, first])
    outputs = stage.drain()
    assert stage.duplicate_requests == 0
    assert [o.reason for o in outputs if isinstance(o, LateEvent)] == [
        "request finished in a closed minute"
    ]
    assert sum(r.requests for r in rows_of(outputs)) == 1  # 12:00 closed with one request


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    copies=st.integers(0, 10_000),
    rate=st.floats(0.0, 1.0),
)
def test_arbitrary_redeliveries_within_lateness_give_identical_minutes(
    seed: int, copies: int, rate: float
) -> None:
    """Any subset of the records delivered again (up to three times), each copy arriving at
    most 100 s of event time after its original: the same closed minutes as without them."""
    records = synthetic(seed)
    rng = random.Random(copies)
    timed = [(event_ms(r), i, r) for i, r in enumerate(records)]
    for t, i, r in list(timed):
        for _ in range(rng.choice((1, 2, 3)) if rng.random() < rate else 0):
            timed.append((t + rng.uniform(0, 100_000), len(records) + i, r))
    timed.sort(key=lambda x: (x[0], x[1]))
    assert run([r for _, _, r in timed]) == run(records)


def test_the_simulators_duplicates_count_once_in_microdc_process() -> None:
    """5 % duplicate deliveries (`FaultConfig.duplicate`, the same bytes again): the requests
    counted equal the distinct request ids, and no node-minute is covered more than once."""
    fleet_ = load_fleet()
    config = SimConfig(
        start=T12, minutes=12, seed=3, rps_scale=0.05, faults=FaultConfig(duplicate=0.05)
    )
    envelopes = list(Simulator(fleet_, config))
    assert Counter(e.fault for e in envelopes)["duplicate"] > 100
    decode = decoder(RequestLog).decode
    ids = {decode(e.value).request_id for e in envelopes if e.topic.name == "mdc.request-log"}
    result = run_embedded(fleet_, from_envelopes(envelopes))
    assert "mdc.late-events" not in result.outputs
    energy = result.outputs["mdc.energy-minutes"]
    assert sum(row.requests for row in energy) == len(ids)
    assert max(row.coverage for row in energy) <= 1.0 + 1e-9
    clean = [e for e in envelopes if e.fault != "duplicate"]
    reference = run_embedded(fleet_, from_envelopes(clean)).outputs
    for topic in ("mdc.energy-minutes", "mdc.site-minutes", "mdc.slo-burn", "mdc.alerts"):
        got = [msgspec.json.encode(r) for r in result.outputs.get(topic, [])]
        want = [msgspec.json.encode(r) for r in reference.get(topic, [])]
        assert sorted(got) == sorted(want), topic


def test_run_result_counts_the_duplicates_it_dropped() -> None:
    fleet_ = load_fleet()
    config = SimConfig(
        start=T12, minutes=4, seed=5, rps_scale=0.05, faults=FaultConfig(duplicate=0.1)
    )
    envelopes = list(Simulator(fleet_, config))
    copies = sum(
        1 for e in envelopes if e.fault == "duplicate" and e.topic.name != "mdc.grid-intensity"
    )
    assert run_embedded(fleet_, from_envelopes(envelopes)).duplicates == copies > 0
