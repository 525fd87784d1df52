"""A Faust consumer that hands whole fetched batches of selected topics to a bulk handler.

Faust delivers every Kafka message through its conductor, a channel and a stream, and its fetch
loop awaits `Service.wait_first` - four new tasks - per message: about 130 us a message on our
2-vCPU VM, so a stock per-event agent tops out near 7,000 events/s (see bench/bench_worker.py).
For the topics registered in `BulkApp.bulk_routes` this consumer passes each fetched batch
(topic-partition -> aiokafka ConsumerRecords) to the route's handler instead; every other topic
(table changelogs during recovery, any ordinary agent) takes Faust's normal path. Group
membership, the co-partitioning assignor, rebalancing, table recovery, the producer and the web
server all stay Faust's.

For bulk topics the fetcher also skips aiokafka's per-record `ConsumerRecord` (see
`compat.lean_records`): the handlers get the record objects of the decoded batch, which carry the
offset, timestamp, key and value they use. Every Faust internal this relies on is reached through
`pipeline.compat`.

Bulk topics are declared with `acks=False`: Faust neither tracks nor commits their offsets. The
handlers own their position (the stage snapshots carry it), seek where it says and commit it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline import compat

#: handler(generation_id, fetch_seq, {tp: [ConsumerRecord, ...]}) - from the fetch loop, in order.
BulkHandler = Callable[[int, int, Mapping[Any, list[Any]]], Awaitable[None]]


#: How long the broker may hold a fetch when none of its partitions has new data (Faust: 1.5 s).
FETCH_MAX_WAIT_MS = 50


class BulkConsumerThread(compat.ConsumerThread):
    """Faust's consumer thread with short fetch long-polls.

    aiokafka keeps one fetch in flight per broker. When the partitions without buffered records
    are all caught up (facility, grid, node minutes), that fetch is a long poll the broker holds
    for `fetch_max_wait_ms` - and the request-log partitions, drained meanwhile, wait behind it:
    with Faust's 1,500 ms a worker idled a third of the time on a backlog. 50 ms costs at most 20
    empty fetches a second on an idle worker.
    """

    def configure_consumer(self, consumer: Any) -> None:
        compat.set_fetch_max_wait_ms(consumer, FETCH_MAX_WAIT_MS)


class BulkConsumer(compat.Consumer):
    """`getmany` with a bulk bypass and one fetch in flight while a batch is processed.

    Faust fetches only when the previous batch is done; aiokafka parses records lazily inside
    that fetch, so parsing and network waits would add to processing. Here the next fetch starts
    before the current batch is handed over (both run on one event loop and GIL, but the waits
    overlap): on our 2-vCPU VM that took one worker from ~65,000 to ~95,000 events/s.

    Every fetch gets a sequence number (`fetch_seq`, taken when it starts), so a handler that
    seeks can tell batches fetched before its seek from those fetched after.
    """

    thread_class = BulkConsumerThread
    _prefetch: asyncio.Future[tuple[Any, Any, int, int]] | None = None
    fetch_seq: int = 0

    def _start_fetch(self, timeout: float) -> asyncio.Future[tuple[Any, Any, int, int]]:
        self.fetch_seq += 1
        seq = self.fetch_seq

        async def fetch() -> tuple[Any, Any, int, int]:
            records, active = await self.next_records(timeout)
            # The generation when the records arrived, as Faust's getmany reads it: a fetch that
            # spans a rebalance may return records (e.g. changelogs being recovered) fetched for
            # the new assignment.
            return records, active, seq, self.app.consumer_generation_id

        return asyncio.ensure_future(fetch())

    async def on_stop(self) -> None:
        if self._prefetch is not None:
            self._prefetch.cancel()
            self._prefetch = None
        await super().on_stop()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        pending, self._prefetch = self._prefetch, None
        if pending is None:
            pending = self._start_fetch(timeout)
        records, active_partitions, seq, generation_id = await pending
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As Faust does: a fetch that returned while the flow was stopped is dropped and the
            # consumer goes back to the committed offsets.
            try:
                await self.perform_seek()
            except compat.CONSUMER_GONE as exc:  # Faust logs and goes on here too
                self.log.warning("exception performing seek when flow not active %r", exc)
            return
        self._prefetch = self._start_fetch(timeout)
        routes: Mapping[str, BulkHandler] = getattr(self.app, "bulk_routes", {})
        bulk: dict[BulkHandler, dict[Any, list[Any]]] = {}
        rest: dict[Any, list[Any]] = {}
        for tp, batch in records.items():
            handler = routes.get(tp.topic)
            if handler is None:
                rest[tp] = batch
            else:
                # Even a batch fetched before a rebalance goes to the handler: it checks that it
                # still owns the partition and that the offsets continue its state; dropping
                # records here would move the consumer past them unnoticed.
                bulk.setdefault(handler, {})[tp] = batch
        for handler, batches in bulk.items():
            await handler(generation_id, seq, batches)
        if not rest or generation_id != self.app.consumer_generation_id:
            return
        # Faust's own path for everything else (as in Consumer.getmany).
        to_message = self.to_message
        for tp, record in self.scheduler.iterate(rest):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if active_partitions is None or tp in active_partitions or self.is_buffered(tp):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)


class BulkTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = BulkConsumer


class BulkApp(compat.App):
    """A Faust app whose consumer honours `bulk_routes` (topic name -> handler)."""

    transport_class = BulkTransport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bulk_routes: dict[str, BulkHandler] = {}
