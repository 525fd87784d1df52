"""`microdc land`: Kafka topics -> Parquet lake, exactly once per topic/partition/offset.

Its own process and consumer group, not part of the stream worker: landing is I/O and Arrow work
that would share the worker's one GIL-bound core, it scales and fails independently, and the lake
keeps filling while workers rebalance. Per owned topic-partition the lander keeps one open
`SegmentBuffer`; a closed segment is landed by `Lake.write_segment` and only then is its offset
`last + 1` committed. On assignment, `Lake.recover` decides where to read (the lake wins over
the committed offset); on revocation, open segments are dropped - the next owner reads them
again from the lake's position.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.compat import lean_records
from pipeline.errors import LandingError
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_security import KafkaSecurity, client_kwargs, connect_errors
from pipeline.lake.datasets import DATASETS, Dataset
from pipeline.lake.privacy import IpPolicy
from pipeline.lake.segment import RollPolicy, Segment, SegmentBuffer, SegmentDraft
from pipeline.lake.store import Lake, PartitionLock
from pipeline.wallclock import wall_clock_ms

log = logging.getLogger(__name__)

LOCK_WAIT_S = 60.0


@dataclass
class LandStats:
    rows: int = 0
    files: int = 0
    segments: int = 0
    invalid: int = 0
    consumed: int = 0
    rows_by_dataset: Counter[str] = field(default_factory=Counter)

    def count(self, dataset: Dataset, segment: Segment) -> None:
        """Account for one landed segment."""
        self.segments += 1
        self.files += len(segment.files)
        self.rows += segment.rows
        self.invalid += segment.invalid
        self.rows_by_dataset[dataset.name] += segment.rows


@dataclass
class _Owned:
    dataset: Dataset
    buffer: SegmentBuffer
    lock: PartitionLock
    #: The segment being built and written (in a thread) while the buffer fills the next one.
    landing: asyncio.Task[None] | None = None


class Lander:
    """Lands `datasets` from Kafka into `lake`; `run()` until `stop()` (or idle, if asked)."""

    def __init__(
        self,
        bootstrap: str,
        lake: Lake,
        *,
        topic_prefix: str = "",
        group_id: str | None = None,
        policy: RollPolicy | None = None,
        ip_policy: IpPolicy | None = None,
        datasets: Iterable[Dataset] = DATASETS,
        security: KafkaSecurity | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.bootstrap = bootstrap
        self.now_ms = now_ms  # only for the far-future rule of `SegmentBuffer.set_horizon`
        self.security = security
        self.lake = lake
        self.prefix = topic_prefix
        # One group per deployment (topic prefix), like the workers' `<prefix>microdc-worker`.
        self.group_id = f"{topic_prefix}microdc-land" if group_id is None else group_id
        self.policy = policy or RollPolicy()
        self.ip_policy = ip_policy or IpPolicy()
        self.datasets = tuple(datasets)
        self.by_topic = {f"{topic_prefix}{d.topic.name}": d for d in self.datasets}
        self.owned: dict[TopicPartition, _Owned] = {}
        self.watermarks: dict[str, int] = {}  # dataset -> max event ms seen
        self.stats = LandStats()
        self._stop = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        self._stop.set()

    # -- ownership -------------------------------------------------------------------------------
    async def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in sorted(assigned):
            if tp in self.owned:
                continue
            dataset = self.by_topic[tp.topic]
            lock = await self._lock(tp)
            start = await asyncio.to_thread(self.lake.recover, dataset, tp.topic, tp.partition)
            if start is None:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
            else:
                consumer.seek(tp, start)
            log.info("%s[%d]: landing from %s", tp.topic, tp.partition, start)
            buffer = SegmentBuffer(dataset, tp.topic, tp.partition, self.policy, self.ip_policy)
            self.owned[tp] = _Owned(dataset, buffer, lock)

    async def _lock(self, tp: TopicPartition) -> PartitionLock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            lock = self.lake.lock(tp.topic, tp.partition)
            if lock is not None:
                return lock
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{tp.topic}[{tp.partition}] is still being landed by another process "
                    f"after {LOCK_WAIT_S:.0f} s (lock under {self.lake.root}/_landing/locks)"
                )
            await asyncio.sleep(0.2)

    async def _revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """A rebalance: let go of `revoked`. A segment that failed is only a warning here, since
        its partition's next owner lands it again from the lake's position."""
        for tp, exc in await self._release(revoked):
            log.warning(
                "%s[%d]: last segment not landed; the next owner lands it again (%s)",
                tp.topic,
                tp.partition,
                getattr(exc, "cause", repr(exc)),
            )

    async def _release(
        self, tps: Iterable[TopicPartition]
    ) -> list[tuple[TopicPartition, Exception]]:
        """Finish what is being written for `tps`, then unlock them; returns the landings that
        failed, for the caller to report (a rebalance warns, the end of `run` raises)."""
        failed: list[tuple[TopicPartition, Exception]] = []
        for tp in list(tps):
            owned = self.owned.pop(tp, None)
            if owned is None:
                continue
            try:
                if owned.landing is not None:  # finish what is being written, then let go
                    await owned.landing
            except Exception as exc:  # noqa: BLE001 - returned: the caller reports it
                failed.append((tp, exc))
            finally:
                owned.lock.release()  # the open segment is dropped: the next owner re-reads it
        return failed

    # -- landing ---------------------------------------------------------------------------------
    async def _land(self, tp: TopicPartition, owned: _Owned) -> None:
        """Close the open segment and land it in the background: building its Arrow tables
        (Arrow's JSON reader) and writing its files run in a thread, off the event loop, while
        the next records come in. One landing per partition at a time, in offset order."""
        draft = owned.buffer.take_draft()
        if draft is None:
            return
        if owned.landing is not None:
            await owned.landing  # backpressure, and raises if the previous landing failed
        if self.owned.get(tp) is not owned:
            # Revoked (and perhaps assigned again) while we waited: the lake's recovery has
            # already decided where this partition is read from, so landing the draft now
            # would land its rows a second time. Its records are read again.
            return
        owned.landing = asyncio.create_task(self._finish(tp, owned.dataset, draft))

    async def _finish(self, tp: TopicPartition, dataset: Dataset, draft: SegmentDraft) -> None:
        """Build and write one segment, then commit past it. Any failure before the commit is a
        `LandingError` naming the segment: nothing is committed, so the lake's recovery lands it
        again on restart, and `run` stops instead of reporting success."""
        try:
            segment = await asyncio.to_thread(draft.build)
            if segment.files:
                await asyncio.to_thread(self.lake.write_segment, dataset, segment)
        except Exception as exc:
            cause = f"{type(exc).__name__}: {exc}"
            raise LandingError(tp.topic, tp.partition, draft.first, draft.last, cause) from exc
        self.stats.count(dataset, segment)
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: segment.last + 1})
        except KafkaError as exc:  # advisory: the lake decides where a restart reads
            log.warning("%s[%d]: offset commit failed (%r)", tp.topic, tp.partition, exc)

    def _landing(self) -> bool:
        """True while any segment is still being landed (raises if one failed)."""
        busy = False
        for owned in self.owned.values():
            task = owned.landing
            if task is not None and task.done():
                owned.landing = None  # done: nothing to wait for; raised once, not again on release
                task.result()
            busy |= owned.landing is not None
        return busy

    async def run(self, *, until_idle: bool = False, idle_fetches: int = 2) -> LandStats:
        """Consume and land until `stop()`; with `until_idle`, also stop once every owned
        partition has been at its log end with nothing buffered for `idle_fetches` fetches."""
        lander = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await lander._revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await lander._assigned(assigned)

        # Every topic it lands must exist (with its declared partitions) before subscribing.
        await ensure_topics(
            self.bootstrap,
            [d.topic.with_prefix(self.prefix) for d in self.datasets],
            security=self.security,
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id="microdc-land",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=200,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            metadata_max_age_ms=5_000,
            **client_kwargs(self.security),
        )
        self._consumer = consumer
        lean_records(self.by_topic)  # only offset, timestamp and value are read
        consumer.subscribe(list(self.by_topic), listener=Listener())
        with connect_errors(self.bootstrap, self.security):
            await consumer.start()
        quiet: Counter[TopicPartition] = Counter()
        try:
            while not self._stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=500)
                except KafkaError as exc:  # broker away: aiokafka reconnects; keep asking
                    log.warning("fetch failed (%r); retrying", exc)
                    await asyncio.sleep(0.5)
                    continue
                await self._apply(batches)
                await self._roll(consumer, batches, quiet)
                self._landing()  # a failed segment stops the lander now, not at its next roll
                if (
                    until_idle
                    and self.owned
                    and all(quiet[tp] >= idle_fetches for tp in self.owned)
                ):
                    break
        finally:
            failed = await self._release(list(self.owned))
            await consumer.stop()
            self._consumer = None
        if failed:  # the last segments, still landing at the end: exit with the first failure
            raise failed[0][1]
        return self.stats

    async def _apply(self, batches: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batches.items():
            owned = self.owned.get(tp)
            if owned is None:
                continue  # fetched just before a revocation
            buffer = owned.buffer
            buffer.set_horizon(self.watermarks.get(owned.dataset.name), self.now_ms())
            self.stats.consumed += len(records)
            for rec in records:
                buffer.add(rec.offset, rec.timestamp, rec.value)
                if buffer.full():
                    await self._land(tp, owned)
                    if self.owned.get(tp) is not owned:
                        break  # revoked during the landing: the next owner reads these again
            if buffer.max_event_ms is not None:
                name = owned.dataset.name
                if buffer.max_event_ms > self.watermarks.get(name, buffer.max_event_ms - 1):
                    self.watermarks[name] = buffer.max_event_ms

    async def _roll(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[Any]],
        quiet: Counter[TopicPartition],
    ) -> None:
        for tp, owned in list(self.owned.items()):
            buffer = owned.buffer
            if buffer.hour_passed(self.watermarks.get(owned.dataset.name)):
                await self._land(tp, owned)
            if batches.get(tp):
                quiet[tp] = 0
                continue
            end = consumer.highwater(tp)
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue
            if end is not None and position >= end:
                quiet[tp] += 1
                if len(buffer):  # the end of the log: land what is there
                    await self._land(tp, owned)
            else:
                quiet[tp] = 0


def run_land(
    bootstrap: str,
    lake: Lake,
    *,
    until_idle: bool = False,
    report: Callable[[LandStats], None] | None = None,
    report_every_s: float = 5.0,
    **kwargs: Any,
) -> LandStats:
    """Run a `Lander` in this process until SIGINT/SIGTERM (or idle); returns its totals."""
    import signal

    async def main() -> LandStats:
        lander = Lander(bootstrap, lake, **kwargs)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lander.stop)

        async def reporter() -> None:
            while True:
                await asyncio.sleep(report_every_s)
                if report is not None:
                    report(lander.stats)

        task = asyncio.create_task(reporter())
        try:
            return await lander.run(until_idle=until_idle)
        finally:
            task.cancel()

    return asyncio.run(main())
