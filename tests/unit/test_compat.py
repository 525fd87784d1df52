"""Every private Faust / aiokafka internal in `pipeline.compat` is still where we use it and still
does what we rely on. These fail - naming the hook - the day an upgrade moves one."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

import pipeline
from pipeline import compat
from pipeline.processors.transport import (
    FETCH_MAX_WAIT_MS,
    BulkApp,
    BulkConsumer,
    BulkConsumerThread,
    BulkTransport,
)


def _resolve(dotted: str) -> Any:
    """`pkg.module.Class` or `pkg.module` -> the object."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _sets_attribute(cls: type, name: str) -> bool:
    """`name` is a class attribute of `cls`, or assigned as `self.<name>` in one of its classes."""
    if hasattr(cls, name):
        return True
    pattern = re.compile(rf"self\.{name}\s*(:[^=]*)?=")
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            if pattern.search(inspect.getsource(klass)):
                return True
        except (OSError, TypeError):  # a C class
            continue
    return False


@pytest.mark.parametrize("hook", compat.HOOKS, ids=lambda h: f"{h.owner}.{h.name}")
def test_the_hook_is_where_compat_uses_it(hook: compat.Hook) -> None:
    owner = _resolve(hook.owner)
    if hook.params is None:
        found = hasattr(owner, hook.name) or (
            inspect.isclass(owner) and _sets_attribute(owner, hook.name)
        )
        assert found, f"{hook.owner}.{hook.name} is gone: see pipeline/compat.py"
        return
    method = getattr(owner, hook.name, None)
    assert callable(method), f"{hook.owner}.{hook.name} is gone: see pipeline/compat.py"
    params = tuple(inspect.signature(method).parameters)
    assert params == hook.params, f"{hook.owner}.{hook.name}{params}: see pipeline/compat.py"


def test_no_module_but_compat_touches_a_private_hook() -> None:
    names = {hook.name for hook in compat.HOOKS if hook.name.startswith("_")}
    names |= {"_new_topicpartition", "_commit"}
    root = Path(pipeline.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "compat.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in names:
            if re.search(rf"\.{name}\b", text):
                offenders.append(f"{path.relative_to(root)}: {name}")
    assert offenders == [], "private Faust/aiokafka internals outside pipeline/compat.py"


# -- what each hook does -------------------------------------------------------------------------


def _batch(*values: bytes) -> MemoryRecords:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=1_772_000_000_000 + i, key=b"k%d" % i, value=value, headers=[])
    return MemoryRecords(bytes(builder.build()))


def _fetched(topic: str, *values: bytes) -> list[Any]:
    tp = TopicPartition(topic, 0)
    return list(PartitionRecords(tp, _batch(*values), None, 0, None, None, True, READ_UNCOMMITTED))


def test_lean_topics_get_the_batch_records_and_others_keep_consumer_records() -> None:
    compat.lean_records(["compat-test.lean"])
    lean = _fetched("compat-test.lean", b'{"a":1}', b"x")
    full = _fetched("compat-test.other", b'{"a":1}')
    assert [(r.offset, r.timestamp, r.key, r.value) for r in lean] == [
        (0, 1_772_000_000_000, b"k0", b'{"a":1}'),
        (1, 1_772_000_000_001, b"k1", b"x"),
    ]
    assert not isinstance(lean[0], ConsumerRecord)
    assert isinstance(full[0], ConsumerRecord) and full[0].value == b'{"a":1}'


@pytest.fixture
def app() -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield BulkApp("compat-test", broker="kafka://127.0.0.1:9", store="memory://")
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_our_transport_consumer_and_thread_are_the_ones_faust_builds(app: Any) -> None:
    assert isinstance(app.transport, BulkTransport)
    assert isinstance(app.consumer, BulkConsumer)
    assert isinstance(app.consumer._new_consumer_thread(), BulkConsumerThread)


def test_the_worker_consumer_gets_our_fetch_long_poll(app: Any) -> None:
    async def build() -> Any:
        thread = app.consumer._new_consumer_thread()
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.get_event_loop().run_until_complete(build())
    assert isinstance(consumer, AIOKafkaConsumer)
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    # ... and aiokafka still hands the attribute to its fetcher when the consumer starts
    assert "self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


def test_our_getmany_is_built_from_the_parts_of_fausts(app: Any) -> None:
    """BulkConsumer.getmany mirrors Faust's: the parts it calls are the ones Faust's calls."""
    faust_getmany = inspect.getsource(faust_consumer.Consumer.getmany)
    for part in ("_wait_next_records", "_to_message", "_buffered_partitions", "perform_seek"):
        assert f"self.{part}" in faust_getmany, f"Faust's getmany no longer uses {part}"
    consumer = app.consumer
    tp = TopicPartition("compat-test.t", 3)
    assert consumer.is_buffered(tp) is False
    record = ConsumerRecord(
        "compat-test.t", 3, 17, 1_772_000_000_000, 0, b"k", b"v", None, 1, 1, []
    )
    message = consumer.to_message(tp, record)
    assert (message.topic, message.partition, message.offset) == ("compat-test.t", 3, 17)
    assert (message.key, message.value) == (b"k", b"v")


def test_commit_positions_goes_through_fausts_own_commit_of_given_offsets() -> None:
    source = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._commit)
    assert "consumer.commit(" in source and "self.assignment()" in source
    assert inspect.iscoroutinefunction(faust_aiokafka.Consumer._commit)


def test_current_event_is_what_faust_reads_as_the_current_event() -> None:
    class Event:
        pass

    event = Event()
    assert faust.current_event() is None
    with compat.current_event(event):
        assert faust.current_event() is event
    assert faust.current_event() is None


def test_the_table_store_is_what_the_table_reads(app: Any) -> None:
    table = app.Table("compat-snapshots", default=None, partitions=4)
    params = inspect.signature(table.send_changelog).parameters
    assert {"partition", "key", "value", "value_serializer"} <= set(params)
    compat.table_store(table)["3"] = b"snapshot"
    assert table.get("3") == b"snapshot"
    del compat.table_store(table)["3"]
    assert table.get("3") is None
