"""Stage 1: hand-computed node minutes, lateness, restarts and order-independence."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import NodeSample, RequestLog
from pipeline.contracts.outputs import LateEvent, NodeMinute, PartitionMark
from pipeline.contracts.partitioning import partition_for
from pipeline.fleet import Fleet, load_fleet
from pipeline.metrics.carbon import embodied_g_per_minute
from pipeline.metrics.energy import IDLE_SERVICE
from pipeline.stream.errors import UnknownReferenceError
from pipeline.stream.node_stage import NodeStage

T12 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PARTITIONS = 4


@cache
def fleet() -> Fleet:
    return load_fleet()


@cache
def partition_nodes(partition: int) -> list[str]:
    return sorted(
        n.node_id
        for n in fleet().nodes
        if not n.has_gpu and partition_for(n.node_id.encode(), PARTITIONS) == partition
    )


def sample(
    node_id: str, at: datetime, power_w: float, interval_s: float = 30.0, inlet_c: float = 22.0
) -> NodeSample:
    node = fleet().node_by_id[node_id]
    return NodeSample(
        observed_at=at,
        site_id=node.site_id,
        rack_id=node.rack_id,
        node_id=node_id,
        interval_s=interval_s,
        power_w=power_w,
        cpu_util=0.3,
        inlet_temp_c=inlet_c,
        outlet_temp_c=inlet_c + 10,
        net_rx_bytes=0,
        net_tx_bytes=0,
    )


def request(
    node_id: str,
    at: datetime,
    service: str,
    latency_ms: float,
    status: int = 200,
    team: str | None = None,
) -> RequestLog:
    node = fleet().node_by_id[node_id]
    team = team or fleet().service_by_name[service].team
    return RequestLog(
        finished_at=at,
        request_id=f"r-{at.timestamp()}-{service}",
        site_id=node.site_id,
        node_id=node_id,
        service=service,
        team=team,
        status=status,
        latency_ms=latency_ms,
        bytes_in=100,
        bytes_out=1000,
    )


def feed(stage: NodeStage, records: list[NodeSample | RequestLog], first: int = 0) -> None:
    """Apply records as a driver does: skip offsets the stage already applied, then feed."""
    for i, rec in enumerate(records, start=first):
        if isinstance(rec, NodeSample):
            if not stage.seen("node", i):
                stage.on_sample(rec, offset=i)
        elif not stage.seen("request", i):
            stage.on_request(rec, offset=i)


def rows_of(outputs: list[object]) -> list[NodeMinute]:
    return [o for o in outputs if isinstance(o, NodeMinute)]


def test_hand_computed_node_minute() -> None:
    node_id = partition_nodes(0)[0]  # idle 135 W, max 480 W, 1500 kg over 5 years
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(
        stage,
        [
            sample(node_id, T12 + timedelta(seconds=30), 200.0),
            request(node_id, T12 + timedelta(seconds=31), "checkout-api", 100.0),
            request(node_id, T12 + timedelta(seconds=40), "checkout-api", 301.0, status=503),
            request(node_id, T12 + timedelta(seconds=50), "fraud-score", 200.0),
            sample(node_id, T12 + timedelta(seconds=60), 200.0),
            # both streams' watermarks must pass 12:01 + 120 s lateness to close 12:00
            sample(node_id, T12 + timedelta(minutes=3, seconds=31), 150.0),
            request(node_id, T12 + timedelta(minutes=3, seconds=31), "auth", 10.0),
        ],
    )
    rows = [r for r in rows_of(stage.drain()) if r.node_id == node_id]
    assert [r.service for r in rows] == ["checkout-api", "fraud-score", IDLE_SERVICE]
    # E = 200 W * 60 s = 3.3333 Wh; idle = 135 W * 60 s = 2.25 Wh; dynamic 1.0833 Wh
    # busy: checkout 100 + 301 = 401 ms, fraud 200 ms -> shares 401/601 and 200/601
    dyn = 200 * 60 / 3600 - 2.25
    assert rows[0].it_energy_wh == pytest.approx(dyn * 401 / 601)
    assert rows[1].it_energy_wh == pytest.approx(dyn * 200 / 601)
    assert rows[2].it_energy_wh == pytest.approx(2.25)
    assert sum(r.it_energy_wh for r in rows) == pytest.approx(200 * 60 / 3600)
    assert all(r.node_energy_wh == pytest.approx(3.3333333) and r.coverage == 1.0 for r in rows)
    checkout = rows[0]
    assert (checkout.requests, checkout.errors_5xx, checkout.slow) == (2, 1, 1)  # 301 > 300 ms
    assert checkout.busy_ms == 401.0 and checkout.bytes_out == 2000
    assert checkout.latency is not None
    # embodied 1500 kg / 5 y per minute, shared like energy
    m = embodied_g_per_minute(1500, 5)
    assert sum(r.embodied_gco2e for r in rows) == pytest.approx(m)
    assert rows[0].embodied_gco2e == pytest.approx(m * rows[0].it_energy_wh / (200 * 60 / 3600))
    assert rows[0].key == f"2026-03-02T12:00:00Z|{node_id}|checkout-api"


def test_a_partition_reports_the_nodes_whose_records_it_saw_whatever_their_key_hash() -> None:
    """Stage 1 emits rows only for nodes it has records of - including a node murmur2 places on
    another partition (librdkafka's CRC32 does): silent nodes are stage 2's (issue 12)."""
    nodes = partition_nodes(0)
    elsewhere = partition_nodes(1)[0]
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(
        stage,
        [
            sample(nodes[0], T12 + timedelta(seconds=30), 200.0),
            sample(elsewhere, T12 + timedelta(seconds=30), 250.0),
            sample(nodes[0], T12 + timedelta(minutes=4), 200.0),
        ],
    )
    assert rows_of(stage.drain()) == []  # the request stream has not said anything yet
    stage.exclude(frozenset({"request"}))  # the driver stops waiting for it (its skew bound)
    rows = [r for r in rows_of(stage.drain()) if r.window_start == T12]
    assert {r.node_id for r in rows} == {nodes[0], elsewhere}
    assert all(r.service == IDLE_SERVICE and r.partition == 0 for r in rows)
    assert {r.node_id: r.node_energy_wh for r in rows} == pytest.approx(
        {nodes[0]: 200 * 30 / 3600, elsewhere: 250 * 30 / 3600}, abs=1e-6
    )


def test_records_for_a_closed_minute_are_late_events_and_not_counted() -> None:
    node_id = partition_nodes(0)[0]
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(
        stage,
        [
            sample(node_id, T12 + timedelta(seconds=30), 100.0),
            # event time = interval start 12:04:30; watermark 12:02:30 closes 12:00 and 12:01
            sample(node_id, T12 + timedelta(minutes=5), 100.0),
            # the request stream's own watermark: 12:04:40 - 120 s closes 12:00 and 12:01 too
            request(node_id, T12 + timedelta(minutes=4, seconds=40), "auth", 5.0),
            request(node_id, T12 + timedelta(seconds=45), "checkout-api", 50.0),
            sample(node_id, T12 + timedelta(minutes=1, seconds=10), 100.0),  # (12:00:40, 12:01:10]
        ],
    )
    out = stage.drain()
    late = [o for o in out if isinstance(o, LateEvent)]
    assert [e.reason for e in late] == [
        "request finished in a closed minute",
        "sample interval overlaps closed minutes",
    ]
    assert late[1].late_energy_wh == pytest.approx(100 * 30 / 3600)
    assert late[0].closed_before == T12 + timedelta(minutes=2)
    assert all(r.requests == 0 for r in rows_of(out))
    marks = [o for o in out if isinstance(o, PartitionMark)]
    assert marks[-1].closed_before == T12 + timedelta(minutes=2)


def test_unknown_node_is_an_error_for_the_dead_letter_topic() -> None:
    stage = NodeStage(fleet(), 0, PARTITIONS)
    rec = msgspec.structs.replace(sample(partition_nodes(0)[0], T12, 10.0), node_id="ghost-1")
    with pytest.raises(UnknownReferenceError, match="ghost-1"):
        stage.on_sample(rec)


def synthetic(seed: int, minutes: int = 8) -> list[NodeSample | RequestLog]:
    """In event-time order: two nodes of partition 0, 30 s samples at odd phases, requests."""
    rng = random.Random(seed)
    nodes = partition_nodes(0)[:2]
    out: list[tuple[datetime, NodeSample | RequestLog]] = []
    for node_id, phase in zip(nodes, (7, 19), strict=True):
        t = T12 + timedelta(seconds=phase)
        while t < T12 + timedelta(minutes=minutes):
            power = rng.uniform(140, 470)
            out.append((t - timedelta(seconds=30), sample(node_id, t, power)))
            t += timedelta(seconds=30)
    for n in range(rng.randint(20, 80)):
        at = T12 + timedelta(milliseconds=rng.randint(0, minutes * 60_000 - 1))
        service = rng.choice(["checkout-api", "fraud-score", "auth"])
        req = request(
            rng.choice(nodes),
            at,
            service,
            rng.uniform(1, 900),
            status=rng.choice([200, 200, 200, 503]),
        )
        out.append((at, msgspec.structs.replace(req, request_id=f"r{seed}-{n}")))
    out.sort(key=lambda pair: pair[0])
    return [rec for _, rec in out]


def event_ms(rec: NodeSample | RequestLog) -> float:
    if isinstance(rec, NodeSample):
        return (rec.observed_at.timestamp() - rec.interval_s) * 1000
    return rec.finished_at.timestamp() * 1000


def run(records: list[NodeSample | RequestLog], cut: list[int] | None = None) -> list[NodeMinute]:
    stage = NodeStage(fleet(), 0, PARTITIONS)
    outputs: list[object] = []
    for i, rec in enumerate(records):
        feed(stage, [rec], first=i)
        if cut is None or i in cut:
            outputs += stage.drain()
    stage.flush()
    outputs += stage.drain()
    assert not [o for o in outputs if isinstance(o, LateEvent)]
    return sorted(rows_of(outputs), key=lambda r: r.key)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shuffle=st.integers(0, 10_000),
    cuts=st.sets(st.integers(0, 400), max_size=30),
)
def test_same_records_reordered_within_lateness_and_batched_give_identical_minutes(
    seed: int, shuffle: int, cuts: set[int]
) -> None:
    records = synthetic(seed)
    rng = random.Random(shuffle)
    # Arrival = event time + a delay below the 120 s lateness: every record is then at most
    # 120 s behind the largest event time seen before it.
    delayed = sorted(records, key=lambda r: event_ms(r) + rng.uniform(0, 119_999))
    expected = run(records)
    assert run(delayed, sorted(cuts)) == expected


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_counts_and_energy_are_conserved(seed: int) -> None:
    records = synthetic(seed)
    rows = run(records)
    requests = [r for r in records if isinstance(r, RequestLog)]
    assert sum(r.requests for r in rows) == len(requests)
    assert sum(r.errors_5xx for r in rows) == sum(1 for r in requests if r.status >= 500)
    per_node_minute: Counter[tuple[str, datetime]] = Counter()
    for r in rows:
        per_node_minute[(r.node_id, r.window_start)] += 1
    for (node_id, minute), _ in per_node_minute.items():
        group = [r for r in rows if r.node_id == node_id and r.window_start == minute]
        assert sum(r.it_energy_wh for r in group) == pytest.approx(
            group[0].node_energy_wh, rel=1e-9, abs=1e-12
        )


def test_snapshot_restore_mid_stream_gives_the_same_outputs_and_skips_replays() -> None:
    records = synthetic(3)
    expected = run(records)
    first = NodeStage(fleet(), 0, PARTITIONS)
    half = len(records) // 2
    feed(first, records[:half])
    outputs = first.drain()
    restored = NodeStage.restore(fleet(), first.snapshot())
    # a replay of everything from an older committed offset: applied records are skipped
    feed(restored, records)
    restored.flush()
    outputs += restored.drain()
    assert sorted(rows_of(outputs), key=lambda r: r.key) == expected


def test_a_request_stream_minutes_behind_the_node_stream_is_not_late() -> None:
    """Per-source watermarks (issue 12): requests shipped 3 minutes behind the node samples
    hold closing back instead of becoming late, and give the minutes of the in-step order."""
    node_id = partition_nodes(0)[0]
    samples: list[NodeSample | RequestLog] = [
        sample(node_id, T12 + timedelta(seconds=30 * i), 150.0 + i) for i in range(1, 20)
    ]
    requests: list[NodeSample | RequestLog] = [
        request(node_id, T12 + timedelta(seconds=7 * i + 1), "checkout-api", 20.0 + i)
        for i in range(80)
    ]
    in_step = sorted(samples + requests, key=event_ms)
    behind = samples[:12] + sorted(samples[12:] + requests, key=event_ms)  # 6 min of samples first
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(stage, behind)
    assert not [o for o in stage.drain() if isinstance(o, LateEvent)]
    assert run(behind) == run(in_step)


def test_an_excluded_stream_is_judged_by_the_others_and_its_records_become_late() -> None:
    node_id = partition_nodes(0)[0]
    stage = NodeStage(fleet(), 0, PARTITIONS)
    feed(stage, [request(node_id, T12 + timedelta(seconds=5), "auth", 10.0)])
    feed(stage, [sample(node_id, T12 + timedelta(minutes=6), 100.0)], first=1)
    assert rows_of(stage.drain()) == []  # waits for the request stream (watermark 11:58:05)
    stage.exclude(frozenset({"request"}))
    out = stage.drain()  # the node watermark, 12:03:30, closes every minute before 12:03
    assert {r.window_start for r in rows_of(out)} == {T12}  # the only one with records
    assert [m.closed_before for m in out if isinstance(m, PartitionMark)] == [
        T12 + timedelta(minutes=3)
    ]
    feed(stage, [request(node_id, T12 + timedelta(minutes=1), "auth", 10.0)], first=2)
    late = [o for o in stage.drain() if isinstance(o, LateEvent)]
    assert [(e.reason, e.closed_before) for e in late] == [
        ("request finished in a closed minute", T12 + timedelta(minutes=3))
    ]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shuffle=st.integers(0, 10_000),
    picks=st.lists(st.booleans(), max_size=600),
)
def test_any_interleaving_of_the_two_streams_gives_identical_minutes(
    seed: int, shuffle: int, picks: list[bool]
) -> None:
    """Each stream in its own order (within lateness), the two interleaved in any way at all
    - one entirely before the other (a backfill), in bursts, alternating: the same minutes,
    and no late events (issue 12: a stream running behind the other was late wholesale)."""
    records = synthetic(seed)
    rng = random.Random(shuffle)
    streams = [
        sorted(
            (r for r in records if isinstance(r, kind)),
            key=lambda r: event_ms(r) + rng.uniform(0, 119_999),
        )
        for kind in (NodeSample, RequestLog)
    ]
    merged: list[NodeSample | RequestLog] = []
    it = iter(picks)
    while streams[0] or streams[1]:
        side = next(it, rng.random() < 0.5)
        if not streams[side]:
            side = not side
        merged.append(streams[side].pop(0))
    assert run(merged) == run(records)


def test_a_sample_with_power_alone_counts_its_energy_and_no_temperature() -> None:
    """A BMC-only node (issue 14): power, no utilisation, temperatures or network bytes."""
    node_id = partition_nodes(0)[0]
    node = fleet().node_by_id[node_id]
    wire = msgspec.json.encode(
        {
            "observed_at": "2026-03-02T12:00:30Z",
            "site_id": node.site_id,
            "rack_id": node.rack_id,
            "node_id": node_id,
            "interval_s": 30.0,
            "power_w": 200.0,
        }
    )
    bare = msgspec.json.decode(wire, type=NodeSample)
    assert (bare.cpu_util, bare.inlet_temp_c, bare.net_rx_bytes) == (None, None, None)
    full = NodeStage(fleet(), 0, PARTITIONS)
    lean = NodeStage(fleet(), 0, PARTITIONS)
    close = sample(node_id, T12 + timedelta(minutes=3, seconds=31), 150.0)
    close_request = request(node_id, T12 + timedelta(minutes=3, seconds=31), "auth", 10.0)
    first = sample(node_id, T12 + timedelta(seconds=30), 200.0)
    second = sample(node_id, T12 + timedelta(seconds=60), 200.0)
    feed(full, [first, second, close, close_request])
    feed(
        lean,
        [bare, msgspec.structs.replace(bare, observed_at=second.observed_at), close, close_request],
    )
    energy = {r.service: r.it_energy_wh for r in rows_of(full.drain()) if r.node_id == node_id}
    lean_rows = [r for r in rows_of(lean.drain()) if r.node_id == node_id]
    assert {r.service: r.it_energy_wh for r in lean_rows} == energy
    assert energy[IDLE_SERVICE] > 0
    assert {r.max_inlet_c for r in lean_rows} == {None}  # no temperature: none invented
