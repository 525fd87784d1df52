"""Drain a `DiskBuffer` to Kafka: in order, acknowledged only after the broker did, through
outages (see `BufferedKafkaSender`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

from pipeline.collect.buffer import BufferedRecord, DiskBuffer, DiskBufferError
from pipeline.contracts.partitioning import partition_for
from pipeline.errors import PipelineError
from pipeline.kafka_security import KafkaSecurity, client_kwargs, connect_errors

log = logging.getLogger(__name__)


SenderState = Literal["starting", "up", "down", "stopped"]


class BufferedKafkaSender:
    """Drains a `DiskBuffer` to Kafka in order; acks the buffer only after the broker did.

    A round: peek up to `batch_records`, produce each to `topic_prefix + topic` on partition
    `partition_for(key, partitions)` (unkeyed: `position % partitions`, so a resend lands where
    the first try did), await every delivery (acks=all, idempotent producer), ack the buffer
    at once. Rounds do not overlap, and the producer keeps one batch in flight per partition,
    so each topic-partition receives records in buffer order.

    Kafka down: a producer that cannot start, or a round that fails, is retried after a capped
    exponential backoff (`backoff_s` doubling up to `max_backoff_s`). A round whose deliveries
    are merely slow is not abandoned: the idempotent producer retries those batches itself
    with their original sequence numbers, which the broker deduplicates. State changes
    (up -> down after `down_after_s` without progress, down -> up) are logged once each.

    Once-semantics, precisely. Within one producer session nothing is written twice: the
    broker drops a retried batch by its producer id and sequence number. Across sessions the
    delivery is at-least-once, and the only records that can be written twice are:
    (a) the round in flight when the process ends - a crash, a kill, or `stop` whose grace ran
    out during an outage - or confirmed but not yet in the checkpoint (one fsync and a rename
    after the confirmation): at most `batch_records` records, resent on the next start;
    (b) a delivery that fails with its outcome unknown (a batch that expired while its partition
    had no leader, a fatal producer error): the producer is replaced and the round's
    unconfirmed records are resent under a new producer id. Confirmed records of a failed round
    are remembered and skipped, so only the unconfirmed ones repeat; if one of those had landed
    after all, its partition sees it twice, the second time after its successors.
    A duplicate is byte-identical and on the same partition (keyed: same key; unkeyed: same
    position). Node samples are deduplicated downstream on their natural key (node_id,
    observed_at): `stg_node_telemetry` keeps one row, and the stream's node stage drops a
    sample it has counted in an open minute (a duplicate of a closed minute is a late event),
    so energy and cost totals see each reading once; Kafka offsets and raw topic counts do not.
    Facility samples are dropped the same way by the site stage; other record types need a
    natural-key dedup of their own before they go through this buffer.

    Gauges and counters for the service to export: `state`, `buffered_bytes`,
    `buffered_records`, `records_sent`, `send_failures`, `last_error`.
    """

    def __init__(
        self,
        buffer: DiskBuffer,
        bootstrap: str,
        *,
        topic_prefix: str = "",
        security: KafkaSecurity | None = None,
        batch_records: int = 500,
        backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        down_after_s: float = 5.0,
        idle_s: float = 0.2,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.buffer = buffer
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.security = security
        self.batch_records = batch_records
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.down_after_s = down_after_s
        self.idle_s = idle_s
        self.client_options = dict(client_options or {})
        #: "starting" until the first success or failure, then "up" / "down"; "stopped".
        self.state: SenderState = "starting"
        self.records_sent = 0
        #: Failed connection attempts and failed rounds (each is followed by a backoff).
        self.send_failures = 0
        self.last_error: str | None = None
        self._producer: Any = None
        self._partitions: dict[str, int] = {}
        self._delivered: set[int] = set()  # confirmed positions of a failed round, not acked
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._grace_s = 5.0
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered_bytes(self) -> int:
        return self.buffer.disk_bytes

    @property
    def buffered_records(self) -> int:
        return self.buffer.pending_records

    def notify(self) -> None:
        """Wake the sender now (after an append) instead of at its next idle poll; call it
        from the event loop's thread (`loop.call_soon_threadsafe(sender.notify)` otherwise)."""
        self._wake.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until everything appended so far is confirmed (True), or `timeout_s` passed
        (False: the rest stays in the buffer for the next start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.buffer.pending_records:
            if loop.time() >= deadline or self._task is None or self._task.done():
                return False
            self.notify()
            await asyncio.sleep(0.05)
        return True

    async def start(self) -> None:
        """Run the drain loop in a background task (until `stop`)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="buffered-kafka-sender")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish the round in flight (up to `grace_s`), then close the producer (within
        another `grace_s`; while Kafka is down its unconfirmed records stay in the buffer)."""
        self._stopping = True
        self._grace_s = grace_s
        self._wake.set()
        self._stopped.set()
        task, self._task = self._task, None
        if task is None:
            return
        _done, pending = await asyncio.wait({task}, timeout=grace_s)
        if pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> BufferedKafkaSender:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run(self) -> None:
        """Drain until `stop`: connect, send rounds, back off while Kafka is down.

        A `DiskBufferError` (a corrupt segment, a checkpoint that cannot be written) is not a
        Kafka outage: it ends the loop, and `stop()` re-raises it. Peeks and acks run on the
        event loop (one fsync and a rename per round)."""
        backoff = self.backoff_s
        try:
            while not self._stopping:
                try:
                    if self._producer is None:
                        self._producer = await self._connect()
                        self._set_state("up", "connected")
                    progressed = await self._round()
                except DiskBufferError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any client failure: back off, retry
                    self.send_failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._set_state("down", self.last_error)
                    await self._discard_producer()
                    await self._sleep(self._stopped, backoff)  # appends do not cut it short
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                backoff = self.backoff_s
                if not progressed:
                    await self._sleep(self._wake, self.idle_s)
        finally:
            await self._discard_producer(grace_s=self._grace_s)
            self.state = "stopped"

    # -- internals

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            request_timeout_ms=30_000,
            retry_backoff_ms=500,
            **client_kwargs(self.security),
            **self.client_options,
        )
        try:
            with connect_errors(self.bootstrap, self.security):
                await producer.start()
        except BaseException:
            await self._close(producer, grace_s=1.0)
            raise
        self._partitions = {}
        return producer

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            parts = await self._producer.partitions_for(topic)
            if not parts:  # retried with backoff like an outage; `last_error` names it
                raise PipelineError(f"topic {topic} does not exist: run `microdc topics create`")
            count = self._partitions[topic] = len(parts)
        return count

    async def _round(self) -> bool:
        """Send the oldest unsent records and ack them; False if there was nothing to send."""
        self._wake.clear()
        batch = self.buffer.peek(self.batch_records)
        if not batch:
            return False
        futures: list[tuple[int, asyncio.Future[Any]]] = []
        failure: BaseException | None = None
        for rec in batch:
            if rec.position in self._delivered:
                continue
            topic = self.topic_prefix + rec.topic
            try:
                n = await self._partition_count(topic)
                part = partition_for(rec.key, n) if rec.key is not None else rec.position % n
                fut = await self._producer.send(topic, rec.value, key=rec.key, partition=part)
            except Exception as exc:  # noqa: BLE001 - not enqueued: send what was, then retry
                failure = exc
                break
            futures.append((rec.position, fut))
        await self._await_deliveries([f for _, f in futures])
        for position, fut in futures:
            if fut.exception() is None:
                self._delivered.add(position)
            elif failure is None:
                failure = fut.exception()
        confirmed = self._confirmed_prefix(batch)
        if confirmed is not None:
            self.buffer.ack(confirmed)
            self.records_sent += sum(1 for p in self._delivered if p <= confirmed)
            self._delivered = {p for p in self._delivered if p > confirmed}
        if failure is not None:
            raise failure
        self._set_state("up", f"{len(batch)} records delivered")
        return True

    def _confirmed_prefix(self, batch: list[BufferedRecord]) -> int | None:
        """The last position up to which every record of `batch` was confirmed."""
        last = None
        for rec in batch:
            if rec.position not in self._delivered:
                break
            last = rec.position
        return last

    async def _await_deliveries(self, futures: list[asyncio.Future[Any]]) -> None:
        """Wait for every delivery; past `down_after_s` without them, report Kafka down."""
        pending: set[asyncio.Future[Any]] = set(futures)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=self.down_after_s)
            if pending and not done:
                self.last_error = f"no acknowledgement for {self.down_after_s:g} s"
                self._set_state("down", self.last_error)

    def _set_state(self, state: SenderState, why: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        if state == "down":
            log.warning(
                "Kafka %s is down (%s): readings stay in the disk buffer %s (%d records, "
                "%d bytes) and are sent when it is back",
                self.bootstrap,
                why,
                self.buffer.directory,
                self.buffered_records,
                self.buffered_bytes,
            )
        elif previous == "down":
            log.warning(
                "Kafka %s is back: draining the disk buffer %s (%d records left)",
                self.bootstrap,
                self.buffer.directory,
                self.buffered_records,
            )
        else:
            log.info(
                "Kafka %s is up (%s): sending from the disk buffer %s",
                self.bootstrap,
                why,
                self.buffer.directory,
            )

    @staticmethod
    async def _sleep(event: asyncio.Event, seconds: float) -> None:
        """Sleep `seconds`, or less if `event` is set (`_wake`: notify or stop; `_stopped`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def _discard_producer(self, grace_s: float = 1.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close(producer, grace_s)

    @staticmethod
    async def _close(producer: Any, grace_s: float) -> None:
        """Stop a producer; if it cannot flush within `grace_s` (Kafka down), close it hard."""
        try:
            async with asyncio.timeout(grace_s):
                await producer.stop()
        except TimeoutError:
            # aiokafka's stop() waits for every pending batch: cancel its sender task and close
            # the connections instead (those records stay unacked in the buffer).
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                await sender.close()
            await producer.client.close()
        except Exception as exc:  # noqa: BLE001 - closing a failed producer: log and go on
            log.debug("closing the Kafka producer failed: %r", exc)
