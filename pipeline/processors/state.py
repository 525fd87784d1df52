"""Stage snapshots in Faust tables: written and read as if inside an event of the owning partition.

Faust routes a table write to the changelog partition of the *current event* and RocksDB picks
its per-partition database the same way. Our stages run on whole fetched batches rather than
inside Faust's stream iteration, so every table access here sets the current event to a stand-in
for the partition the value belongs to: key `p` of the stage-1 table always lands on changelog
partition `p`, which Faust's co-partitioning assignor gives to the owner of input partition `p`.
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust import streams as faust_streams

#: Values above this size are zlib-compressed (the broker's default message limit is 1 MB).
COMPRESS_ABOVE = 256 * 1024
_RAW, _ZLIB = b"m", b"z"


class _Message:
    """The part of a Faust message that tables and stores read."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = -1
        self.timestamp = None


class _Event:
    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


@contextmanager
def on_partition(source_topic: str, partition: int) -> Iterator[None]:
    """Make table reads and writes act for `partition` of `source_topic`."""
    event = _Event(source_topic, partition)
    # faust.streams._current_event is the context variable Faust itself sets per event.
    token = faust_streams._current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def pack(snapshot: bytes) -> bytes:
    """A table value: one format byte, then the snapshot (compressed when large)."""
    if len(snapshot) > COMPRESS_ABOVE:
        return _ZLIB + zlib.compress(snapshot, 1)
    return _RAW + snapshot


def unpack(value: bytes) -> bytes:
    head, body = value[:1], value[1:]
    if head == _ZLIB:
        return zlib.decompress(body)
    if head == _RAW:
        return body
    raise ValueError(f"unknown snapshot format byte {head!r}")


class SnapshotStore:
    """Stage snapshots of one table, key = partition number (as text)."""

    def __init__(self, table: Any, source_topic: str) -> None:
        self.table = table
        self.source_topic = source_topic

    def load(self, partition: int) -> bytes | None:
        with on_partition(self.source_topic, partition):
            value = self.table.get(str(partition))
        return unpack(value) if value is not None else None

    def save(self, partition: int, snapshot: bytes) -> Any:
        """Store locally and send to the changelog; returns the changelog send's future."""
        key, value = str(partition), pack(snapshot)
        with on_partition(self.source_topic, partition):
            # What `table[key] = value` does, keeping the future (confirmation -> commit).
            self.table.data[key] = value
            return self.table.send_changelog(partition, key, value)
