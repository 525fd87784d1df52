"""Where each stage partition reads, and the seeks and commits that keep Kafka in line with it.

A stage's snapshot says where its state continues: the last offset applied per source. Where the
consumer fetches from is Faust's business (the committed offset, the log start, a fetch that
raced a rebalance) and need not agree. `Offsets` reconciles the two:

- `load` starts a partition where its snapshot continues (the log start for a source it has
  never read);
- `accept` takes from a fetched batch only the records that continue a source - records the
  state already holds are skipped (counted as replayed), a batch that starts past the wanted
  offset makes it seek back, and a batch fetched *after* that seek completed that still starts
  past it is the broker saying nothing exists in between (retention, transaction markers);
- `unstick` seeks a source that is behind its high watermark, has delivered nothing for
  `stuck_after_s` and whose consumer position moved on (a fetch dropped in a rebalance: a gap
  at the end of a topic that `accept` never sees);
- `saved` and `commit`: a snapshot's positions become the group's committed offsets once its
  changelog write is confirmed, at most every `commit_every_s`. Commits are advisory - `load`
  and `accept` decide where to read - so a failed one is retried, never fatal.

Everything here talks to the consumer through `Consumer` (Faust's, via `pipeline.compat`, in a
worker; a fake in the unit tests) and only catches `compat.CONSUMER_GONE`: the errors that mean
"this partition was revoked meanwhile" or "the consumer is stopping".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka import TopicPartition

from pipeline import compat
from pipeline.processors.web import WorkerMetrics

log = logging.getLogger(__name__)

#: Positions are committed at most this often.
COMMIT_EVERY_S = 5.0
#: A source behind its high watermark that delivered nothing for this long is checked.
STUCK_AFTER_S = 3.0


class Consumer(Protocol):
    """The part of the worker's consumer (`processors.transport.BulkConsumer`) used here."""

    #: Sequence number of the latest fetch started (a batch carries the one it was fetched in).
    fetch_seq: int

    def assignment(self) -> set[Any]: ...

    def highwater(self, tp: Any) -> int | None: ...

    async def position(self, tp: Any) -> int | None: ...

    async def seek_wait(self, partitions: Mapping[Any, int]) -> None: ...

    async def earliest_offsets(self, *partitions: Any) -> Mapping[Any, int]: ...

    async def commit_positions(self, offsets: Mapping[Any, int]) -> bool: ...


class Record(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Record)


@dataclass
class ReadPositions:
    """The read state of one stage partition, per source name."""

    partition: int
    #: Source name -> its topic.
    topics: Mapping[str, str]
    #: Next offset wanted from the consumer.
    next_offset: dict[str, int] = field(default_factory=dict)
    #: (offset sought to, consumer fetch_seq when that seek had completed).
    sought: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: When (monotonic) the source last delivered records or was caught up.
    progress_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = time.monotonic()
        for name in self.topics:
            self.progress_at.setdefault(name, now)

    def tp(self, source: str) -> TopicPartition:
        return TopicPartition(self.topics[source], self.partition)


class Offsets:
    """The offset, seek and commit logic of one stage agent (see the module doc)."""

    def __init__(
        self,
        consumer: Callable[[], Consumer],
        stage_name: str,
        metrics: WorkerMetrics,
        *,
        commit_every_s: float = COMMIT_EVERY_S,
        stuck_after_s: float = STUCK_AFTER_S,
    ) -> None:
        #: The consumer is looked up on each use (Faust creates it when the app starts).
        self._consumer = consumer
        self.stage_name = stage_name
        self.metrics = metrics
        self.commit_every_s = commit_every_s
        self.stuck_after_s = stuck_after_s
        #: Positions whose snapshot is confirmed, and what was last committed, per (topic, p).
        self.confirmed: dict[tuple[str, int], int] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        #: Bumped by `reset`: a snapshot confirmed after a rebalance no longer counts.
        self._epoch = 0

    # -- reading -------------------------------------------------------------------------------
    def assignment(self) -> set[Any]:
        """The partitions the consumer holds now (none before it started or once it stopped)."""
        try:
            return set(self._consumer().assignment())
        except compat.CONSUMER_GONE:
            return set()

    async def load(self, pos: ReadPositions, applied: Mapping[str, int]) -> None:
        """Start `pos` after the offsets its snapshot applied; a source with none starts at
        the log start."""
        unknown = [name for name in pos.topics if name not in applied]
        if unknown:
            tps = [pos.tp(name) for name in unknown]
            earliest = await self._consumer().earliest_offsets(*tps)
            for name, tp in zip(unknown, tps, strict=True):
                pos.next_offset[name] = int(earliest.get(tp) or 0)
        for name in pos.topics:
            if name in applied:
                pos.next_offset[name] = applied[name] + 1

    async def accept(self, pos: ReadPositions, source: str, records: list[R], seq: int) -> list[R]:
        """The records of a batch (fetched in fetch `seq`) that continue `source`, in order;
        seeks when the batch starts past them. Moves the source's position past what it
        returns."""
        topic = pos.topics[source]
        want = pos.next_offset[source]
        if not records:
            return []
        if records[-1].offset < want:
            self.metrics.replayed.labels(topic).inc(len(records))
            return []
        if records[0].offset < want:
            skip = next(i for i, r in enumerate(records) if r.offset >= want)
            self.metrics.replayed.labels(topic).inc(skip)
            records = records[skip:]
        first = records[0].offset
        if first > want:
            sought = pos.sought.get(source)
            if sought is not None and sought[0] == want and seq <= sought[1]:
                return []  # fetched before our seek took effect: dropped, it comes again
            if sought is None or sought[0] != want:
                log.info(
                    "%s: seek %s[%d] to %d (fetched from %d)",
                    self.stage_name,
                    topic,
                    pos.partition,
                    want,
                    first,
                )
                await self._seek(pos, source, want)
                return []
            log.warning(
                "%s: %s[%d] continues at %d, not %d: nothing in between",
                self.stage_name,
                topic,
                pos.partition,
                first,
                want,
            )
        pos.sought.pop(source, None)
        pos.progress_at[source] = time.monotonic()
        pos.next_offset[source] = records[-1].offset + 1
        return records

    def highwater(self, pos: ReadPositions, source: str) -> int | None:
        """The source's high watermark as last fetched; None when unknown or not assigned."""
        try:
            return self._consumer().highwater(pos.tp(source))
        except compat.NOT_ASSIGNED:
            return None

    def caught_up(self, pos: ReadPositions) -> Callable[[str], bool]:
        """Whether a source of `pos` has nothing more to read (as of the last fetch)."""

        def caught_up(source: str) -> bool:
            end = self.highwater(pos, source)
            return end is not None and pos.next_offset[source] >= end

        return caught_up

    def lag(self, pos: ReadPositions) -> dict[str, int]:
        """Records left to read per topic (topics whose high watermark is known)."""
        out: dict[str, int] = {}
        for source, topic in pos.topics.items():
            end = self.highwater(pos, source)
            if end is not None:
                out[topic] = max(0, end - pos.next_offset[source])
        return out

    async def unstick(self, runs: Iterable[ReadPositions]) -> None:
        """Seek every source that is stuck behind its high watermark (see the module doc)."""
        now = time.monotonic()
        consumer = self._consumer()
        for pos in runs:
            caught_up = self.caught_up(pos)
            for source, topic in pos.topics.items():
                if caught_up(source):
                    pos.progress_at[source] = now
                if now - pos.progress_at[source] < self.stuck_after_s:
                    continue
                pos.progress_at[source] = now
                want = pos.next_offset[source]
                try:
                    position = await consumer.position(pos.tp(source))
                except compat.CONSUMER_GONE as exc:
                    log.info(
                        "%s: position of %s[%d]: %r", self.stage_name, topic, pos.partition, exc
                    )
                    continue
                if position is not None and position != want:
                    log.warning(
                        "%s: %s[%d] consumer at %s, state continues at %d: seeking",
                        self.stage_name,
                        topic,
                        pos.partition,
                        position,
                        want,
                    )
                    await self._seek(pos, source, want)

    async def _seek(self, pos: ReadPositions, source: str, offset: int) -> None:
        topic = pos.topics[source]
        self.metrics.seeks.labels(topic).inc()
        consumer = self._consumer()
        try:
            await consumer.seek_wait({pos.tp(source): offset})
        except compat.CONSUMER_GONE as exc:  # revoked meanwhile: the new owner reads it
            log.warning("%s: seek %s[%d] failed: %r", self.stage_name, topic, pos.partition, exc)
            return
        pos.sought[source] = (offset, consumer.fetch_seq)

    # -- committing ----------------------------------------------------------------------------
    def saved(self, fut: Any, positions: Mapping[tuple[str, int], int]) -> None:
        """A snapshot covering `positions` ((topic, partition) -> next offset) is being written;
        `fut` resolves when the changelog has it. Confirmed positions are committed by
        `commit`, unless the assignment was reset meanwhile."""
        epoch = self._epoch

        def confirmed(_: Any) -> None:
            if epoch != self._epoch or fut.cancelled() or fut.exception() is not None:
                return
            for key, offset in positions.items():
                if offset > self.confirmed.get(key, -1):
                    self.confirmed[key] = offset

        fut.add_done_callback(confirmed)

    async def commit(self) -> None:
        """Commit the confirmed positions not committed yet (at most every `commit_every_s`)."""
        if time.monotonic() - self._last_commit < self.commit_every_s:
            return
        self._last_commit = time.monotonic()
        todo = {
            TopicPartition(topic, p): offset
            for (topic, p), offset in self.confirmed.items()
            if self.committed.get((topic, p)) != offset
        }
        if not todo:
            return
        try:
            done = await self._consumer().commit_positions(todo)
        except compat.CONSUMER_GONE as exc:
            log.warning("%s: offset commit failed (%r); will retry", self.stage_name, exc)
            return
        if not done:
            log.info("%s: offset commit refused (the group rebalanced)", self.stage_name)
            return
        for tp, offset in todo.items():
            self.committed[(tp.topic, tp.partition)] = offset

    def reset(self) -> None:
        """The assignment changed: forget what was confirmed and committed."""
        self._epoch += 1
        self.confirmed.clear()
        self.committed.clear()
