"""Lake compaction: merge the small files of closed hive partitions, atomically for readers.

Landing writes one file per segment part, so a day of a busy dataset is many small files.
`compact` rewrites them into files near `target_bytes` without changing a single row:

- Only *closed* partitions: a `date=` directory at least `older_than_days` days before the newest
  date present in the dataset (event time, not the wall clock: replays of old data compact the
  same way). `now`, if given, only caps that reference at its UTC date, so one future-dated row
  cannot close today's partition.
- Per leaf directory and topic-partition (one writer each), runs of small files that are next to
  each other in offset order become one file named `<topic>+<partition>+<first>-<last>.parquet`
  after the run's offsets; its footer `microdc.segment` says `files: 1, compacted: true`. Files
  of older and newer schemas (a newer one may carry an extra nullable column) merge into the
  union schema, older columns first; incompatible schemas are not merged together.
- The newest segment of every topic-partition in the whole dataset is never touched: the
  lander's crash recovery (`Lake.recover`) counts its parts. When that segment is incomplete (a
  landing in progress, or one a crash cut short that recovery will delete), the segment before
  it is kept too, because it becomes the newest once recovery deletes the partial one.
- Rows are only moved: the row multiset (unique by `_topic, _partition, _offset`) is the same
  before and after; each merged file's row count is checked against its inputs.

Atomic for readers, per leaf directory: a complete new copy of the directory is built in the
staging area `<lake>/_landing/compact/<run>/<id>` (every untouched entry hard-linked with
`os.link`, the merged files written under a temp name, fsynced, renamed), then the two
directories are swapped with one `renameat2(RENAME_EXCHANGE)`, the parent is fsynced and the old
copy (now at the staging path) is deleted. A reader that lists the directory sees either the
inputs or the merged file, never both, never neither. The staging area is outside the dataset
trees on purpose (not a hidden `.<dir>.compact-<token>` sibling of the leaf): DuckDB and Polars
globs descend into hidden directories, and `Lake.recover` lists them too, so a sibling copy
would be read twice. A reader that listed the old directory and opens an input after the swap
gets "file not found" (never wrong rows) and must retry, as with any file-level compaction
without a table format.

Safe while landing runs (one compaction or `rebuild` at a time: an exclusive `flock` on
`<lake>/_landing/compact.lock` is held for the whole run). Landing only ever adds files to a
leaf, or (recovery of a crashed segment) deletes parts of the newest segment, which this module
never merges. The leaf is listed (names and inodes, temps included) before its copy is built
and again right before the swap; if anything changed - a late record landed in a closed
partition - that directory is skipped this time (counted in `skipped`), so no new file is lost.
What changes in the microseconds between that second listing and the swap is reconciled just
after it: entries that appeared in the old copy are moved into the live directory (`rescued`),
entries that vanished from it are unlinked from the live one. A lander whose temp file lands in
the old copy and that renames it in the instant between the swap and that reconciliation fails
its rename, which it handles like a crash (the segment is not committed and lands again).

Crash safety: before a copy is built, a journal `<id>.json` next to it records its leaf and
its inode. A run that dies leaves its staging directory; the next run (under the lock) deletes
it, but first, for a copy that was swapped out (the directory at its path has another inode),
moves back every segment file that the live directory neither has nor overlaps with a file of
the same topic-partition (a file landed during the swap). Hidden `.<name>.compact-<token>`
directories found next to a leaf get the same treatment, then are removed.
Only local lakes on a Linux filesystem with `RENAME_EXCHANGE` (ext4, xfs, btrfs, tmpfs, ...).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ConfigError, PipelineError
from pipeline.lake.datasets import DATASETS, Dataset
from pipeline.lake.paths import SegmentName, file_name, parse_file_name, temp_name
from pipeline.lake.segment import SEGMENT_META
from pipeline.lake.store import COMPRESSION, COMPRESSION_LEVEL, Lake, fsync_dir

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_TARGET_BYTES = 128 * MIB
#: Rows buffered per row group of a merged file (inputs are read one at a time).
ROW_GROUP_ROWS = 262_144
#: Older layout of a leaf's new copy: a hidden sibling `.<name>.compact-<token>`.
_SIBLING = re.compile(r"^\.(?P<name>.+)\.compact-[0-9A-Za-z]+$")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass
class DatasetCompaction:
    """What one compaction run did to one dataset."""

    dataset: str
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    #: Rows rewritten into merged files.
    rows: int = 0
    #: Merged files written.
    merged: int = 0
    #: Leaf directories swapped for their compacted copy.
    directories: int = 0
    #: Leaf directories left as they were because their files changed during the run.
    skipped: int = 0


@dataclass
class CompactStats:
    datasets: dict[str, DatasetCompaction] = field(default_factory=dict)
    #: Staging directories of a crashed earlier run that were removed.
    leftovers: int = 0
    #: Files that landed during a swap (or a crashed run) and were moved back into place.
    rescued: int = 0

    @property
    def files_before(self) -> int:
        return sum(d.files_before for d in self.datasets.values())

    @property
    def files_after(self) -> int:
        return sum(d.files_after for d in self.datasets.values())

    @property
    def skipped(self) -> int:
        return sum(d.skipped for d in self.datasets.values())


@dataclass(frozen=True)
class _Entry:
    inode: int
    size: int
    is_dir: bool


@dataclass(frozen=True)
class _File:
    name: str
    segment: SegmentName
    size: int


def compact(
    lake: Lake,
    dataset: Dataset | None = None,
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    older_than_days: int = 1,
    now: datetime | None = None,
) -> CompactStats:
    """Compact the closed partitions of `dataset` (default: every dataset); see the module."""
    if not lake.local:
        raise ConfigError(
            f"lake {lake.uri!r}: compaction needs a local filesystem (it swaps directories "
            "atomically); run it on the host that holds the lake"
        )
    if target_bytes <= 0:
        raise ConfigError(f"target size {target_bytes} must be positive")
    if older_than_days < 0:
        raise ConfigError(f"older-than days {older_than_days} must be 0 or more")
    root = Path(lake.root)
    stats = CompactStats()
    with maintenance_lock(root):
        staging_base = root / "_landing" / "compact"
        leftovers, rescued = _clean_staging(root, staging_base)
        stats.leftovers += leftovers
        stats.rescued += rescued
        staging = staging_base / uuid.uuid4().hex[:12]
        try:
            for ds in (dataset,) if dataset is not None else DATASETS:
                result = _Compactor(lake, ds, staging, target_bytes, stats).run(
                    older_than_days, now
                )
                if result is not None:
                    stats.datasets[ds.name] = result
        finally:
            with contextlib.suppress(OSError):
                staging.rmdir()  # left in place (not empty) only by a failure after a swap
    return stats


class _Compactor:
    """One dataset of one run."""

    def __init__(
        self, lake: Lake, dataset: Dataset, staging: Path, target: int, stats: CompactStats
    ) -> None:
        self.lake_root = Path(lake.root)
        self.lake = lake
        self.dataset = dataset
        self.root = Path(lake.dataset_root(dataset))
        self.staging = staging
        self.target = target
        self.stats = stats
        self.token = uuid.uuid4().hex[:12]

    def run(self, older_than_days: int, now: datetime | None) -> DatasetCompaction | None:
        if not self.root.is_dir():
            return None
        leaves, siblings = _walk(self.root)
        if siblings:
            for sibling in siblings:
                match = _SIBLING.match(sibling.name)
                assert match is not None
                live = sibling.parent / match["name"]
                self.stats.rescued += _clean_leftover(live, sibling, swapped_out=True)
                self.stats.leftovers += 1
            leaves, _ = _walk(self.root)
        result = DatasetCompaction(self.dataset.name)
        listings = {leaf: _listing(leaf) for leaf, _ in leaves}
        parts: dict[SegmentName, list[Path]] = defaultdict(list)
        for leaf, listing in listings.items():
            for file in _segment_files(listing):
                parts[file.segment].append(leaf / file.name)
                result.files_before += 1
                result.bytes_before += file.size
        result.files_after, result.bytes_after = result.files_before, result.bytes_before
        if not leaves:
            return result
        protected = self._protected(parts)
        newest_day = max(day for _, day in leaves)
        if now is not None:
            newest_day = min(newest_day, now.astimezone(UTC).date())
        cutoff = newest_day - timedelta(days=older_than_days)
        for leaf, day in sorted(leaves):
            listing = listings[leaf]
            if day > cutoff or any(e.is_dir for e in listing.values()):
                continue
            runs = _plan(_segment_files(listing), protected, self.target, leaf)
            if runs:
                self._compact_leaf(leaf, listing, runs, result)
        return result

    def _protected(self, parts: dict[SegmentName, list[Path]]) -> set[SegmentName]:
        """The newest segment of every topic-partition, and the one before it while the newest
        is incomplete (see the module)."""
        by_tp: dict[tuple[str, int], list[SegmentName]] = defaultdict(list)
        for segment in parts:
            by_tp[(segment.topic, segment.partition)].append(segment)
        protected: set[SegmentName] = set()
        for segments in by_tp.values():
            segments.sort(key=lambda s: (s.last, s.first), reverse=True)
            newest = segments[0]
            protected.add(newest)
            try:
                expected = self.lake.segment_file_count(str(parts[newest][0]))
            except (OSError, pa.ArrowException):
                expected = len(parts[newest]) + 1  # vanished or unreadable: treat as incomplete
            if len(parts[newest]) < expected and len(segments) > 1:
                protected.add(segments[1])
        return protected

    def _compact_leaf(
        self,
        leaf: Path,
        listing: dict[str, _Entry],
        runs: list[list[_File]],
        result: DatasetCompaction,
    ) -> None:
        snapshot = {name: entry.inode for name, entry in listing.items()}
        inputs = {file.name for run in runs for file in run}
        copy = self.staging / uuid.uuid4().hex[:12]
        copy.mkdir(parents=True)
        journal = _write_journal(copy, leaf.relative_to(self.lake_root))
        swapped = False
        try:
            try:
                for name in listing:
                    if name not in inputs:
                        os.link(leaf / name, copy / name)
            except FileNotFoundError:
                log.info("%s: a file went away while copying; skipped this run", leaf)
                result.skipped += 1
                return
            try:
                written = [_merge(leaf, run, copy, self.token) for run in runs]
            except (OSError, pa.ArrowException) as exc:
                raise PipelineError(f"{leaf}: cannot merge its small files: {exc}") from exc
            fsync_dir(copy)
            if {name: entry.inode for name, entry in _listing(leaf).items()} != snapshot:
                log.info("%s: files landed during compaction; skipped this run", leaf)
                result.skipped += 1
                return
            exchange_directories(leaf, copy)
            swapped = True
            fsync_dir(leaf.parent)
            fsync_dir(copy.parent)
            self.stats.rescued += _reconcile(leaf, copy, snapshot, inputs)
            fsync_dir(leaf)
            shutil.rmtree(copy)
            journal.unlink()
        finally:
            if not swapped:  # still the unused new copy: nothing of value in it
                shutil.rmtree(copy, ignore_errors=True)
                journal.unlink(missing_ok=True)
        result.directories += 1
        result.merged += len(written)
        result.files_after += len(written) - len(inputs)
        result.bytes_after += sum(size for _, size in written) - sum(
            listing[name].size for name in inputs
        )
        result.rows += sum(rows for rows, _ in written)


# -- planning ------------------------------------------------------------------------------------
def _plan(
    files: list[_File], protected: set[SegmentName], target: int, leaf: Path
) -> list[list[_File]]:
    """Runs of 2+ small files of one topic-partition, adjacent in offset order, whose schemas
    unify and whose sizes add up to at most `target` (a run of one is left alone)."""
    by_tp: dict[tuple[str, int], list[_File]] = defaultdict(list)
    for file in files:
        by_tp[(file.segment.topic, file.segment.partition)].append(file)
    runs: list[list[_File]] = []
    for tp_files in by_tp.values():
        tp_files.sort(key=lambda f: (f.segment.first, f.segment.last))
        run: list[_File] = []
        schemas: list[pa.Schema] = []
        total = 0
        previous_last = -1
        for file in tp_files:
            overlaps = file.segment.first <= previous_last
            previous_last = max(previous_last, file.segment.last)
            schema = None
            if file.segment not in protected and file.size < target and not overlaps:
                try:
                    schema = pq.read_schema(leaf / file.name).remove_metadata()
                except (OSError, pa.ArrowException) as exc:
                    log.warning("%s/%s: unreadable footer (%s); left alone", leaf, file.name, exc)
            if schema is None or (
                run and (total + file.size > target or _union([*schemas, schema]) is None)
            ):
                runs.append(run)
                run, schemas, total = [], [], 0
            if schema is not None:
                run.append(file)
                schemas.append(schema)
                total += file.size
        runs.append(run)
    return [run for run in runs if len(run) > 1]


def _union(schemas: list[pa.Schema]) -> pa.Schema | None:
    """The union of `schemas` (older first: their columns come first), or None if a column's
    types cannot be unified. A column missing from some schema is nullable in the union."""
    try:
        union = pa.unify_schemas(schemas)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    everywhere = set.intersection(*(set(s.names) for s in schemas))
    return pa.schema(f if f.name in everywhere else f.with_nullable(True) for f in union)


# -- merging -------------------------------------------------------------------------------------
def _merge(source: Path, run: list[_File], target: Path, token: str) -> tuple[int, int]:
    """Write the merged file of `run` into `target`; returns (rows, bytes)."""
    first = min(f.segment.first for f in run)
    last = max(f.segment.last for f in run)
    topic, partition = run[0].segment.topic, run[0].segment.partition
    union = _union([pq.read_schema(source / f.name).remove_metadata() for f in run])
    if union is None:  # _plan only builds runs that unify
        raise PipelineError(f"{source}: schemas of {run[0].name} ... {run[-1].name} differ")
    meta = {
        "topic": topic,
        "partition": partition,
        "first": first,
        "last": last,
        "files": 1,
        "compacted": True,
    }
    schema = union.with_metadata({SEGMENT_META: json.dumps(meta).encode()})
    name = file_name(topic, partition, first, last)
    temp = target / temp_name(name, token)
    expected = 0
    with (
        temp.open("wb") as out,
        pq.ParquetWriter(
            out, schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL
        ) as writer,
    ):
        buffered: list[pa.Table] = []
        rows = 0
        for file in run:
            table = _conform(pq.read_table(source / file.name, partitioning=None), union)
            expected += table.num_rows
            buffered.append(table)
            rows += table.num_rows
            if rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
                buffered, rows = [], 0
        if buffered:
            writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
        writer.close()
        out.flush()
        os.fsync(out.fileno())
    written = pq.read_metadata(temp).num_rows
    if written != expected:
        temp.unlink()
        raise PipelineError(f"{source}/{name}: wrote {written} rows for {expected}; not swapped")
    final = target / name
    temp.replace(final)
    return expected, final.stat().st_size


def _conform(table: pa.Table, union: pa.Schema) -> pa.Table:
    """`table` with the union's columns in its order: missing ones null, types cast."""
    for f in union:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(union.names).cast(union)


# -- the swap ------------------------------------------------------------------------------------
@functools.cache
def _renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def exchange_directories(a: Path, b: Path) -> None:
    """Swap directories `a` and `b` atomically (Linux `renameat2(RENAME_EXCHANGE)`); used by
    compaction and by `rebuild`."""
    function = _renameat2()
    if function is None:
        raise PipelineError(
            "this system has no renameat2(): the filesystem cannot swap directories "
            "atomically, which compaction and rebuild need (Linux >= 3.15 with glibc >= 2.28)"
        )
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        raise PipelineError(
            f"the filesystem of {a} cannot swap directories atomically "
            f"(renameat2 RENAME_EXCHANGE: {os.strerror(code)}); compaction and rebuild need a "
            "local Linux filesystem such as ext4, xfs, btrfs or tmpfs"
        )
    if code == errno.EXDEV:
        raise PipelineError(
            f"{a} and the staging area {b.parent} are on different filesystems, so they cannot "
            "be swapped atomically; keep <lake>/_landing on the lake's filesystem"
        )
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _reconcile(live: Path, old: Path, snapshot: dict[str, int], inputs: set[str]) -> int:
    """Carry over what changed in the old copy between the last listing and the swap."""
    rescued = 0
    now = {name: entry.inode for name, entry in _listing(old).items()}
    for name, inode in now.items():
        if snapshot.get(name) == inode:
            continue  # linked into the new copy, or an input of a merged file
        current = _inode(live / name)
        if current is None or current == snapshot.get(name):
            (old / name).replace(live / name)
            log.info("%s/%s: landed during the swap; moved into place", live, name)
            rescued += 1
    for name, inode in snapshot.items():
        if name not in now and name not in inputs and _inode(live / name) == inode:
            (live / name).unlink()  # removed meanwhile (a temp renamed, a crashed segment's part)
    return rescued


# -- leftovers of a crashed run ------------------------------------------------------------------
def write_journal(journal: Path, entry: dict[str, Any]) -> Path:
    """Write a swap's journal durably (file and directory fsynced) before anything is staged:
    after a crash, `clean_staging` reads it back. Compaction and rebuild both keep one."""
    with journal.open("w", encoding="utf-8") as out:
        json.dump(entry, out)
        out.flush()
        os.fsync(out.fileno())
    fsync_dir(journal.parent)
    return journal


def clean_staging(
    staging_base: Path, rescue: Callable[[Path, dict[str, Any]], int]
) -> tuple[int, int]:
    """Remove the staging directories (`staging_base/<run>/`) of crashed runs; first
    `rescue(journal, entry)` for every readable journal in them, which moves back files landed
    during the swap and returns how many (a journal cut short by the crash, or whose `rescue`
    finds a field missing, was written before anything was staged: skipped). Returns (runs
    removed, files rescued)."""
    removed = rescued = 0
    if not staging_base.is_dir():
        return 0, 0
    for run in sorted(staging_base.iterdir()):
        if not run.is_dir():
            run.unlink()
            continue
        for journal in sorted(run.glob("*.json")):
            try:
                entry = json.loads(journal.read_text(encoding="utf-8"))
                rescued += rescue(journal, dict(entry))
            except (ValueError, KeyError, TypeError):
                continue
        shutil.rmtree(run)
        removed += 1
    return removed, rescued


def _write_journal(copy: Path, live: Path) -> Path:
    """Record, next to a leaf's new copy, which leaf it is for and the copy's inode: after a
    crash, the directory at the copy's path is the new copy if it still has that inode, and the
    swapped-out old leaf otherwise."""
    return write_journal(
        copy.with_suffix(".json"), {"live": str(live), "inode": copy.stat().st_ino}
    )


def _clean_staging(lake_root: Path, staging_base: Path) -> tuple[int, int]:
    """Remove the staging directories of crashed compactions, rescuing landed files first."""

    def rescue(journal: Path, entry: dict[str, Any]) -> int:
        copy = journal.with_suffix("")
        live = (lake_root / str(entry["live"])).resolve()
        inode = int(entry["inode"])
        if not (copy.is_dir() and live.is_relative_to(lake_root)):
            return 0
        return _clean_leftover(live, copy, swapped_out=copy.stat().st_ino != inode)

    return clean_staging(staging_base, rescue)


def _clean_leftover(live: Path, copy: Path, *, swapped_out: bool) -> int:
    """Delete the leftover `copy` of the leaf `live`; first, if it was swapped out (or may have
    been), move the segment files landed during the swap into `live`.

    A copy never swapped in holds nothing `live` lacks. A copy swapped out holds files `live`
    has too, inputs that a merged file of `live` covers and, rarely, files landed during the
    swap: exactly those have a name `live` lacks and offsets that no file of the same
    topic-partition in `live` overlaps (a new copy never swapped in passes the same test: its
    merged files overlap the inputs `live` still has)."""
    rescued = 0
    if swapped_out and live.is_dir():
        ranges: dict[tuple[str, int], list[SegmentName]] = defaultdict(list)
        for file in _segment_files(_listing(live)):
            ranges[(file.segment.topic, file.segment.partition)].append(file.segment)
        for file in _segment_files(_listing(copy)):
            seg = file.segment
            if (live / file.name).exists() or any(
                other.first <= seg.last and seg.first <= other.last
                for other in ranges[(seg.topic, seg.partition)]
            ):
                continue
            with contextlib.suppress(FileExistsError):
                os.link(copy / file.name, live / file.name)
                log.warning("%s/%s: rescued from a crashed compaction", live, file.name)
                rescued += 1
        if rescued:
            fsync_dir(live)
    shutil.rmtree(copy)
    return rescued


# -- listing -------------------------------------------------------------------------------------
def _walk(root: Path) -> tuple[list[tuple[Path, date]], list[Path]]:
    """Every non-hidden directory below the `date=` directories of `root`, with its date, and
    hidden `.<name>.compact-<token>` leftovers anywhere in the tree."""
    leaves: list[tuple[Path, date]] = []
    siblings: list[Path] = []
    for entry in _scandir(root):
        if not entry.is_dir(follow_symlinks=False):
            continue
        if _SIBLING.match(entry.name):
            siblings.append(Path(entry.path))
            continue
        if not entry.name.startswith("date="):
            continue
        try:
            day = date.fromisoformat(entry.name.removeprefix("date="))
        except ValueError:
            continue
        stack = [Path(entry.path)]
        while stack:
            directory = stack.pop()
            leaves.append((directory, day))
            for sub in _scandir(directory):
                if not sub.is_dir(follow_symlinks=False):
                    continue
                if _SIBLING.match(sub.name):
                    siblings.append(Path(sub.path))
                elif not sub.name.startswith("."):
                    stack.append(Path(sub.path))
    return leaves, siblings


def _scandir(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def _listing(directory: Path) -> dict[str, _Entry]:
    """Every entry of `directory` (hidden ones included): inode, size, directory or not."""
    out = {}
    for entry in _scandir(directory):
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        out[entry.name] = _Entry(info.st_ino, info.st_size, entry.is_dir(follow_symlinks=False))
    return out


def _segment_files(listing: dict[str, _Entry]) -> list[_File]:
    files = []
    for name, entry in listing.items():
        segment = parse_file_name(name)
        if segment is not None and not entry.is_dir:
            files.append(_File(name, segment, entry.size))
    return files


def _inode(path: Path) -> int | None:
    try:
        return path.lstat().st_ino
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def maintenance_lock(root: Path) -> Iterator[None]:
    """One compaction or rebuild per lake at a time: an exclusive `flock` on
    `<lake>/_landing/compact.lock` (`rebuild` takes the same lock)."""
    path = root / "_landing" / "compact.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(
                f"another compaction or rebuild is running on {root} (it holds {path}); "
                "try again later"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
