"""The worker's skew rule (`after_batch` of both stage agents), without Kafka: a source that is
behind and has not moved for `max_source_skew_s` of wall clock stops holding closing back, and
holds it again once it moves. The agents are built without a Faust app (`__new__`): the rule
uses only the run, the stage and the clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pipeline.contracts.outputs import PartitionMark
from pipeline.processors import agents
from pipeline.processors.agents import PartitionRun, Source, StageOneAgent, StageTwoAgent
from pipeline.stream.node_stage import NodeStage
from pipeline.stream.site_stage import SiteStage
from tests.unit.stream.test_node_stage import (
    PARTITIONS,
    T12,
    feed,
    fleet,
    partition_nodes,
    request,
    rows_of,
    sample,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(agents.time, "monotonic", fake)
    return fake


def agent_of(cls: type[Any], skew_s: float) -> Any:
    agent = cls.__new__(cls)
    agent.max_source_skew_s = skew_s
    agent._warned = set()
    return agent


def test_a_silent_request_stream_is_waited_for_only_for_the_bound(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    stage = NodeStage(fleet(), 0, PARTITIONS)
    sources = (Source("node", "t.node"), Source("request", "t.request"))
    run = PartitionRun(0, stage, sources)
    agent = agent_of(StageOneAgent, 5.0)
    node = partition_nodes(0)[0]
    feed(stage, [sample(node, T12 + timedelta(seconds=30 * i), 200.0) for i in range(1, 12)])
    agent.after_batch(run)
    clock.now += 4.0
    agent.after_batch(run)
    assert stage.excluded == frozenset() and rows_of(stage.drain()) == []
    clock.now += 2.0  # 6 s without a request record while telemetry is at 12:05
    agent.after_batch(run)
    assert stage.excluded == frozenset({"request"})
    assert rows_of(stage.drain())  # the minutes before the node watermark closed
    assert "t.request[0] has sent nothing" in caplog.text
    # the stream comes back: it is waited for again at once
    feed(stage, [request(node, T12 + timedelta(minutes=5), "auth", 10.0)], first=100)
    agent.after_batch(run)
    assert stage.excluded == frozenset()


def test_a_stream_behind_but_moving_is_never_given_up(clock: Clock) -> None:
    stage = NodeStage(fleet(), 0, PARTITIONS)
    run = PartitionRun(0, stage, (Source("node", "n"), Source("request", "r")))
    agent = agent_of(StageOneAgent, 5.0)
    node = partition_nodes(0)[0]
    for i in range(1, 20):  # requests 3 minutes behind the telemetry, a batch every 2 s
        at = T12 + timedelta(seconds=30 * i)
        feed(stage, [sample(node, at + timedelta(minutes=3), 200.0)], first=2 * i)
        feed(stage, [request(node, at, "auth", 10.0)], first=2 * i + 1)
        clock.now += 2.0
        agent.after_batch(run)
        assert stage.excluded == frozenset()


def test_stage_two_stops_waiting_for_a_stage_one_partition_that_never_marks(
    clock: Clock,
) -> None:
    stage = SiteStage(fleet())
    run = PartitionRun(0, stage, (Source("node-minutes", "t.nm"),))
    agent = agent_of(StageTwoAgent, 5.0)
    before = T12 + timedelta(minutes=1)
    stage.on_stage_one(
        [PartitionMark(partition=p, partitions=4, closed_before=before) for p in (0, 1, 2)]
    )
    agent.after_batch(run)
    assert stage.excluded_partitions == frozenset()
    clock.now += 6.0
    agent.after_batch(run)
    assert stage.excluded_partitions == frozenset({3})


def test_partitions_that_waited_together_are_not_dropped_when_one_moves_first(
    clock: Clock,
) -> None:
    """Found end to end: every request stream quiet at once held all four stage-1 partitions
    back; when stage 1 gave up on them, partitions 0 and 1 marked a few ms before 2 and 3, and
    stage 2 (their marks unmoved for longer than the bound) dropped 2 and 3 at once, with
    their node minutes. The bound now counts from when a mark fell behind."""
    stage = SiteStage(fleet())
    run = PartitionRun(0, stage, (Source("node-minutes", "t.nm"),))
    agent = agent_of(StageTwoAgent, 5.0)

    def mark(partitions: tuple[int, ...], minutes: int) -> None:
        at = T12 + timedelta(minutes=minutes)
        stage.on_stage_one(
            [PartitionMark(partition=p, partitions=4, closed_before=at) for p in partitions]
        )

    mark((0, 1, 2, 3), 1)
    agent.after_batch(run)
    clock.now += 60.0  # all four waited together, far longer than the bound
    agent.after_batch(run)
    mark((0, 1), 12)  # two of them move first
    agent.after_batch(run)
    assert stage.excluded_partitions == frozenset()
    clock.now += 0.02
    mark((2, 3), 12)
    agent.after_batch(run)
    assert stage.excluded_partitions == frozenset()
    mark((0, 1), 13)  # 2 and 3 behind again: given up only after the bound
    agent.after_batch(run)
    clock.now += 4.0
    agent.after_batch(run)
    assert stage.excluded_partitions == frozenset()
    clock.now += 2.0
    agent.after_batch(run)
    assert stage.excluded_partitions == frozenset({2, 3})
