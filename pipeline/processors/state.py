"""Stage snapshots in Faust tables: written and read as if inside an event of the owning partition.

Faust routes a table write to the changelog partition of the *current event* and RocksDB picks
its per-partition database the same way. Our stages run on whole fetched batches rather than
inside Faust's stream iteration, so every table access here sets the current event to a stand-in
for the partition the value belongs to: key `p` of the stage-1 table always lands on changelog
partition `p`, which Faust's co-partitioning assignor gives to the owner of input partition `p`.
"""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline import compat

#: Snapshots above this size are zlib-compressed.
COMPRESS_ABOVE = 256 * 1024
#: Table values stay below the broker's default message limit (1 MB): larger snapshots (stage 2
#: holds up to an hour of node minutes: several MB) are split into chunks of this size.
CHUNK_BYTES = 512 * 1024
_RAW, _ZLIB, _MANIFEST = b"m", b"z", b"M"


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
    with compat.current_event(_Event(source_topic, partition)):
        yield


def pack(snapshot: bytes) -> bytes:
    """The stored form: one format byte, then the snapshot (compressed when large)."""
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
    """Stage snapshots of one table, all keys of partition `p` on changelog partition `p`.

    Key `"p"` holds the manifest: which version of the snapshot is current and in how many
    chunks (`"p.<version>.<i>"`) it is stored. A save writes the new chunks, then the manifest,
    then deletes the previous chunks; the changelog keeps the order within a partition, so a
    restored manifest always finds its chunks, and a crash in the middle leaves the previous
    snapshot whole. Versions are random, so two writers (a zombie after a rebalance) never mix.
    """

    def __init__(self, table: Any, source_topic: str) -> None:
        self.table = table
        self.source_topic = source_topic
        self._chunks: dict[int, list[str]] = {}

    def load(self, partition: int) -> bytes | None:
        with on_partition(self.source_topic, partition):
            manifest = self.table.get(str(partition))
            if manifest is None:
                self._chunks[partition] = []
                return None
            if manifest[:1] != _MANIFEST:
                return unpack(manifest)
            info = json.loads(manifest[1:])
            keys = [f"{partition}.{info['version']}.{i}" for i in range(info["chunks"])]
            parts = [self.table.get(key) for key in keys]
        missing = [key for key, part in zip(keys, parts, strict=True) if part is None]
        if missing:
            raise RuntimeError(f"snapshot chunks {missing} of partition {partition} are missing")
        self._chunks[partition] = keys
        return unpack(b"".join(parts))

    def save(self, partition: int, snapshot: bytes) -> Any:
        """Store locally and send to the changelog; returns the future of the manifest's send
        (once it is confirmed, so are the chunks before it)."""
        packed = pack(snapshot)
        version = uuid.uuid4().hex[:12]
        keys = []
        with on_partition(self.source_topic, partition):
            for i, start in enumerate(range(0, len(packed), CHUNK_BYTES)):
                key = f"{partition}.{version}.{i}"
                self._put(partition, key, packed[start : start + CHUNK_BYTES])
                keys.append(key)
            manifest = _MANIFEST + json.dumps({"version": version, "chunks": len(keys)}).encode()
            fut = self._put(partition, str(partition), manifest)
            for key in self._chunks.get(partition, []):
                with contextlib.suppress(KeyError):
                    del compat.table_store(self.table)[key]
                self.table.send_changelog(partition, key, None, value_serializer="raw")
        self._chunks[partition] = keys
        return fut

    def _put(self, partition: int, key: str, value: bytes) -> Any:
        # What `table[key] = value` does, for an explicit partition, keeping the future.
        compat.table_store(self.table)[key] = value
        return self.table.send_changelog(partition, key, value)
