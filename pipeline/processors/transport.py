"""A Faust consumer that hands whole fetched batches of selected topics to a bulk handler.

Faust delivers every Kafka message through its conductor, a channel and a stream, and its fetch
loop awaits `Service.wait_first` - four new tasks - per message: about 130 us a message on our
2-vCPU VM, so a stock per-event agent tops out near 7,000 events/s (see bench/bench_worker.py).
For the topics registered in `BulkApp.bulk_routes` this consumer passes each fetched batch
(topic-partition -> aiokafka ConsumerRecords) to the route's handler instead; every other topic
(table changelogs during recovery, any ordinary agent) takes Faust's normal path. Group
membership, the co-partitioning assignor, rebalancing, table recovery, the producer and the web
server all stay Faust's.

Bulk topics are declared with `acks=False`: Faust neither tracks nor commits their offsets. The
handlers own their position (the stage snapshots carry it), seek where it says and commit it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

#: handler(generation_id, {tp: [ConsumerRecord, ...]}) - called from the fetch loop, in order.
BulkHandler = Callable[[int, Mapping[Any, list[Any]]], Awaitable[None]]


class BulkConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """`getmany` with a bulk bypass; otherwise the aiokafka consumer of Faust, unchanged."""

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As Faust does: a fetch that returned while the flow was stopped is dropped and the
            # consumer goes back to the committed offsets.
            try:
                await self.perform_seek()
            except Exception as exc:  # noqa: BLE001 - Faust logs and goes on here too
                self.log.warning("exception performing seek when flow not active %r", exc)
            return
        routes: Mapping[str, BulkHandler] = getattr(self.app, "bulk_routes", {})
        bulk: dict[BulkHandler, dict[Any, list[Any]]] = {}
        rest: dict[Any, list[Any]] = {}
        for tp, batch in records.items():
            handler = routes.get(tp.topic)
            if handler is None:
                rest[tp] = batch
            elif active_partitions is None or tp in active_partitions:
                bulk.setdefault(handler, {})[tp] = batch
        for handler, batches in bulk.items():
            await handler(generation_id, batches)
        if not rest:
            return
        # Faust's own path for everything else (copied from Consumer.getmany).
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(rest):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)


class BulkTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = BulkConsumer


class BulkApp(faust.App):  # type: ignore[misc]
    """A Faust app whose consumer honours `bulk_routes` (topic name -> handler)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bulk_routes: dict[str, BulkHandler] = {}

    def _new_transport(self) -> Any:
        return BulkTransport(self.conf.broker_consumer, self)
