"""The lake on a filesystem: atomic segment landing and crash recovery.

Landing a segment (local filesystems): every file is written under a hidden temp name, flushed
and fsynced; then each is renamed to its final name and the directories are fsynced. Only then
does the driver commit the Kafka offset `last + 1`. A crash can leave temps (removed on start)
and, at worst, *some* files of the newest segment of a partition: `recover` detects that from
the segment's file count in the footers, removes the partial files and resumes at the
segment's first offset - so the largest fully landed offset per partition decides where
reading resumes, whatever Kafka's committed offset says.

Other pyarrow filesystems (`s3://`, `gs://`, ...) get each file written straight to its final
name (an object store's PUT is atomic per object); recovery works the same way.

One writer per topic-partition: on local filesystems an exclusive `flock` on
`<lake>/_landing/locks/<topic>+<partition>.lock` is held while a process owns the partition
(the kernel releases it when the process dies, even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import ConfigError
from pipeline.lake.datasets import Dataset
from pipeline.lake.paths import SegmentName, is_temp_of, parse_file_name, temp_name
from pipeline.lake.segment import SEGMENT_META, Segment

#: Parquet writer settings for every landed file.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3


@dataclass(frozen=True)
class Landed:
    """A landed file: its path relative to the dataset and its segment."""

    path: str
    segment: SegmentName


class Lake:
    """A lake rooted at a local path or a pyarrow filesystem URI."""

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        if "://" in text and not text.startswith("file://"):
            try:
                self.fs, path = pafs.FileSystem.from_uri(text)
            except Exception as exc:
                raise ConfigError(f"lake {text!r}: cannot open the filesystem: {exc}") from exc
            self.root = path.rstrip("/")
            self.local = False
        else:
            local = Path(text.removeprefix("file://")).resolve()
            local.mkdir(parents=True, exist_ok=True)
            self.fs = pafs.LocalFileSystem()
            self.root = str(local)
            self.local = True
        self.uri = text

    # -- paths -----------------------------------------------------------------------------------
    def dataset_root(self, dataset: Dataset) -> str:
        return f"{self.root}/{dataset.path}"

    def _inside(self, path: str) -> str:
        """`path` after normalization; refuses anything that would leave the lake."""
        normal = os.path.normpath(path) if self.local else path
        if normal != self.root and not normal.startswith(self.root + "/"):
            raise ValueError(f"{path!r} is outside the lake {self.root!r}")
        if not self.local and "/../" in f"/{path}/":
            raise ValueError(f"{path!r} escapes the lake")
        return normal

    # -- landing ---------------------------------------------------------------------------------
    def write_segment(self, dataset: Dataset, segment: Segment) -> list[str]:
        """Land every file of `segment`; returns their paths. Atomic per file (see module)."""
        base = self.dataset_root(dataset)
        finals = [self._inside(f"{base}/{f.directory}/{f.name}") for f in segment.files]
        if not self.local:
            for final, part in zip(finals, segment.files, strict=True):
                self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
                with self.fs.open_output_stream(final) as out:
                    pq.write_table(
                        part.table,
                        out,
                        compression=COMPRESSION,
                        compression_level=COMPRESSION_LEVEL,
                    )
            return finals
        token = uuid.uuid4().hex[:12]
        temps = []
        for final, part in zip(finals, segment.files, strict=True):
            directory, name = final.rsplit("/", 1)
            Path(directory).mkdir(parents=True, exist_ok=True)
            temp = Path(directory) / temp_name(name, token)
            with temp.open("wb") as out:
                pq.write_table(
                    part.table, out, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL
                )
                out.flush()
                os.fsync(out.fileno())
            temps.append(temp)
        for temp, final in zip(temps, finals, strict=True):
            temp.replace(final)
        for directory in sorted({final.rsplit("/", 1)[0] for final in finals}):
            fsync_dir(directory)
        return finals

    # -- recovery --------------------------------------------------------------------------------
    def list_files(self, dataset: Dataset) -> list[str]:
        """Every file below the dataset (temps included), relative to it."""
        base = self.dataset_root(dataset)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return [info.path[len(base) + 1 :] for info in infos if info.type == pafs.FileType.File]

    def landed(self, dataset: Dataset, topic: str, partition: int) -> list[Landed]:
        out = []
        for rel in self.list_files(dataset):
            seg = parse_file_name(rel.rsplit("/", 1)[-1])
            if seg is not None and seg.topic == topic and seg.partition == partition:
                out.append(Landed(rel, seg))
        return out

    def recover(self, dataset: Dataset, topic: str, partition: int) -> int | None:
        """Clean up after a crash; return the offset to resume `topic[partition]` at, or None
        when nothing of it has landed (then Kafka's committed offset, or the log start)."""
        base = self.dataset_root(dataset)
        files = self.list_files(dataset)
        for rel in files:
            if is_temp_of(rel.rsplit("/", 1)[-1], topic, partition):
                self.fs.delete_file(f"{base}/{rel}")
        landed = self.landed(dataset, topic, partition)
        if not landed:
            return None
        newest = max(landed, key=lambda item: item.segment.last).segment
        parts = [item for item in landed if item.segment == newest]
        expected = self.segment_file_count(f"{base}/{parts[0].path}")
        if len(parts) >= expected:
            return newest.last + 1
        for item in parts:  # a crash cut this segment short: land it again, whole
            self.fs.delete_file(f"{base}/{item.path}")
        return newest.first

    def segment_file_count(self, path: str) -> int:
        with self.fs.open_input_file(path) as handle:
            meta = pq.read_metadata(handle).metadata or {}
        info = json.loads(meta.get(SEGMENT_META, b"{}"))
        return int(info.get("files", 1))

    # -- ownership -------------------------------------------------------------------------------
    def lock(self, topic: str, partition: int) -> PartitionLock | None:
        """Try to become the writer of `topic[partition]` (None if another process is)."""
        if not self.local:
            return PartitionLock(None)
        path = Path(self.root) / "_landing" / "locks" / f"{topic}+{partition}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return PartitionLock(handle)


class PartitionLock:
    def __init__(self, handle: IO[str] | None) -> None:
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def fsync_dir(directory: str | Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
