"""Collector output that survives Kafka being down: a bounded on-disk queue.

`DiskBuffer` is an append-only queue of already-encoded records (topic, key, value) in segment
files, acknowledged by position; `sender.BufferedKafkaSender` drains it to Kafka in order and
acks the buffer only after the broker acknowledged. Fluent Bit's filesystem buffering is the anchor:
readings go to disk first, Kafka gets them when it can, a restart resumes from the disk.

On disk (`directory`)::

    seg-<position of its first record, 20 digits>.buf   b"MDCBUF1\\n", then frames
    checkpoint.json                                     {"format": 1, "next_position": N}
    lock                                                flock: one DiskBuffer per directory

A frame is `>II` (body length, CRC-32 of the body) then the body: `>Hi` (topic length, key
length or -1 for no key), the topic (UTF-8), the key, the value. Positions are consecutive
integers over the buffer's whole life; a segment's records are its name's position onwards.
The checkpoint holds the first position not yet acknowledged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

MAGIC = b"MDCBUF1\n"
CHECKPOINT = "checkpoint.json"
_FRAME = struct.Struct(">II")
_BODY = struct.Struct(">Hi")
_CHECKPOINT_FORMAT = 1


class DiskBufferError(PipelineError):
    """The collector's disk buffer cannot do what was asked (full, corrupt, locked, I/O)."""


class BufferFull(DiskBufferError):
    """`append` refused a batch: storing it would take the buffer past `max_bytes`."""

    def __init__(self, directory: Path, needed: int, used: int, max_bytes: int) -> None:
        self.directory = directory
        self.needed = needed
        self.used = used
        self.max_bytes = max_bytes
        super().__init__(
            f"disk buffer {directory} is full: {needed} more bytes would exceed max_bytes="
            f"{max_bytes} ({used} in use); nothing of this batch was stored - the records are "
            "a gap until Kafka drains the buffer (raise max_bytes if outages last longer)"
        )


class BufferCorrupt(DiskBufferError):
    """A segment or the checkpoint cannot be trusted; the message names the file."""


@dataclass(frozen=True)
class Record:
    """One encoded record for a topic (its contract name, without the sender's prefix)."""

    topic: str
    key: bytes | None
    value: bytes


class BufferedRecord(NamedTuple):
    """A record read back from the buffer, with the position to `ack` once it is sent."""

    position: int
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class _Segment:
    path: Path
    first: int  # position of its first record
    count: int  # records in it
    size: int  # bytes in the file, header included

    @property
    def end(self) -> int:
        return self.first + self.count


def _segment_path(directory: Path, first: int) -> Path:
    return directory / f"seg-{first:020d}.buf"


def encode_frame(record: Record) -> bytes:
    """One record as a frame: length + CRC header, then topic, key and value."""
    topic = record.topic.encode()
    key = record.key
    body = (
        _BODY.pack(len(topic), -1 if key is None else len(key))
        + topic
        + (key or b"")
        + record.value
    )
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> tuple[str, bytes | None, bytes]:
    topic_len, key_len = _BODY.unpack_from(body)
    at = _BODY.size
    topic = body[at : at + topic_len].decode()
    at += topic_len
    key = None if key_len < 0 else body[at : at + key_len]
    return topic, key, body[at + max(key_len, 0) :]


def _read_frame(f: IO[bytes]) -> bytes | None:
    """The next frame's body, or None at the end or at a torn/corrupt frame."""
    header = f.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    length, crc = _FRAME.unpack(header)
    body = f.read(length)
    if len(body) < length or zlib.crc32(body) != crc or length < _BODY.size:
        return None
    return body


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskBuffer:
    """A bounded, append-only queue of records on disk, acknowledged by position.

    Durability point: `append` returns after the frames are written and the segment fsynced (a
    new segment's directory entry too); `ack` returns after the checkpoint is replaced
    atomically (temp file, fsync, rename, fsync of the directory). So after a crash a new
    `DiskBuffer` on the same directory holds exactly the records appended and not acked.
    Opening it truncates a torn last frame (a crash mid-append: that `append` never returned)
    with a warning; a bad frame anywhere but the end of the last segment, a gap between
    segments or an unreadable checkpoint is `BufferCorrupt` naming the file.

    Bounded: when a batch would take the segment files past `max_bytes`, `append` refuses the
    whole batch with `BufferFull` (counted in `refused_records` / `refused_batches`, logged once
    per full spell). It never drops the oldest records to make room: they are energy and cost
    readings that finance totals are built from, and a silently lost old hour is worse than a
    visible gap now - the collector's poll records the refused interval as a gap and logs it.

    Not safe for two processes (a `lock` file is flocked); safe for threads (one lock), so the
    collector may call `append` via `asyncio.to_thread` to keep fsyncs off its event loop.
    """

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        if segment_bytes <= len(MAGIC) or max_bytes <= len(MAGIC):
            raise ValueError("max_bytes and segment_bytes must leave room for records")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        #: Records and batches `append` refused because the buffer was full.
        self.refused_records = 0
        self.refused_batches = 0
        self._mutex = threading.Lock()
        self._is_full = False
        self._segments: list[_Segment] = []
        self._writer: IO[bytes] | None = None
        self._head_offset = len(MAGIC)  # byte offset of next_position in _segments[0]
        self._peeked: dict[int, int] = {}  # position -> end offset in _segments[0] (last peek)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file: IO[bytes] | None = (self.directory / "lock").open("ab")
        except OSError as exc:
            raise DiskBufferError(f"cannot use {self.directory} as a disk buffer: {exc}") from exc
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise DiskBufferError(
                f"disk buffer {self.directory} is in use by another collector (flock on "
                f"{self.directory / 'lock'}): give each collector its own buffer directory"
            ) from exc
        try:
            self.next_position = self._read_checkpoint()
            self._recover()
        except BaseException:
            self.close()
            raise

    # -- public API

    @property
    def end_position(self) -> int:
        """The position the next appended record gets."""
        return self._segments[-1].end if self._segments else self.next_position

    @property
    def pending_records(self) -> int:
        """Records appended and not yet acknowledged."""
        return self.end_position - self.next_position

    @property
    def disk_bytes(self) -> int:
        """Bytes in segment files (what `max_bytes` bounds): unacked records plus the acked
        prefix of the oldest segment."""
        return sum(seg.size for seg in self._segments)

    def append(self, records: Iterable[Record]) -> int:
        """Store `records` durably (fsynced) and return how many; all or nothing.

        Raises `BufferFull` if they do not fit under `max_bytes` (nothing stored).
        """
        frames = [encode_frame(r) for r in records]
        if not frames:
            return 0
        with self._mutex:
            self._check_room(frames)
            before = [(seg, seg.size, seg.count) for seg in self._segments[-1:]]
            created: list[_Segment] = []
            try:
                for frame in frames:
                    seg, writer = self._writer_for(len(frame), created)
                    writer.write(frame)
                    seg.size += len(frame)
                    seg.count += 1
                assert self._writer is not None
                self._writer.flush()
                os.fsync(self._writer.fileno())
            except OSError as exc:
                self._roll_back(before, created)
                raise DiskBufferError(
                    f"cannot write to disk buffer {self.directory}: {exc}; nothing of this "
                    "batch was stored"
                ) from exc
            if self._is_full:
                self._is_full = False
                log.info("disk buffer %s accepts records again", self.directory)
            return len(frames)

    def peek(self, max_records: int) -> list[BufferedRecord]:
        """The oldest `max_records` unacknowledged records, in append order (nothing moves)."""
        with self._mutex:
            out: list[BufferedRecord] = []
            self._peeked = {}
            position = self.next_position
            for index, seg in enumerate(self._segments):
                if len(out) >= max_records:
                    break
                offset = self._head_offset if index == 0 else len(MAGIC)
                with seg.path.open("rb") as f:
                    f.seek(offset)
                    while position < seg.end and len(out) < max_records:
                        body = _read_frame(f)
                        if body is None:
                            raise BufferCorrupt(
                                f"{seg.path}: record {position} is unreadable (it was valid "
                                "when the buffer was opened): the disk is failing or something "
                                "else writes there"
                            )
                        out.append(BufferedRecord(position, *_decode_body(body)))
                        if index == 0:
                            self._peeked[position] = f.tell()
                        position += 1
            return out

    def ack(self, position: int) -> None:
        """Mark every record up to and including `position` sent; persist it; drop sent segments."""
        with self._mutex:
            if position < self.next_position:
                return
            if position >= self.end_position:
                raise ValueError(
                    f"ack({position}) beyond the last record ({self.end_position - 1}) of "
                    f"{self.directory}"
                )
            self._write_checkpoint(position + 1)
            self.next_position = position + 1
            self._advance_head(position)

    def close(self) -> None:
        """Close the files and release the directory lock (safe to call twice)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> DiskBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- appending

    def _check_room(self, frames: list[bytes]) -> None:
        needed = sum(len(f) for f in frames)
        needed += len(MAGIC) * (1 + needed // max(self.segment_bytes - len(MAGIC), 1))
        used = self.disk_bytes
        if used + needed > self.max_bytes:
            self.refused_records += len(frames)
            self.refused_batches += 1
            error = BufferFull(self.directory, needed, used, self.max_bytes)
            if not self._is_full:
                self._is_full = True
                log.warning("%s (logged once until it accepts records again)", error)
            raise error

    def _writer_for(self, frame_bytes: int, created: list[_Segment]) -> tuple[_Segment, IO[bytes]]:
        """The segment the next frame goes to and its open file, rolling when the last is full
        (a segment holds at least one record, however large)."""
        last = self._segments[-1] if self._segments else None
        if last is not None and (last.count == 0 or last.size + frame_bytes <= self.segment_bytes):
            if self._writer is None:
                self._writer = last.path.open("ab")
            return last, self._writer
        if self._writer is not None:  # roll: the full segment is made durable first
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
        first = self.end_position
        seg = _Segment(_segment_path(self.directory, first), first, 0, len(MAGIC))
        writer = seg.path.open("xb")
        self._writer = writer
        self._segments.append(seg)
        created.append(seg)
        writer.write(MAGIC)
        writer.flush()
        os.fsync(writer.fileno())
        _fsync_dir(self.directory)
        return seg, writer

    def _roll_back(self, before: list[tuple[_Segment, int, int]], created: list[_Segment]) -> None:
        """Undo a failed append: truncate the old last segment, remove new ones."""
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None
        for seg in created:
            self._segments.remove(seg)
            with contextlib.suppress(OSError):
                seg.path.unlink()
        for seg, size, count in before:
            seg.size, seg.count = size, count
            with contextlib.suppress(OSError), seg.path.open("r+b") as f:
                f.truncate(size)
                os.fsync(f.fileno())

    # -- acknowledging

    def _write_checkpoint(self, next_position: int) -> None:
        path = self.directory / CHECKPOINT
        tmp = path.with_name(CHECKPOINT + ".tmp")
        data = json.dumps({"format": _CHECKPOINT_FORMAT, "next_position": next_position})
        try:
            with tmp.open("wb") as f:
                f.write(data.encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise DiskBufferError(f"cannot write checkpoint {path}: {exc}") from exc

    def _advance_head(self, position: int) -> None:
        """Move the read head past `position` and delete the segments now fully sent."""
        end_offset = self._peeked.get(position)
        while self._segments and self._segments[0].end <= self.next_position:
            seg = self._segments.pop(0)
            if not self._segments and self._writer is not None:
                self._writer.close()
                self._writer = None
            seg.path.unlink(missing_ok=True)
            self._head_offset = len(MAGIC)
            end_offset = None
        self._peeked = {}
        if not self._segments:
            return
        head = self._segments[0]
        if end_offset is None:
            end_offset = self._offset_of(head, self.next_position)
        self._head_offset = end_offset

    def _offset_of(self, seg: _Segment, position: int) -> int:
        """The byte offset of record `position` in `seg` (scanning frame headers)."""
        offset = len(MAGIC)
        with seg.path.open("rb") as f:
            for _ in range(position - seg.first):
                f.seek(offset)
                length, _crc = _FRAME.unpack(f.read(_FRAME.size))
                offset += _FRAME.size + length
        return offset

    # -- opening

    def _read_checkpoint(self) -> int:
        path = self.directory / CHECKPOINT
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise BufferCorrupt(f"checkpoint {path} is unreadable: {exc}") from exc
        try:
            data = json.loads(text)
            position = data["next_position"]
            ok = data.get("format") == _CHECKPOINT_FORMAT and isinstance(position, int)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BufferCorrupt(
                f"checkpoint {path} is corrupt ({exc}): inspect it; delete the whole buffer "
                "directory only if resending or losing its records is acceptable"
            ) from exc
        if not ok or position < 0:
            raise BufferCorrupt(
                f"checkpoint {path} is corrupt: expected "
                f'{{"format": {_CHECKPOINT_FORMAT}, "next_position": <int >= 0>}}, got {text!r}'
            )
        return int(position)

    def _recover(self) -> None:
        (self.directory / (CHECKPOINT + ".tmp")).unlink(missing_ok=True)
        paths = sorted(self.directory.glob("seg-*.buf"))
        for index, path in enumerate(paths):
            try:
                first = int(path.name[4:-4])
            except ValueError as exc:
                raise BufferCorrupt(f"{path}: not a segment name (seg-<position>.buf)") from exc
            seg = self._scan(path, first, is_last=index == len(paths) - 1)
            if self._segments and self._segments[-1].end != first:
                raise BufferCorrupt(
                    f"{path}: starts at record {first} but the segment before ends at "
                    f"{self._segments[-1].end}: a segment is missing"
                )
            self._segments.append(seg)
        checkpoint = self.directory / CHECKPOINT
        if self._segments and not (
            self._segments[0].first <= self.next_position <= self._segments[-1].end
        ):
            missing = "" if checkpoint.exists() else " (missing)"
            raise BufferCorrupt(
                f"checkpoint {checkpoint}{missing} says next record {self.next_position}, but the "
                f"segments hold {self._segments[0].first}..{self._segments[-1].end - 1}"
            )
        # A crash between writing the checkpoint and deleting sent segments leaves them here.
        self._advance_head(self.next_position - 1)

    def _scan(self, path: Path, first: int, *, is_last: bool) -> _Segment:
        """Count a segment's valid records; truncate a torn tail of the last one."""
        count = 0
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                size = path.stat().st_size
                if is_last and size < len(MAGIC):  # crashed while creating it
                    with path.open("wb") as w:
                        w.write(MAGIC)
                        os.fsync(w.fileno())
                    return _Segment(path, first, 0, len(MAGIC))
                raise BufferCorrupt(f"{path}: not a disk buffer segment (bad header)")
            good = f.tell()
            while _read_frame(f) is not None:
                count += 1
                good = f.tell()
            size = path.stat().st_size
        if good < size:
            if not is_last:
                raise BufferCorrupt(
                    f"{path}: record {first + count} at byte {good} is corrupt and it is not "
                    "the last segment (not a torn write): move the directory aside to inspect it"
                )
            log.warning(
                "disk buffer %s: torn last record at byte %d (%d bytes, a crash mid-append) "
                "truncated; %d records kept",
                path,
                good,
                size - good,
                count,
            )
            with path.open("r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        return _Segment(path, first, count, good)
