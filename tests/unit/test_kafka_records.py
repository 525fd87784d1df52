"""The lean-record path relies on aiokafka's record objects having what the consumers read."""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder


def test_aiokafka_records_carry_offset_timestamp_key_and_value() -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=1_772_000_000_123, key=b"node-1", value=b'{"a":1}', headers=[])
    builder.append(1, timestamp=1_772_000_000_456, key=None, value=None, headers=[])
    batch = DefaultRecordBatch(bytes(builder.build()))
    records = list(batch)
    assert [(r.offset, r.timestamp, r.key, r.value) for r in records] == [
        (0, 1_772_000_000_123, b"node-1", b'{"a":1}'),
        (1, 1_772_000_000_456, None, None),
    ]
