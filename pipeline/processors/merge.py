"""Deterministic merge of the topic-partitions one stage reads: records leave in (Kafka timestamp,
source rank, offset) order, and only when no other source can still deliver an earlier one.

Kafka orders records within a partition only. A worker catching up on a backlog fetches up to a
megabyte per partition per request, which is minutes of node telemetry but seconds of request logs:
fed as fetched, one topic's watermark would race ahead and make the other's records late. The
merger holds what arrives until every source has either a buffered record to compare with or is
caught up (consumed to its high watermark) - Kafka Streams' timestamp synchronisation, with a
fixed tie-break, so a replay of the same log releases the same sequence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol


class KafkaRecord(Protocol):
    """What the merger needs of a consumed record (aiokafka's ConsumerRecord has all of it)."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Merger:
    """Buffers per source (in rank order) and releases runs of records in merged order."""

    def __init__(self, sources: Iterable[str]) -> None:
        self.sources = tuple(sources)
        self._buffers: dict[str, deque[KafkaRecord]] = {s: deque() for s in self.sources}

    def add(self, source: str, records: Iterable[KafkaRecord]) -> None:
        self._buffers[source].extend(records)

    def buffered(self, source: str | None = None) -> int:
        if source is not None:
            return len(self._buffers[source])
        return sum(len(b) for b in self._buffers.values())

    def release(self, caught_up: Callable[[str], bool]) -> Iterator[tuple[str, list[KafkaRecord]]]:
        """Runs of (source, records) in merged order, while the order is certain.

        `caught_up(source)` says whether an empty source has nothing more in the broker right now;
        an empty source that is not caught up holds everything back.
        """
        buffers = self._buffers
        while True:
            heads: list[tuple[int, int, str]] = []
            for rank, source in enumerate(self.sources):
                buf = buffers[source]
                if buf:
                    heads.append((buf[0].timestamp, rank, source))
                elif not caught_up(source):
                    return
            if not heads:
                return
            heads.sort()
            _, rank, source = heads[0]
            buf = buffers[source]
            if len(heads) == 1:
                run = list(buf)
                buf.clear()
            else:
                bound, other_rank, _ = heads[1]
                run = []
                # Equal timestamps go to the lower rank first: the fixed tie-break.
                if rank < other_rank:
                    while buf and buf[0].timestamp <= bound:
                        run.append(buf.popleft())
                else:
                    while buf and buf[0].timestamp < bound:
                        run.append(buf.popleft())
            yield source, run
