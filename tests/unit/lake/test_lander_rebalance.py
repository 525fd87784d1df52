"""The lander's ownership across a rebalance, driven step by step (no broker: the consumer is a
recorder of seeks and commits). A broker restart once landed a segment twice: a revocation
arrived while `_land` waited for the previous segment, the next owner recovered its position
from the lake, and the waiting draft was then landed anyway, so its rows were read and landed
again by the new owner."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from pipeline.lake import Lake, RollPolicy
from pipeline.lake.land import Lander
from tests.unit.lake.test_landing import REQUESTS, T0, TOPIC, read_rows, request


@dataclass
class Rec:
    offset: int
    timestamp: int
    value: bytes


class RecordingConsumer:
    """What `Lander` asks of its consumer during assignment and landing."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []

    async def committed(self, tp: TopicPartition) -> int | None:
        return None

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seeks.append((tp, 0))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


class GatedLake(Lake):
    """A lake whose first segment write waits until the test opens the gate."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.writes = 0

    def write_segment(self, dataset: Any, segment: Any) -> list[str]:
        self.writes += 1
        if self.writes == 1:
            assert self.gate.wait(10), "the test never opened the gate"
        return super().write_segment(dataset, segment)


def records(first: int, n: int) -> list[Rec]:
    return [
        Rec(i, int((T0 + timedelta(seconds=i)).timestamp() * 1000), request(i))
        for i in range(first, first + n)
    ]


def landed_offsets(lake: Lake) -> list[int]:
    offsets: list[int] = read_rows(lake, REQUESTS).column("_offset").to_pylist()
    return sorted(offsets)


def test_a_draft_waiting_when_its_partition_is_revoked_is_not_landed(tmp_path: Path) -> None:
    async def scenario() -> tuple[int | None, list[int], list[tuple[TopicPartition, int]]]:
        lake = GatedLake(tmp_path / "lake")
        lander = Lander("127.0.0.1:9", lake, policy=RollPolicy(max_rows=10), datasets=[REQUESTS])
        consumer = RecordingConsumer()
        lander._consumer = consumer  # type: ignore[assignment]
        tp = TopicPartition(TOPIC, 0)
        await lander._assigned([tp])
        # 25 records: offsets 0-9 start landing (held at the gate), 10-19 wait for them.
        applying = asyncio.create_task(lander._apply({tp: records(0, 25)}))
        while lake.writes == 0 or not lander.owned[tp].landing:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        old = lander.owned[tp]
        revoking = asyncio.create_task(lander._revoked([tp]))
        await asyncio.sleep(0.05)
        lake.gate.set()
        await revoking
        await lander._assigned([tp])  # the same lander gets the partition back
        await applying
        for owner in (old, lander.owned[tp]):  # let every landing started so far finish
            if owner.landing is not None:
                await owner.landing
        return lake.recover(REQUESTS, TOPIC, 0), landed_offsets(lake), consumer.seeks

    start, offsets, seeks = asyncio.run(scenario())
    # The partition is read again from offset 10: nothing after offset 9 may be in the lake yet,
    # or it lands twice.
    assert seeks[-1][1] == 10
    assert offsets == list(range(10))
    assert start == 10
