"""A node's records on any partition (issue 12): unkeyed round-robin producers, random
partitioners, a key whose partition changes over time. Stage 1 closes what each partition saw;
stage 2 merges a node whose minute several partitions reported into the rows one partition would
have closed, so every output equals the project's own partitioning, value for value.
"""

from __future__ import annotations

import random
import zlib
from datetime import timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.outputs import EnergyMinute, NodeMinute, PartitionMark
from pipeline.contracts.topics import NODE_TELEMETRY, REQUEST_LOG
from pipeline.embedded.driver import EmbeddedPipeline, Message, from_envelopes, run_embedded
from pipeline.fleet import load_fleet
from pipeline.metrics.carbon import embodied_g_per_minute
from pipeline.simulate import SimConfig, Simulator
from pipeline.stream.node_stage import NodeStage, merge_node_minutes
from pipeline.stream.site_stage import SiteStage
from tests.unit.stream.test_node_stage import (
    T12,
    feed,
    fleet,
    partition_nodes,
    request,
    sample,
)

OUTPUTS = ("mdc.energy-minutes", "mdc.site-minutes", "mdc.slo-burn", "mdc.alerts")


def handoff(stage: NodeStage) -> list[NodeMinute | PartitionMark]:
    """Stage 1's closed rows and marks, as the driver hands them to stage 2."""
    return [o for o in stage.drain() if isinstance(o, NodeMinute | PartitionMark)]


def energy_rows(partitioned: list[list[Any]]) -> list[EnergyMinute]:
    """Stage 1 on each partition's records, stage 2 over all of them: the closed 12:00 rows."""
    site = SiteStage(fleet(), facility_wait_s=0.0, grid_wait_s=0.0)
    for p, records in enumerate(partitioned):
        stage = NodeStage(fleet(), p, len(partitioned))
        feed(stage, records)
        stage.flush()
        site.on_stage_one(handoff(stage))
    site.flush()
    return [o for o in site.drain() if isinstance(o, EnergyMinute) and o.window_start == T12]


def test_a_node_split_over_two_partitions_gives_the_rows_of_one() -> None:
    """Node n's 12:00 minute: samples 12:00:00-30 at 300 W on partition 0, 12:00:30-60 at 200 W
    on partition 1; two auth requests (10 ms, 30 ms) on 0, one checkout (60 ms) on 1. One
    partition would have: 2.5 + 1.667 = 4.167 Wh, coverage 1.0, busy 40 ms auth, 60 ms checkout
    (auth 40 %, checkout 60 % of the dynamic energy), the hottest inlet of both."""
    node_id = partition_nodes(0)[0]
    at = T12 + timedelta(seconds=30)
    part_0 = [
        sample(node_id, at, 300.0, inlet_c=24.0),
        request(node_id, T12 + timedelta(seconds=10), "auth", 10.0),
        request(node_id, T12 + timedelta(seconds=20), "auth", 30.0),
    ]
    part_1 = [
        sample(node_id, at + timedelta(seconds=30), 200.0, inlet_c=26.0),
        request(node_id, T12 + timedelta(seconds=50), "checkout-api", 60.0, status=503),
    ]
    split = energy_rows([part_0, part_1])
    whole = energy_rows([part_0 + part_1, []])
    assert split == whole
    mine = {r.service: r for r in split if r.node_id == node_id}
    assert set(mine) == {"auth", "checkout-api", "__idle__"}
    node = fleet().node_by_id[node_id]
    total_wh = 300.0 * 30 / 3600 + 200.0 * 30 / 3600
    dynamic_wh = total_wh - node.idle_power_w / 60
    assert abs(sum(r.it_energy_wh for r in mine.values()) - total_wh) < 1e-6  # whole µWh
    assert abs(mine["auth"].it_energy_wh - 0.4 * dynamic_wh) < 1e-6
    assert abs(mine["checkout-api"].it_energy_wh - 0.6 * dynamic_wh) < 1e-6
    assert (mine["auth"].requests, mine["checkout-api"].errors_5xx) == (2, 1)
    assert all(r.coverage == 1.0 for r in mine.values())
    # the stage-1 rows themselves: merged, they are the single partition's (inlet included)
    by_partition = [node_rows(records, p, node_id) for p, records in enumerate((part_0, part_1))]
    stamp = "2026-03-02T12:00:00Z"
    merged = merge_node_minutes(node, by_partition, T12, stamp, embodied(node_id), partition=0)
    assert merged == node_rows(part_0 + part_1, 0, node_id)
    assert {r.max_inlet_c for r in merged} == {26.0}


def node_rows(records: list[Any], partition: int, node_id: str) -> list[NodeMinute]:
    stage = NodeStage(fleet(), partition, 2)
    feed(stage, records)
    stage.flush()
    return [o for o in stage.drain() if isinstance(o, NodeMinute) and o.node_id == node_id]


def embodied(node_id: str) -> float:
    node = fleet().node_by_id[node_id]
    return embodied_g_per_minute(node.embodied_kgco2e, node.lifetime_years)


def test_the_merge_is_noted_for_the_drivers_warning_and_metric() -> None:
    node_id = partition_nodes(0)[0]
    site = SiteStage(fleet(), facility_wait_s=0.0, grid_wait_s=0.0)
    for p, at in ((0, 30), (1, 60)):
        assert site.split_nodes == {}  # the minute closes once both partitions marked it
        stage = NodeStage(fleet(), p, 2)
        feed(stage, [sample(node_id, T12 + timedelta(seconds=at), 250.0)])
        stage.flush()
        site.on_stage_one(handoff(stage))
    assert site.split_nodes == {node_id: {0, 1}} and site.split_node_minutes == 1


def test_a_re_emitted_row_of_one_partition_is_not_a_split() -> None:
    """A stage-1 failover re-emits identical rows: they count once, and are no merge."""
    node_id = partition_nodes(0)[0]
    stage = NodeStage(fleet(), 0, 1)
    feed(stage, [sample(node_id, T12 + timedelta(seconds=30), 250.0)])
    stage.flush()
    rows = handoff(stage)
    once = SiteStage(fleet(), facility_wait_s=0.0, grid_wait_s=0.0)
    once.on_stage_one(rows)
    once.flush()
    twice = SiteStage(fleet(), facility_wait_s=0.0, grid_wait_s=0.0)
    twice.on_stage_one(rows + rows)
    twice.flush()
    assert twice.drain() == once.drain() and twice.split_node_minutes == 0


def simulated(seed: int) -> list[Message]:
    config = SimConfig(start=T12, minutes=6, seed=seed, rps_scale=0.02)
    return list(from_envelopes(Simulator(load_fleet(), config)))


def encoded(outputs: dict[str, list[Any]]) -> dict[str, list[bytes]]:
    return {t: sorted(msgspec.json.encode(r) for r in outputs.get(t, [])) for t in OUTPUTS}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 3), choice=st.integers(0, 2**32), mode=st.sampled_from(range(3)))
def test_any_partitioner_gives_the_outputs_of_the_projects_own(
    seed: int, choice: int, mode: int
) -> None:
    """Each node-telemetry and request-log record goes where a foreign producer puts it:
    anywhere at random (an unkeyed producer), round-robin, or by key with a mapping that
    changes every simulated minute (a repartitioned topic, a producer restarted with another
    partitioner). Every output equals the project's murmur2 partitioning."""
    fleet_ = load_fleet()
    messages = simulated(seed)
    reference = run_embedded(fleet_, messages)
    rng = random.Random(choice)
    salt: dict[int, bytes] = {}
    pipeline = EmbeddedPipeline(fleet_)
    moved = 0
    for i, (spec, key, value) in enumerate(messages):
        partition = None
        if spec in (NODE_TELEMETRY, REQUEST_LOG):
            if mode == 0:
                partition = rng.randrange(spec.partitions)
            elif mode == 1:
                partition = i % spec.partitions
            else:
                minute = i * 6 // len(messages)
                salted = (key or b"") + salt.setdefault(minute, rng.randbytes(4))
                partition = zlib.crc32(salted) % spec.partitions
            moved += 1
        pipeline.feed_one(spec, key, value, partition)
    result = pipeline.close()
    assert moved > 1000
    assert result.internal_errors == 0 and "mdc.late-events" not in result.outputs
    assert encoded(result.outputs) == encoded(reference.outputs)
