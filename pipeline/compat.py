"""The one home of every private Faust and aiokafka internal the worker and the lake touch.

Nothing else in the package names a private attribute of either library: it calls this module.
Each hook is listed in `HOOKS` and pinned by `tests/unit/test_compat.py` - that the attribute is
still there, with the parameters we call it with, and (where it can be run in-process) that it
still does what we rely on - so an upgrade that moves one fails there, naming it, instead of
breaking a worker silently. pyproject.toml bounds both libraries (faust-streaming <0.16,
aiokafka <0.15); raising a bound means running those tests first.

What each hook buys:

- aiokafka `PartitionRecords._consumer_record` (fetcher): wraps every fetched record in a
  `ConsumerRecord`; `lean_records` skips that for the bulk topics (a quarter of a worker's CPU).
- aiokafka `AIOKafkaConsumer._fetch_max_wait_ms`: the fetch long-poll, read when the consumer
  starts; Faust passes no setting for it (`set_fetch_max_wait_ms`).
- Faust `AIOKafkaConsumerThread._create_worker_consumer(transport)`: where Faust builds the
  aiokafka consumer; `ConsumerThread.configure_consumer` is called with it before it starts.
- Faust `Consumer._new_consumer_thread()` and `App._new_transport()`: the factories of the
  consumer thread and the transport; `Consumer.thread_class` and `App.transport_class` pick ours.
- Faust `Consumer._wait_next_records(timeout)`, `_to_message(tp, record)` and
  `_buffered_partitions`: the parts Faust's own `getmany` is made of (`next_records`,
  `to_message`, `is_buffered`), for a `getmany` that hands whole batches to a handler.
- Faust `Consumer._commit(offsets)`: commits the offsets given (Faust's public `commit` commits
  only what its acks tracked; ours are snapshot positions): `commit_positions`.
- Faust `streams._current_event`: the context variable that routes table reads and writes to a
  partition (`current_event`).
- Faust `Table.data`: the table's store, written without an event (`table_store`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import KafkaError
from faust import streams as faust_streams
from faust.exceptions import ConsumerNotStarted, ProducerSendError
from faust.transport.drivers import aiokafka as faust_aiokafka


class Hook(NamedTuple):
    """A private attribute we rely on: where it lives, and the parameters we call it with
    (None: an attribute, not a method)."""

    owner: str
    name: str
    params: tuple[str, ...] | None


#: Every private internal used below (the compat tests check each one).
HOOKS: tuple[Hook, ...] = (
    Hook(
        "aiokafka.consumer.fetcher.PartitionRecords", "_consumer_record", ("self", "tp", "record")
    ),
    Hook("aiokafka.AIOKafkaConsumer", "_fetch_max_wait_ms", None),
    Hook(
        "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread",
        "_create_worker_consumer",
        ("self", "transport"),
    ),
    Hook("faust.transport.drivers.aiokafka.Consumer", "_new_consumer_thread", ("self",)),
    Hook("faust.App", "_new_transport", ("self",)),
    Hook("faust.transport.drivers.aiokafka.Consumer", "_wait_next_records", ("self", "timeout")),
    Hook("faust.transport.drivers.aiokafka.Consumer", "_to_message", ("self", "tp", "record")),
    Hook("faust.transport.drivers.aiokafka.Consumer", "_buffered_partitions", None),
    Hook("faust.transport.drivers.aiokafka.Consumer", "_commit", ("self", "offsets")),
    Hook("faust.streams", "_current_event", None),
    Hook("faust.tables.Table", "data", None),
)

#: What the consumer raises for a partition that was revoked meanwhile, a consumer not (or no
#: longer) running, or a broker that did not answer a seek in time: the callers retry later or
#: leave the partition to its new owner. (`IllegalStateError`, "not assigned", is a KafkaError.)
CONSUMER_GONE: tuple[type[BaseException], ...] = (
    KafkaError,
    ConsumerNotStarted,
    asyncio.TimeoutError,
)

#: What `highwater` raises for a partition not assigned (aiokafka asserts it; Faust's consumer
#: thread says it has not started).
NOT_ASSIGNED: tuple[type[BaseException], ...] = (AssertionError, ConsumerNotStarted)

#: What waiting for sent records raises when the broker refused or never acknowledged them
#: (aiokafka's errors from the send futures, Faust's when the send itself failed).
SEND_FAILED: tuple[type[BaseException], ...] = (KafkaError, ProducerSendError, asyncio.TimeoutError)


# -- aiokafka ------------------------------------------------------------------------------------

#: Topics whose fetched records skip `ConsumerRecord`.
_LEAN_TOPICS: set[str] = set()
_consumer_record = aiokafka_fetcher.PartitionRecords._consumer_record


def _lean_consumer_record(self: Any, tp: Any, record: Any) -> Any:
    if tp.topic in _LEAN_TOPICS:
        return record  # aiokafka's DefaultRecord: offset, timestamp, key, value, headers
    return _consumer_record(self, tp, record)


def lean_records(topics: Iterable[str]) -> None:
    """Hand the records of `topics` over as they come out of the record batch.

    aiokafka wraps every fetched record in a `ConsumerRecord` dataclass (about a microsecond
    each on our VM, a quarter of a stream worker's CPU at 70,000 events/s). Our bulk consumers
    read only `offset`, `timestamp`, `key` and `value`, which aiokafka's own record objects
    (`DefaultRecord`, C or Python) already have. Process-wide; other topics keep
    `ConsumerRecord`.
    """
    _LEAN_TOPICS.update(topics)
    aiokafka_fetcher.PartitionRecords._consumer_record = _lean_consumer_record


def set_fetch_max_wait_ms(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """How long the broker may hold a fetch with no new data; read when `consumer` starts."""
    consumer._fetch_max_wait_ms = wait_ms


# -- Faust's consumer ------------------------------------------------------------------------------


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's consumer thread; `configure_consumer` sees each aiokafka consumer it builds."""

    def configure_consumer(self, consumer: AIOKafkaConsumer) -> None:
        """Adjust the worker's aiokafka consumer before it starts (nothing by default)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        self.configure_consumer(consumer)
        return consumer


class Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, with its thread class and the parts of its fetch loop under
    names of ours."""

    thread_class: type[ConsumerThread] = ConsumerThread

    def _new_consumer_thread(self) -> ConsumerThread:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)

    async def next_records(self, timeout: float) -> tuple[Any, Any]:
        """One fetch: (records by topic-partition or None, the active partitions or None)."""
        return await self._wait_next_records(timeout)  # type: ignore[no-any-return]

    def to_message(self, tp: Any, record: Any) -> Any:
        """The Faust message of a fetched record (for Faust's own stream path)."""
        return self._to_message(tp, record)

    def is_buffered(self, tp: Any) -> bool:
        """Whether Faust holds buffered records of `tp` (its getmany yields those too)."""
        return tp in self._buffered_partitions

    async def commit_positions(self, offsets: Mapping[Any, int]) -> bool:
        """Commit exactly `offsets` (next offset to read, per topic-partition) for the group.
        Faust drops partitions no longer assigned; False when the group rebalanced."""
        return await self._commit(offsets)  # type: ignore[no-any-return]


class App(faust.App):  # type: ignore[misc]
    """A Faust app whose transport is `transport_class`."""

    transport_class: type[faust_aiokafka.Transport] = faust_aiokafka.Transport

    def _new_transport(self) -> Any:
        return self.transport_class(self.conf.broker_consumer, self)


# -- Faust's tables --------------------------------------------------------------------------------


@contextmanager
def current_event(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event (what `faust.current_event()` returns) for the block:
    tables route reads and writes by `event.message.topic` / `.partition`."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def table_store(table: Any) -> MutableMapping[Any, Any]:
    """The table's local store (RocksDB or memory), read and written without the changelog."""
    return table.data  # type: ignore[no-any-return]
