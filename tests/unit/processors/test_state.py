"""Stage snapshots in a table: chunked below the broker's message limit, replaced atomically."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pipeline.processors import state
from pipeline.processors.state import SnapshotStore


class FakeTable:
    """The part of a Faust table SnapshotStore uses; records what goes to the changelog."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.changelog: list[tuple[int, str, bytes | None]] = []

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def send_changelog(self, partition: int, key: str, value: bytes | None, **_: Any) -> str:
        self.changelog.append((partition, key, value))
        return f"future:{key}"


def test_a_large_snapshot_is_chunked_and_comes_back_whole() -> None:
    table = FakeTable()
    store = SnapshotStore(table, "t.mdc.node-minutes")
    big = os.urandom(3 * state.CHUNK_BYTES)  # incompressible: stays over several chunks
    future = store.save(0, big)
    assert future == "future:0"  # the manifest is sent last
    assert all(len(value or b"") <= state.CHUNK_BYTES for _, _, value in table.changelog)
    assert {partition for partition, _, _ in table.changelog} == {0}
    assert [key for _, key, _ in table.changelog][-1] == "0"
    assert SnapshotStore(table, "t.mdc.node-minutes").load(0) == big


def test_a_new_snapshot_replaces_the_old_chunks() -> None:
    table = FakeTable()
    store = SnapshotStore(table, "t.mdc.request-log")
    store.save(2, b"first" * 10)
    store.save(2, b"second")
    assert SnapshotStore(table, "t.mdc.request-log").load(2) == b"second"
    assert sorted(table.data) == ["2", next(k for k in table.data if k.startswith("2."))]
    assert table.changelog[-1][2] is None  # the old chunk's tombstone
    assert store.load(3) is None


def test_a_missing_chunk_is_an_error_not_an_empty_state() -> None:
    table = FakeTable()
    store = SnapshotStore(table, "t.mdc.request-log")
    store.save(1, os.urandom(2 * state.CHUNK_BYTES))
    del table.data[next(k for k in table.data if k.startswith("1."))]
    with pytest.raises(RuntimeError, match="missing"):
        store.load(1)
