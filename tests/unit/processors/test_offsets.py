"""`Offsets` against a fake consumer: where a stage partition reads, when it seeks, what it
commits. The fake behaves as Faust's aiokafka consumer does where it matters: an unassigned
partition fails `highwater` with an assertion and `position` / `seek_wait` with
`IllegalStateError`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError

from pipeline.processors.offsets import Offsets, ReadPositions
from pipeline.processors.web import WorkerMetrics

NODE, REQ = "t.mdc.node-telemetry", "t.mdc.request-log"


@dataclass(frozen=True)
class Rec:
    offset: int


def recs(*offsets: int) -> list[Rec]:
    return [Rec(o) for o in offsets]


class FakeConsumer:
    def __init__(self, *assigned: TopicPartition) -> None:
        self.fetch_seq = 0
        self.assigned = set(assigned)
        self.high: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.earliest: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_answer: bool | BaseException = True

    def _check(self, tp: TopicPartition) -> None:
        if tp not in self.assigned:
            raise IllegalStateError(f"Partition {tp} is not assigned")

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def highwater(self, tp: Any) -> int | None:
        assert tp in self.assigned, "Partition is not assigned"
        return self.high.get(tp)

    async def position(self, tp: Any) -> int | None:
        self._check(tp)
        return self.positions.get(tp)

    async def seek_wait(self, partitions: Mapping[Any, int]) -> None:
        for tp, offset in partitions.items():
            self._check(tp)
            self.positions[tp] = offset
            self.seeks.append((tp, offset))

    async def earliest_offsets(self, *partitions: Any) -> Mapping[Any, int]:
        return {tp: self.earliest.get(tp, 0) for tp in partitions}

    async def commit_positions(self, offsets: Mapping[Any, int]) -> bool:
        if isinstance(self.commit_answer, BaseException):
            raise self.commit_answer
        self.commits.append(dict(offsets))
        return self.commit_answer


def setup(
    *, assigned: bool = True, **kwargs: Any
) -> tuple[Offsets, FakeConsumer, ReadPositions, WorkerMetrics]:
    pos = ReadPositions(3, {"node": NODE, "request": REQ})
    consumer = FakeConsumer(*([pos.tp("node"), pos.tp("request")] if assigned else []))
    metrics = WorkerMetrics()
    return Offsets(lambda: consumer, "stage-one", metrics, **kwargs), consumer, pos, metrics


def counter(metrics: WorkerMetrics, name: str, topic: str) -> float:
    return metrics.registry.get_sample_value(f"microdc_{name}_total", {"topic": topic}) or 0.0


def test_a_partition_starts_after_its_snapshot_or_at_the_log_start() -> None:
    offsets, consumer, pos, _ = setup()
    consumer.earliest[pos.tp("request")] = 7  # retention removed 0..6
    asyncio.run(offsets.load(pos, {"node": 41}))
    assert pos.next_offset == {"node": 42, "request": 7}


def test_records_the_state_holds_are_skipped_and_counted_as_replayed() -> None:
    offsets, _, pos, metrics = setup()
    pos.next_offset.update(node=42, request=0)
    taken = asyncio.run(offsets.accept(pos, "node", recs(40, 41, 42, 43), seq=1))
    assert [r.offset for r in taken] == [42, 43]
    assert pos.next_offset["node"] == 44
    assert asyncio.run(offsets.accept(pos, "node", recs(42, 43), seq=2)) == []
    assert counter(metrics, "replayed", NODE) == 4
    assert asyncio.run(offsets.accept(pos, "node", [], seq=3)) == []


def test_a_batch_past_the_state_seeks_back_and_waits_for_the_seek() -> None:
    offsets, consumer, pos, metrics = setup()
    pos.next_offset.update(node=10, request=0)
    consumer.fetch_seq = 5  # the fetch in flight when the seek completes
    assert asyncio.run(offsets.accept(pos, "node", recs(20, 21), seq=4)) == []
    assert consumer.seeks == [(pos.tp("node"), 10)]
    assert pos.sought["node"] == (10, 5)
    assert counter(metrics, "seeks", NODE) == 1
    # fetched before the seek took effect (seq <= 5): dropped again, no second seek
    assert asyncio.run(offsets.accept(pos, "node", recs(22), seq=5)) == []
    assert len(consumer.seeks) == 1
    # the seek took effect and the data continues
    assert [r.offset for r in asyncio.run(offsets.accept(pos, "node", recs(10, 11), 6))] == [10, 11]
    assert "node" not in pos.sought and pos.next_offset["node"] == 12


def test_a_gap_after_the_seek_is_the_broker_saying_nothing_is_in_between() -> None:
    offsets, consumer, pos, _ = setup()
    pos.next_offset.update(node=10, request=0)
    consumer.fetch_seq = 2
    asyncio.run(offsets.accept(pos, "node", recs(15, 16), seq=1))
    taken = asyncio.run(offsets.accept(pos, "node", recs(15, 16), seq=3))
    assert [r.offset for r in taken] == [15, 16]
    assert pos.next_offset["node"] == 17 and consumer.seeks == [(pos.tp("node"), 10)]


def test_a_seek_on_a_partition_revoked_meanwhile_is_left_to_its_new_owner() -> None:
    offsets, consumer, pos, _ = setup(assigned=False)
    pos.next_offset.update(node=10, request=0)
    assert asyncio.run(offsets.accept(pos, "node", recs(20), seq=1)) == []
    assert consumer.seeks == [] and "node" not in pos.sought
    assert pos.next_offset["node"] == 10


def test_caught_up_and_lag_read_the_high_watermark_and_skip_unassigned_partitions() -> None:
    offsets, consumer, pos, _ = setup()
    pos.next_offset.update(node=12, request=5)
    consumer.high[pos.tp("node")] = 12
    consumer.high[pos.tp("request")] = 9
    caught_up = offsets.caught_up(pos)
    assert caught_up("node") and not caught_up("request")
    assert offsets.lag(pos) == {NODE: 0, REQ: 4}
    consumer.assigned.discard(pos.tp("request"))
    assert not offsets.caught_up(pos)("request")
    assert offsets.lag(pos) == {NODE: 0}
    assert offsets.assignment() == {pos.tp("node")}


def test_a_source_stuck_behind_its_high_watermark_is_sought_where_the_state_continues() -> None:
    offsets, consumer, pos, metrics = setup(stuck_after_s=0.0)
    pos.next_offset.update(node=12, request=5)
    consumer.high.update({pos.tp("node"): 12, pos.tp("request"): 9})
    consumer.positions.update({pos.tp("node"): 12, pos.tp("request"): 9})  # 5..8 were dropped
    asyncio.run(offsets.unstick([pos]))
    assert consumer.seeks == [(pos.tp("request"), 5)]  # node is caught up: left alone
    assert counter(metrics, "seeks", REQ) == 1
    consumer.assigned.clear()  # revoked meanwhile: position fails, nothing breaks
    asyncio.run(offsets.unstick([pos]))
    assert len(consumer.seeks) == 1


def test_a_source_that_delivered_recently_is_not_checked() -> None:
    offsets, consumer, pos, _ = setup(stuck_after_s=60.0)
    pos.next_offset.update(node=0, request=0)
    consumer.high[pos.tp("node")] = 10
    consumer.positions[pos.tp("node")] = 10
    asyncio.run(offsets.unstick([pos]))
    assert consumer.seeks == []


def test_positions_are_committed_once_their_snapshot_is_confirmed() -> None:
    offsets, consumer, _, _ = setup(commit_every_s=0.0)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        offsets.saved(fut, {(NODE, 3): 42, (REQ, 3): 7})
        await offsets.commit()
        assert consumer.commits == []  # the snapshot is not in the changelog yet
        fut.set_result(None)
        await asyncio.sleep(0)
        await offsets.commit()
        assert consumer.commits == [{TopicPartition(NODE, 3): 42, TopicPartition(REQ, 3): 7}]
        await offsets.commit()
        assert len(consumer.commits) == 1  # nothing new

        older: asyncio.Future[None] = loop.create_future()
        offsets.saved(older, {(NODE, 3): 40})  # confirmed late: never moves a position back
        older.set_result(None)
        failed: asyncio.Future[None] = loop.create_future()
        offsets.saved(failed, {(NODE, 3): 50})
        failed.set_exception(KafkaConnectionError())
        await asyncio.sleep(0)
        assert offsets.confirmed[(NODE, 3)] == 42

        before: asyncio.Future[None] = loop.create_future()
        offsets.saved(before, {(NODE, 3): 60})
        offsets.reset()  # a rebalance: what the old assignment confirms no longer counts
        before.set_result(None)
        await asyncio.sleep(0)
        assert offsets.confirmed == {} and offsets.committed == {}

    asyncio.run(scenario())


@pytest.mark.parametrize("answer", [False, KafkaConnectionError()], ids=["refused", "raised"])
def test_a_failed_commit_is_retried(answer: bool | BaseException) -> None:
    offsets, consumer, _, _ = setup(commit_every_s=0.0)

    async def scenario() -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        offsets.saved(fut, {(NODE, 3): 42})
        fut.set_result(None)
        await asyncio.sleep(0)
        consumer.commit_answer = answer
        await offsets.commit()
        assert offsets.committed == {}
        consumer.commit_answer = True
        await offsets.commit()
        assert offsets.committed == {(NODE, 3): 42}

    asyncio.run(scenario())


def test_commits_wait_for_their_interval() -> None:
    offsets, consumer, _, _ = setup(commit_every_s=3600.0)

    async def scenario() -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        offsets.saved(fut, {(NODE, 3): 42})
        fut.set_result(None)
        await asyncio.sleep(0)
        await offsets.commit()

    asyncio.run(scenario())
    assert consumer.commits == []
