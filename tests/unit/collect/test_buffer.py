"""The collector's disk buffer: order, ack and resume, segment deletion, the bound, torn tails,
corrupt checkpoints, and a property over random appends, acks and reopens."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.collect.buffer import (
    CHECKPOINT,
    BufferCorrupt,
    BufferedRecord,
    BufferFull,
    DiskBuffer,
    DiskBufferError,
    Record,
    encode_frame,
)
from pipeline.collect.sender import BufferedKafkaSender
from pipeline.contracts.partitioning import partition_for
from pipeline.errors import PipelineError


def rec(i: int, topic: str = "mdc.node-telemetry", key: bytes | None = b"n1") -> Record:
    return Record(topic, key, f'{{"i": {i}}}'.encode())


def as_records(got: list[BufferedRecord]) -> list[Record]:
    return [Record(r.topic, r.key, r.value) for r in got]


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("seg-*.buf"))


def open_buffer(directory: Path, **kw: int) -> DiskBuffer:
    return DiskBuffer(
        directory, max_bytes=kw.get("max_bytes", 1 << 20), segment_bytes=kw.get("seg", 256)
    )


def test_records_come_back_in_order_with_positions(tmp_path: Path) -> None:
    records = [rec(0), rec(1, key=None), rec(2, topic="mdc.request-log", key=b""), rec(3)]
    with open_buffer(tmp_path / "buf") as buf:
        assert buf.append(records) == 4
        got = buf.peek(10)
        assert [r.position for r in got] == [0, 1, 2, 3]
        assert as_records(got) == records
        assert got[1].key is None and got[2].key == b""
        assert as_records(buf.peek(2)) == records[:2]  # peek moves nothing
        assert buf.pending_records == 4


def test_ack_then_reopen_resumes_right_after_the_last_ack(tmp_path: Path) -> None:
    directory = tmp_path / "buf"
    records = [rec(i) for i in range(10)]
    with open_buffer(directory) as buf:
        buf.append(records)
        buf.ack(buf.peek(4)[-1].position)  # 0..3 sent
        assert as_records(buf.peek(100)) == records[4:]
        buf.ack(2)  # an old position: nothing changes
        assert buf.next_position == 4
    assert json.loads((directory / CHECKPOINT).read_text()) == {"format": 1, "next_position": 4}
    with open_buffer(directory) as again:
        got = again.peek(100)
        assert [r.position for r in got] == list(range(4, 10))
        assert as_records(got) == records[4:]
        again.append([rec(10)])
        assert again.peek(100)[-1].position == 10


def test_ack_beyond_the_last_record_is_a_bug(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "buf") as buf:
        buf.append([rec(0)])
        with pytest.raises(ValueError, match="beyond the last record"):
            buf.ack(1)


def test_fully_sent_segments_are_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "buf"
    frame = len(encode_frame(rec(0)))
    with DiskBuffer(directory, max_bytes=1 << 20, segment_bytes=8 + 3 * frame) as buf:
        buf.append([rec(i) for i in range(10)])  # 3 + 3 + 3 + 1
        assert len(segments(directory)) == 4
        assert segments(directory)[1] == f"seg-{3:020d}.buf"
        buf.ack(4)  # first segment fully sent, second half
        assert segments(directory) == [f"seg-{p:020d}.buf" for p in (3, 6, 9)]
        buf.ack(9)  # everything, the segment being written too
        assert segments(directory) == []
        assert buf.disk_bytes == 0
        buf.append([rec(10)])
        assert segments(directory) == [f"seg-{10:020d}.buf"]
        assert [r.position for r in buf.peek(5)] == [10]


def test_a_full_buffer_refuses_whole_batches_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = len(encode_frame(rec(0)))
    with DiskBuffer(tmp_path / "buf", max_bytes=8 + 5 * frame, segment_bytes=1 << 20) as buf:
        buf.append([rec(i) for i in range(4)])
        with caplog.at_level(logging.WARNING), pytest.raises(BufferFull) as info:
            buf.append([rec(4), rec(5)])
        assert "full" in str(info.value) and "max_bytes" in str(info.value)
        assert isinstance(info.value, PipelineError)
        with caplog.at_level(logging.WARNING), pytest.raises(BufferFull):
            buf.append([rec(6), rec(7)])
        assert buf.refused_records == 4 and buf.refused_batches == 2
        assert sum("is full" in r.getMessage() for r in caplog.records) == 1  # logged once
        # Nothing was dropped, the oldest least of all; the refused batches left no trace.
        assert as_records(buf.peek(10)) == [rec(i) for i in range(4)]
        buf.ack(3)
        buf.append([rec(4), rec(5)])  # room again once Kafka drained it
        assert [r.position for r in buf.peek(10)] == [4, 5]


def test_a_record_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    with DiskBuffer(tmp_path / "buf", max_bytes=100, segment_bytes=50) as buf:
        with pytest.raises(BufferFull):
            buf.append([Record("t", None, b"x" * 200)])
        assert buf.pending_records == 0


def test_a_torn_last_record_is_truncated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "buf"
    with open_buffer(directory, seg=1 << 20) as buf:
        buf.append([rec(i) for i in range(3)])
    (last,) = directory.glob("seg-*.buf")
    intact = last.stat().st_size
    torn = encode_frame(rec(3))[:-5]  # a crash mid-write
    with last.open("ab") as f:
        f.write(torn)
    with caplog.at_level(logging.WARNING), open_buffer(directory, seg=1 << 20) as buf:
        assert as_records(buf.peek(10)) == [rec(i) for i in range(3)]
        assert "torn last record" in caplog.text and str(last) in caplog.text
        assert last.stat().st_size == intact
        buf.append([rec(3)])  # appends after the truncation point
        assert [r.position for r in buf.peek(10)] == [0, 1, 2, 3]


def test_a_flipped_bit_in_the_last_record_is_detected_by_the_crc(tmp_path: Path) -> None:
    directory = tmp_path / "buf"
    with open_buffer(directory, seg=1 << 20) as buf:
        buf.append([rec(i) for i in range(3)])
    (last,) = directory.glob("seg-*.buf")
    data = bytearray(last.read_bytes())
    data[-1] ^= 0x01
    last.write_bytes(bytes(data))
    with open_buffer(directory, seg=1 << 20) as buf:
        assert as_records(buf.peek(10)) == [rec(0), rec(1)]


def test_a_corrupt_record_in_an_older_segment_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "buf"
    with open_buffer(directory, seg=64) as buf:
        buf.append([rec(i) for i in range(6)])
    first = sorted(directory.glob("seg-*.buf"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0x01
    first.write_bytes(bytes(data))
    with pytest.raises(BufferCorrupt, match=str(first)):
        open_buffer(directory, seg=64)


@pytest.mark.parametrize(
    "text", ["{not json", '{"format": 1}', '{"format": 9, "next_position": 1}', "[]", "\xff"]
)
def test_a_corrupt_checkpoint_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    directory = tmp_path / "buf"
    with open_buffer(directory) as buf:
        buf.append([rec(0), rec(1)])
        buf.ack(0)
    (directory / CHECKPOINT).write_text(text, encoding="utf-8")
    with pytest.raises(BufferCorrupt, match=str(directory / CHECKPOINT)):
        open_buffer(directory)
    # The failed open released the directory: a fixed checkpoint opens fine.
    (directory / CHECKPOINT).write_text('{"format": 1, "next_position": 1}', encoding="utf-8")
    with open_buffer(directory) as buf:
        assert [r.position for r in buf.peek(5)] == [1]


def test_a_checkpoint_outside_the_segments_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "buf"
    with open_buffer(directory) as buf:
        buf.append([rec(0), rec(1)])
    (directory / CHECKPOINT).write_text('{"format": 1, "next_position": 7}', encoding="utf-8")
    with pytest.raises(BufferCorrupt, match="next record 7"):
        open_buffer(directory)


def test_sent_segments_left_by_a_crash_after_the_checkpoint_are_removed(tmp_path: Path) -> None:
    directory = tmp_path / "buf"
    with open_buffer(directory, seg=64) as buf:
        buf.append([rec(i) for i in range(6)])
    names = segments(directory)
    # The checkpoint was written, the process died before deleting the sent segments.
    (directory / CHECKPOINT).write_text('{"format": 1, "next_position": 5}', encoding="utf-8")
    with open_buffer(directory, seg=64) as buf:
        assert [r.position for r in buf.peek(10)] == [5]
        assert segments(directory) == names[-1:]


def test_one_buffer_per_directory(tmp_path: Path) -> None:
    with open_buffer(tmp_path / "buf"), pytest.raises(DiskBufferError, match="in use"):
        open_buffer(tmp_path / "buf")


# -- the property: any mix of appends, acks and reopens keeps exactly the unacked records


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 7), st.sampled_from([b"a", None, b"long" * 9])),
        st.tuples(st.just("ack"), st.integers(0, 12), st.none()),
        st.tuples(st.just("reopen"), st.just(0), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_appends_acks_and_reopens_keep_exactly_the_unacked_records(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, bytes | None]]
) -> None:
    directory = tmp_path_factory.mktemp("prop")
    buf = DiskBuffer(directory, max_bytes=1 << 20, segment_bytes=120)
    model: list[tuple[int, Record]] = []
    next_position = 0
    try:
        for op, n, key in ops:
            if op == "append":
                batch = [
                    Record(f"t{n % 2}", key, f"v{next_position + i}".encode()) for i in range(n)
                ]
                buf.append(batch)
                model += [(next_position + i, r) for i, r in enumerate(batch)]
                next_position += n
            elif op == "ack" and model:
                through = model[min(n, len(model) - 1)][0]
                buf.ack(through)
                model = [(p, r) for p, r in model if p > through]
            elif op == "reopen":
                buf.close()
                buf = DiskBuffer(directory, max_bytes=1 << 20, segment_bytes=120)
            got = buf.peek(1000)
            assert [(r.position, Record(r.topic, r.key, r.value)) for r in got] == model
            assert buf.pending_records == len(model)
            # No segment on disk holds only sent records.
            firsts = [int(name[4:-4]) for name in segments(directory)]
            if model:
                assert firsts and firsts[0] <= model[0][0]
                assert len(firsts) < 2 or firsts[1] > model[0][0]
            else:
                assert firsts == []
    finally:
        buf.close()


# -- the sender's round logic, against a fake producer (no network here)


class FakeProducer:
    """Records what was produced; deliveries of values in `fail` fail, `refuse` is not taken."""

    def __init__(self, fail: frozenset[bytes] = frozenset(), refuse: bytes | None = None) -> None:
        self.fail = fail
        self.refuse = refuse
        self.produced: list[tuple[str, bytes | None, bytes, int]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int
    ) -> asyncio.Future[None]:
        if value == self.refuse:
            raise KafkaTimeoutError("accumulator full")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value in self.fail:
            fut.set_exception(KafkaTimeoutError("batch expired"))
        else:
            self.produced.append((topic, key, value, partition))
            fut.set_result(None)
        return fut

    async def stop(self) -> None:
        return None


def _drain_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, producers: list[FakeProducer], n: int
) -> BufferedKafkaSender:
    queue = list(producers)

    async def connect(self: BufferedKafkaSender) -> FakeProducer:
        return queue.pop(0)

    monkeypatch.setattr(BufferedKafkaSender, "_connect", connect)
    buf = open_buffer(tmp_path / "buf")
    buf.append([rec(i, key=None if i % 4 == 0 else f"n{i % 3}".encode()) for i in range(n)])
    sender = BufferedKafkaSender(buf, "fake:9092", topic_prefix="p.", backoff_s=0.01)

    async def run() -> None:
        async with sender:
            async with asyncio.timeout(10):
                while buf.pending_records:
                    await asyncio.sleep(0.01)

    try:
        asyncio.run(run())
    finally:
        buf.close()
    return sender


def test_sender_places_records_by_key_and_acks_after_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = FakeProducer()
    sender = _drain_with(tmp_path, monkeypatch, [producer], 10)
    assert [value for _, _, value, _ in producer.produced] == [rec(i).value for i in range(10)]
    for i, (topic, key, _, part) in enumerate(producer.produced):
        assert topic == "p.mdc.node-telemetry"
        assert part == (i % 4 if key is None else partition_for(key, 4))
    assert sender.records_sent == 10 and sender.send_failures == 0
    assert sender.state == "stopped"
    with open_buffer(tmp_path / "buf") as again:
        assert again.pending_records == 0


def test_a_failed_delivery_resends_only_what_was_not_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = FakeProducer(fail=frozenset({rec(3).value}))
    second = FakeProducer()
    with caplog.at_level(logging.WARNING, logger="pipeline.collect.sender"):
        sender = _drain_with(tmp_path, monkeypatch, [first, second], 10)
    assert [v for *_, v, _ in first.produced] == [rec(i).value for i in range(10) if i != 3]
    assert [v for *_, v, _ in second.produced] == [rec(3).value]  # nothing twice
    assert sender.records_sent == 10 and sender.send_failures == 1
    assert "batch expired" in (sender.last_error or "")
    messages = [r.getMessage() for r in caplog.records]
    assert sum(" is down (" in m for m in messages) == 1
    assert sum(" is back: " in m for m in messages) == 1


def test_a_record_the_producer_does_not_take_is_sent_after_its_predecessors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FakeProducer(refuse=rec(5).value)
    second = FakeProducer()
    sender = _drain_with(tmp_path, monkeypatch, [first, second], 8)
    assert [v for *_, v, _ in first.produced] == [rec(i).value for i in range(5)]
    assert [v for *_, v, _ in second.produced] == [rec(i).value for i in range(5, 8)]
    assert sender.records_sent == 8 and sender.send_failures == 1


class StuckProducer(FakeProducer):
    """Kafka gone mid-round: deliveries never confirm and a clean stop would wait forever."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_hard = False
        self._sender = self
        self.client = self

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int
    ) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    async def stop(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:  # the sender task and the client, closed without flushing
        self.closed_hard = True


def test_stop_while_kafka_is_down_keeps_the_records_and_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = StuckProducer()

    async def connect(self: BufferedKafkaSender) -> FakeProducer:
        return producer

    monkeypatch.setattr(BufferedKafkaSender, "_connect", connect)
    with open_buffer(tmp_path / "buf") as buf:
        buf.append([rec(i) for i in range(5)])
        sender = BufferedKafkaSender(buf, "fake:9092", down_after_s=0.05)

        async def run() -> None:
            await sender.start()
            async with asyncio.timeout(5):
                while sender.state != "down":
                    await asyncio.sleep(0.01)
            async with asyncio.timeout(5):
                await sender.stop(grace_s=0.1)

        asyncio.run(run())
        assert sender.state == "stopped" and producer.closed_hard
        assert buf.pending_records == 5 and sender.records_sent == 0
