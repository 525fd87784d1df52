"""The merge of co-partitioned topics: Kafka timestamp order, fixed tie-break, holds back."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.processors.merge import Merger


@dataclass(frozen=True)
class Rec:
    offset: int
    timestamp: int
    key: bytes | None = None
    value: bytes | None = None


def _drain(merger: Merger, caught_up: set[str]) -> list[tuple[str, int]]:
    return [
        (source, rec.offset)
        for source, run in merger.release(lambda s: s in caught_up)
        for rec in run
    ]


def test_releases_in_timestamp_order_with_node_first_on_ties() -> None:
    merger = Merger(["node", "request"])
    merger.add("request", [Rec(0, 10), Rec(1, 20), Rec(2, 20), Rec(3, 30)])
    merger.add("node", [Rec(0, 20), Rec(1, 25)])
    out = _drain(merger, {"node", "request"})
    assert out == [
        ("request", 0),
        ("node", 0),  # equal timestamp 20: the lower rank (node) first
        ("request", 1),
        ("request", 2),
        ("node", 1),
        ("request", 3),
    ]
    assert merger.buffered() == 0


def test_an_empty_source_that_is_not_caught_up_holds_everything_back() -> None:
    merger = Merger(["node", "request"])
    merger.add("request", [Rec(0, 10), Rec(1, 20)])
    assert _drain(merger, set()) == []
    assert merger.buffered("request") == 2
    # Node telemetry arrives later with an earlier timestamp: it still goes first.
    merger.add("node", [Rec(0, 15)])
    assert _drain(merger, set()) == [("request", 0), ("node", 0)]
    assert _drain(merger, {"node"}) == [("request", 1)]


def test_the_sequence_does_not_depend_on_how_records_were_batched() -> None:
    node = [Rec(i, 7 * i) for i in range(20)]
    request = [Rec(i, 3 * i) for i in range(50)]
    whole = Merger(["node", "request"])
    whole.add("node", node)
    whole.add("request", request)
    expected = _drain(whole, {"node", "request"})

    pieces = Merger(["node", "request"])
    got: list[tuple[str, int]] = []
    for i in range(10):  # fetches of 5 request logs and 2 node samples, never caught up
        pieces.add("request", request[5 * i : 5 * i + 5])
        pieces.add("node", node[2 * i : 2 * i + 2])
        got += _drain(pieces, set())
    got += _drain(pieces, {"node", "request"})  # end of the backlog
    assert got == expected
