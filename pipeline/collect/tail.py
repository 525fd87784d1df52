"""Follow a log file through rotations and restarts, losing and repeating nothing.

A position is the file's identity - its inode and a fingerprint (SHA-256) of its first bytes,
as Filebeat and Fluent Bit do, since inodes are reused - plus a byte offset after the last
complete line handed out. `commit` stores it atomically (write, fsync, rename); a new `Tailer`
resumes from it. Only complete lines (ending in a newline) are returned; a partial last line
waits for the rest.

Rotations:
- rename (logrotate's default, nginx reopening on USR1): the renamed file is read to its end
  before the new one, and kept open until the new one has bytes (the writer may append to the
  old one until it reopens); after a restart the checkpoint's file is found again among
  `<name>.*` beside it by its identity;
- copytruncate: the file shrinks below the position under the same inode; the lines written
  between the last read and the copy are in the copy (`<name>.1` and friends), found by the
  fingerprint of its head, and read from the position to its end; then the truncated file is
  read from its start.
A file whose identity matches nothing known is read from its start (a new log).

An empty log has no head to fingerprint: if it is copied and truncated before a read sees its
first bytes, the copy is the uncompressed `<name>.*` modified after the log was last seen
empty (its mtime: when logrotate copied it, or the log's own last write if the copy keeps it;
an older rotated file was last written before), and it is read from its start.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

#: Bytes of a file's head its fingerprint covers (fewer while the file is shorter).
HEAD_BYTES = 1024
#: Bytes read per `pread` while looking for complete lines.
READ_BYTES = 1 << 20
#: Rotated files that are compressed (logrotate's `compress`): never a copy to read lines from.
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")


@dataclass(frozen=True)
class Identity:
    inode: int
    #: SHA-256 of the first `head_len` bytes.
    head: str
    head_len: int


@dataclass(frozen=True)
class Position:
    identity: Identity
    offset: int


def _head(f: IO[bytes], length: int = HEAD_BYTES) -> tuple[str, int]:
    data = os.pread(f.fileno(), length, 0)
    return hashlib.sha256(data).hexdigest(), len(data)


def identity_of(f: IO[bytes]) -> Identity:
    head, length = _head(f)
    return Identity(os.fstat(f.fileno()).st_ino, head, length)


def _same_file(f: IO[bytes], known: Identity) -> bool:
    """`f` is the file `known` names: its head starts with the bytes `known` fingerprinted."""
    head, length = _head(f, known.head_len)
    return length == known.head_len and head == known.head


class TailError(OSError):
    """The checkpoint cannot be read or written (names the file)."""


class Tailer:
    """Complete lines of `path`, from the checkpoint on, across rotations."""

    def __init__(self, path: Path, checkpoint: Path) -> None:
        self.path = path
        self.checkpoint = checkpoint
        #: Rotated files still to drain (oldest first), each with the offset to read from.
        self._draining: list[tuple[IO[bytes], int]] = []
        self._file: IO[bytes] | None = None
        self._identity: Identity | None = None
        self._offset = 0
        #: When the current file was last seen empty (its head unknown), epoch s.
        self._empty_since: float | None = None
        #: (inode, size, mtime_ns) of the rotated files read to their end: never a copy.
        self._drained: list[tuple[int, int, int]] = []
        self._resume(self._load())

    # -- reading -------------------------------------------------------------------------------
    def read(self, max_lines: int = 10_000) -> list[tuple[bytes, Position]]:
        """Up to `max_lines` complete lines (without the newline), each with the position after
        it: commit a line's position once the line is safely handled."""
        out: list[tuple[bytes, Position]] = []
        self._follow()  # a rotation queues the old file before anything of the new is read
        while self._draining and len(out) < max_lines:
            f, offset = self._draining[0]
            identity = identity_of(f)
            lines, offset = _lines(f, offset, max_lines - len(out))
            out += [(line, Position(identity, end)) for line, end in lines]
            if len(out) < max_lines and (len(self._draining) > 1 or self._writer_moved(f)):
                # at its end, and the writer has moved on: it gets no more lines
                st = os.fstat(f.fileno())
                self._drained = [*self._drained[-15:], (st.st_ino, st.st_size, st.st_mtime_ns)]
                f.close()
                self._draining.pop(0)
            else:
                # the writer may still append to it (logrotate renames, then signals nginx)
                self._draining[0] = (f, offset)
                break
        if len(out) < max_lines and not self._draining:
            if self._file is None:
                self._open_current(0)
            if self._file is not None:
                if self._identity is None or self._identity.head_len < HEAD_BYTES:
                    self._identity = identity_of(self._file)  # the head grows until full
                lines, self._offset = _lines(self._file, self._offset, max_lines - len(out))
                out += [(line, Position(self._identity, end)) for line, end in lines]
                self._empty_since = time.time() if self._identity.head_len == 0 else None
        return out

    def _writer_moved(self, old: IO[bytes]) -> bool:
        """The log's writer writes to the new file now (it has bytes), not to `old`."""
        try:
            current = self.path.stat()
        except FileNotFoundError:
            return False
        return current.st_ino != os.fstat(old.fileno()).st_ino and current.st_size > 0

    def _follow(self) -> None:
        """Notice a rename or a truncation of `path` since the last read."""
        try:
            current = self.path.stat()
        except FileNotFoundError:
            return  # renamed, the new one not created yet: keep the old descriptor
        if self._file is None:
            self._open_current(0)
            return
        mine = os.fstat(self._file.fileno())
        if current.st_ino == mine.st_ino and self._copied_while_empty(mine.st_size):
            return
        if current.st_ino != mine.st_ino:
            # renamed away: drain what is left of it, then follow the new file from its start
            self._draining.append((self._file, self._offset))
            self._file = None
            self._open_current(0)
        elif mine.st_size < self._offset or (
            self._identity is not None and not _same_file(self._file, self._identity)
        ):
            # copytruncate (the file shrank, or already grew again with other bytes at its
            # head): the lines after our offset went into the copy
            copy = self._find_copy(self._identity, self._offset)
            if copy is not None:
                self._draining.append((copy, self._offset))
            self._offset = 0
            self._identity = identity_of(self._file)

    def _copied_while_empty(self, size: int) -> bool:
        """The log was seen empty, has bytes now, and a copy was made since: drain the copy
        (the lines before the truncation) before the log (the lines after it)."""
        if self._empty_since is None or self._offset != 0 or size == 0:
            return False
        since, self._empty_since = self._empty_since, None
        draining = {os.fstat(f.fileno()).st_ino for f, _ in self._draining}
        copies = [
            p
            for p in self._candidates()
            if not p.name.endswith(COMPRESSED)
            and (st := p.stat()).st_mtime > since
            and st.st_size
            and st.st_ino not in draining
            and (st.st_ino, st.st_size, st.st_mtime_ns) not in self._drained
        ]
        if not copies:
            return False
        self._draining.append((copies[-1].open("rb", buffering=0), 0))
        return True

    def _open_current(self, offset: int) -> None:
        try:
            f = self.path.open("rb", buffering=0)
        except FileNotFoundError:
            return
        self._file, self._offset, self._identity = f, offset, identity_of(f)
        self._empty_since = None

    def _candidates(self) -> list[Path]:
        return sorted(
            (p for p in self.path.parent.glob(self.path.name + ".*") if p.is_file()),
            key=lambda p: p.stat().st_mtime,
        )

    def _find_copy(self, known: Identity | None, offset: int) -> IO[bytes] | None:
        if known is None:
            return None
        for path in self._candidates():
            f = path.open("rb", buffering=0)
            if _same_file(f, known) and os.fstat(f.fileno()).st_size >= offset:
                return f
            f.close()
        return None

    # -- checkpoints ---------------------------------------------------------------------------
    def commit(self, position: Position) -> None:
        """Store `position` atomically: a restart resumes after the line it follows."""
        tmp = self.checkpoint.with_name(f".{self.checkpoint.name}.tmp")
        body = json.dumps({"format": 1, **asdict(position)}).encode()
        try:
            with tmp.open("wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.checkpoint)
        except OSError as exc:
            raise TailError(f"{self.checkpoint}: cannot write the position: {exc}") from exc

    def _load(self) -> Position | None:
        try:
            data = json.loads(self.checkpoint.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TailError(f"{self.checkpoint}: not a position file: {exc}") from exc
        try:
            ident = data["identity"]
            return Position(
                Identity(int(ident["inode"]), str(ident["head"]), int(ident["head_len"])),
                int(data["offset"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TailError(f"{self.checkpoint}: not a position file: {exc!r}") from exc

    def _resume(self, position: Position | None) -> None:
        """Find the checkpoint's file: the log itself, or a rotated copy beside it."""
        if position is None:
            self._open_current(0)
            return
        known, offset = position.identity, position.offset
        try:
            f = self.path.open("rb", buffering=0)
        except FileNotFoundError:
            f = None
        if f is not None and os.fstat(f.fileno()).st_ino == known.inode and _same_file(f, known):
            if os.fstat(f.fileno()).st_size >= offset:
                self._file, self._offset, self._identity = f, offset, known
                if known.head_len == 0:  # seen empty when the position was committed
                    self._empty_since = self.checkpoint.stat().st_mtime
                    self._copied_while_empty(os.fstat(f.fileno()).st_size)
                return
            # truncated while we were away: the rest of our lines are in the copy
            copy = self._find_copy(known, offset)
            if copy is not None:
                self._draining.append((copy, offset))
            self._file, self._offset, self._identity = f, 0, identity_of(f)
            return
        # renamed while we were away (the old file is beside it under its inode), or
        # copytruncated (a copy with its head): finish that one, then read the log from 0
        found: IO[bytes] | None = None
        for path in self._candidates():
            old = path.open("rb", buffering=0)
            if os.fstat(old.fileno()).st_ino == known.inode and _same_file(old, known):
                found = old
                break
            old.close()
        if found is None:
            found = self._find_copy(known, offset)
        if found is not None:
            self._draining.append((found, offset))
        if f is not None:
            self._file, self._offset, self._identity = f, 0, identity_of(f)

    def close(self) -> None:
        for f, _ in self._draining:
            f.close()
        self._draining.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


def _lines(f: IO[bytes], offset: int, limit: int) -> tuple[list[tuple[bytes, int]], int]:
    """Complete lines of `f` from `offset` (at most `limit`), each with the offset after it.

    Read with `pread` at the offset, never through a buffered file object: after a truncation
    a buffer would still hold the old bytes, and a seek within it would hand them out again.
    """
    fd = f.fileno()
    out: list[tuple[bytes, int]] = []
    pending = b""  # an incomplete line read so far, starting at `offset`
    size = min(READ_BYTES, max(4096, limit * 512))
    while len(out) < limit:
        chunk = os.pread(fd, size, offset + len(pending))
        if not chunk:
            break  # nothing more, or a partial line still being written
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            offset += len(line) + 1
            out.append((line.rstrip(b"\r"), offset))
            if len(out) == limit:
                break
    return out, offset
