"""Lake compaction: rows unchanged, fewer files, closed partitions only, the newest segment kept,
schema evolution, readers never see half a swap, landing during compaction, crash leftovers."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.records import RequestLog
from pipeline.errors import ConfigError, PipelineError
from pipeline.lake import BY_NAME, IpPolicy, Lake, RollPolicy, Segment, SegmentBuffer
from pipeline.lake import compact as compact_mod
from pipeline.lake.compact import compact
from pipeline.lake.paths import SegmentName, parse_file_name
from pipeline.lake.segment import SEGMENT_META

DS = BY_NAME["request_log"]
TOPIC = DS.topic.name
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")
SITES = ("s1", "s2")
KEY = ("_topic", "_partition", "_offset")


# -- building lakes ------------------------------------------------------------------------------
def record(offset: int, day: int, site: str) -> tuple[int, bytes]:
    at = DAY0 + timedelta(days=day, seconds=offset)
    rec = RequestLog(
        finished_at=at,
        request_id=f"r{offset}",
        site_id=site,
        node_id=f"{site}-n1",
        service="svc",
        team="team",
        status=200,
        latency_ms=1.0 + offset,
        bytes_in=10,
        bytes_out=20 + offset,
        route="/x",
        client_region="eu",
    )
    return int(at.timestamp() * 1000), msgspec.json.encode(rec)


def land(lake: Lake, partition: int, first: int, rows: list[tuple[int, str]]) -> Segment:
    """Land one segment of `topic[partition]` at offsets `first...`, one row per (day, site)."""
    buf = SegmentBuffer(DS, TOPIC, partition, RollPolicy(), IpPolicy())
    for i, (day, site) in enumerate(rows):
        ts, value = record(first + i, day, site)
        assert buf.add(first + i, ts, value) is None
    segment = buf.take()
    assert segment is not None
    lake.write_segment(DS, segment)
    return segment


def build(tmp_path: Path, days: int = 3, per_day: int = 4, size: int = 6) -> dict[int, Segment]:
    """Two partitions, `per_day` segments per day over both sites; partition 0's newest segment
    holds late rows of the first day (a closed partition). Returns the newest per partition."""
    lake = Lake(tmp_path / "lake")
    offsets = {0: 0, 1: 0}
    newest: dict[int, Segment] = {}
    for day in range(days):
        for _ in range(per_day):
            for p in (0, 1):
                rows = [(day, SITES[i % 2]) for i in range(size)]
                newest[p] = land(lake, p, offsets[p], rows)
                offsets[p] += size
    newest[0] = land(lake, 0, offsets[0], [(0, "s1"), (0, "s2"), (0, "s1")])
    return newest


def files(lake: Lake) -> dict[str, int]:
    """Relative path -> inode of every landed file of the dataset."""
    root = Path(lake.dataset_root(DS))
    return {str(p.relative_to(root)): p.stat().st_ino for p in root.rglob("*.parquet")}


def rows(lake: Lake) -> list[dict[str, Any]]:
    """Every row of the dataset with its hive directory values, sorted by lineage."""
    root = Path(lake.dataset_root(DS))
    tables = []
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path, partitioning=None)
        for part in path.relative_to(root).parts[:-1]:
            key, value = part.split("=", 1)
            table = table.append_column(key, pa.array([value] * table.num_rows))
        tables.append(table)
    everything = pa.concat_tables(tables, promote_options="default").to_pylist()
    return sorted(everything, key=lambda row: tuple(row[k] for k in KEY))


def footer(path: Path) -> dict[str, Any]:
    meta = pq.read_metadata(path).metadata
    result: dict[str, Any] = json.loads(meta[SEGMENT_META])
    return result


def lake_at(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


# -- the core properties -------------------------------------------------------------------------
def test_compaction_keeps_every_row_and_merges_closed_partitions(tmp_path: Path) -> None:
    newest = build(tmp_path)
    lake = lake_at(tmp_path)
    before_rows, before_files = rows(lake), files(lake)

    stats = compact(lake, DS)

    after_rows, after_files = rows(lake), files(lake)
    assert after_rows == before_rows  # same multiset, same values, same hive directories
    assert [tuple(r[k] for k in KEY) for r in after_rows] == sorted(
        (TOPIC, p, o) for p in (0, 1) for o in range(newest[p].last + 1)
    )
    d = stats.datasets["request_log"]
    assert len(after_files) < len(before_files)
    assert (d.files_before, d.files_after) == (len(before_files), len(after_files))
    assert d.rows == sum(r["date"] in DAYS[:2] for r in before_rows) - 3  # all but the newest
    assert d.directories == 4 and d.skipped == 0 and d.merged == 8
    # the open day is untouched, file for file
    open_day = {k: v for k, v in before_files.items() if k.startswith(f"date={DAYS[2]}")}
    assert {k: v for k, v in after_files.items() if k.startswith(f"date={DAYS[2]}")} == open_day
    # each closed leaf: one merged file per partition (+ partition 0's newest segment, untouched)
    for day in DAYS[:2]:
        for site in SITES:
            names = sorted(k for k in after_files if k.startswith(f"date={day}/site_id={site}/"))
            extra = 1 if day == DAYS[0] else 0
            assert len(names) == 2 + extra, names
    # the newest segment of every partition: same files, same inodes
    for p, seg in newest.items():
        for f in seg.files:
            rel = f"{f.directory}/{f.name}"
            assert after_files[rel] == before_files[rel]
        assert lake.recover(DS, TOPIC, p) == seg.last + 1
    # nothing left behind, nothing hidden in the dataset tree
    assert not any(p.name.startswith(".") for p in Path(lake.dataset_root(DS)).rglob("*"))
    assert not (Path(lake.root) / "_landing" / "compact").exists() or not any(
        (Path(lake.root) / "_landing" / "compact").iterdir()
    )


def test_merged_file_footer_names_its_offsets(tmp_path: Path) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before = rows(lake)
    compact(lake, DS)
    leaf = Path(lake.dataset_root(DS)) / f"date={DAYS[1]}" / "site_id=s2"
    merged = sorted(leaf.glob("*.parquet"))
    assert len(merged) == 2
    for path in merged:
        seg = parse_file_name(path.name)
        assert seg is not None
        assert footer(path) == {
            "topic": seg.topic,
            "partition": seg.partition,
            "first": seg.first,
            "last": seg.last,
            "files": 1,
            "compacted": True,
        }
        table = pq.read_table(path, partitioning=None)
        offsets = table.column("_offset").to_pylist()
        expected = [
            r["_offset"]
            for r in before
            if r["date"] == DAYS[1] and r["site_id"] == "s2" and r["_partition"] == seg.partition
        ]
        assert offsets == sorted(expected)  # offset order, every row of the four inputs
        assert min(offsets) >= seg.first and max(offsets) <= seg.last
        assert table.schema.remove_metadata().equals(DS.schema)


@pytest.mark.parametrize(
    ("older_than_days", "now", "closed"),
    [
        (1, None, {0, 1}),
        (2, None, {0}),
        (0, None, {0, 1, 2}),
        (1, DAY0 + timedelta(days=1, hours=5), {0}),  # `now` caps the newest date
        (3, None, set()),
    ],
)
def test_only_closed_partitions_are_compacted(
    tmp_path: Path, older_than_days: int, now: datetime | None, closed: set[int]
) -> None:
    build(tmp_path, per_day=2, size=2)
    lake = lake_at(tmp_path)
    before_rows, before = rows(lake), files(lake)
    compact(lake, DS, older_than_days=older_than_days, now=now)
    after = files(lake)
    for day, name in enumerate(DAYS):
        old = {k: v for k, v in before.items() if k.startswith(f"date={name}")}
        new = {k: v for k, v in after.items() if k.startswith(f"date={name}")}
        if day in closed:
            assert len(new) < len(old), name
        else:
            assert new == old, name
    assert rows(lake) == before_rows


def test_small_target_limits_merged_size_and_second_run_is_a_no_op(tmp_path: Path) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before = rows(lake)
    leaf = Path(lake.dataset_root(DS)) / f"date={DAYS[1]}" / "site_id=s1"
    one = max(p.stat().st_size for p in leaf.glob("*.parquet"))
    compact(lake, DS, target_bytes=2 * one)  # at most two inputs per merged file
    assert len(list(leaf.glob("*.parquet"))) == 4  # 2 partitions x (4 files -> 2)
    assert rows(lake) == before
    files_once = files(lake)
    stats = compact(lake, DS, target_bytes=2 * one)
    assert stats.datasets["request_log"].merged == 0
    assert files(lake) == files_once
    compact(lake, DS)  # a bigger target merges the merged files further
    assert len(list(leaf.glob("*.parquet"))) == 2
    assert rows(lake) == before


def test_incomplete_newest_segment_keeps_the_one_before_it(tmp_path: Path) -> None:
    newest = build(tmp_path)
    lake = lake_at(tmp_path)
    root = Path(lake.dataset_root(DS))
    # a crash cut partition 0's newest segment short: one of its two parts is missing
    cut = newest[0].files[1]
    (root / cut.directory / cut.name).unlink()
    previous = SegmentName(TOPIC, 0, newest[0].first - 6, newest[0].first - 1)
    kept = sorted(p.relative_to(root) for p in root.rglob(previous.name))
    assert len(kept) == 2
    compact(lake, DS, older_than_days=0)
    assert sorted(p.relative_to(root) for p in root.rglob(previous.name)) == kept
    # recovery deletes the partial segment; the one before it is whole, so landing resumes after
    assert lake.recover(DS, TOPIC, 0) == newest[0].first
    assert lake.recover(DS, TOPIC, 0) == newest[0].first


def test_old_and_new_schema_files_merge_into_the_union_schema(tmp_path: Path) -> None:
    lake = lake_at(tmp_path)
    segments = [land(lake, 0, 5 * i, [(0, "s1")] * 5) for i in range(5)]
    leaf = Path(lake.dataset_root(DS)) / f"date={DAYS[0]}" / "site_id=s1"
    for seg in segments[:2]:  # landed before `client_region` existed
        path = leaf / seg.files[0].name
        table = pq.read_table(path, partitioning=None)
        meta = table.schema.metadata
        old = table.drop_columns(["client_region"]).replace_schema_metadata(meta)
        pq.write_table(old, path)
    old_names = [n for n in DS.schema.names if n != "client_region"]
    before = rows(lake)

    compact(lake, DS, older_than_days=0)

    merged_name = SegmentName(TOPIC, 0, 0, segments[3].last).name
    assert sorted(p.name for p in leaf.glob("*.parquet")) == sorted(
        [merged_name, segments[4].files[0].name]
    )
    merged = pq.read_table(leaf / merged_name, partitioning=None)
    assert merged.schema.names == [*old_names, "client_region"]  # older columns first
    assert merged.schema.field("client_region").nullable
    offsets, values = merged["_offset"].to_pylist(), merged["client_region"].to_pylist()
    regions = dict(zip(offsets, values, strict=True))
    assert [regions[o] for o in range(20)] == [None] * 10 + ["eu"] * 10
    after = rows(lake)
    for row in before:
        row.setdefault("client_region", None)
    assert after == before


def test_incompatible_schemas_are_not_merged_together(tmp_path: Path) -> None:
    lake = lake_at(tmp_path)
    segments = [land(lake, 0, 5 * i, [(0, "s1")] * 5) for i in range(5)]
    leaf = Path(lake.dataset_root(DS)) / f"date={DAYS[0]}" / "site_id=s1"
    for seg in segments[2:4]:  # `route` became an integer: cannot be unified with strings
        path = leaf / seg.files[0].name
        table = pq.read_table(path, partitioning=None)
        index = table.schema.get_field_index("route")
        table = table.set_column(index, "route", pa.array([1] * table.num_rows, pa.int64()))
        pq.write_table(table, path)
    compact(lake, DS, older_than_days=0)
    names = sorted(p.name for p in leaf.glob("*.parquet"))
    assert names == sorted(
        [
            SegmentName(TOPIC, 0, 0, 9).name,
            SegmentName(TOPIC, 0, 10, 19).name,
            segments[4].files[0].name,
        ]
    )


# -- readers and landers during compaction -------------------------------------------------------
def count_pyarrow(root: str) -> int:
    return int(pads.dataset(root, format="parquet", partitioning="hive").count_rows())


def count_duckdb(root: str) -> int:
    con = duckdb.connect()  # one connection per call: readers run in threads
    try:
        result = con.execute(f"select count(*) from read_parquet('{root}/**/*.parquet')")
        return int(result.fetchall()[0][0])
    finally:
        con.close()


def slow_exchange(monkeypatch: pytest.MonkeyPatch, before: Callable[[Path], None]) -> None:
    real = compact_mod.exchange_directories

    def exchange(a: Path, b: Path) -> None:
        before(a)
        real(a, b)
        time.sleep(0.01)

    monkeypatch.setattr(compact_mod, "exchange_directories", exchange)


def test_readers_never_see_half_a_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    root = lake.dataset_root(DS)
    total = count_pyarrow(root)
    assert count_duckdb(root) == total

    def check_staged(leaf: Path) -> None:  # the new copy is complete, yet no reader sees it
        assert count_pyarrow(root) == total
        assert count_duckdb(root) == total
        time.sleep(0.01)

    slow_exchange(monkeypatch, check_staged)
    seen: list[int] = []
    retried: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            for count in (count_pyarrow, count_duckdb):
                try:
                    seen.append(count(root))
                except (OSError, duckdb.IOException) as exc:  # listed before a swap, opened after
                    retried.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        stats = compact(lake, DS)
    finally:
        done.set()
        thread.join()
    assert stats.datasets["request_log"].directories == 4
    assert len(seen) >= 4
    assert set(seen) == {total}, (seen, retried)
    assert all("No such file" in r or "not found" in r.lower() for r in retried), retried
    assert count_pyarrow(root) == count_duckdb(root) == total


def test_a_file_landing_during_compaction_skips_that_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before = rows(lake)
    real = compact_mod._merge
    late: list[Segment] = []

    def merge(source: Path, *args: Any) -> tuple[int, int]:
        if not late:  # a late record of a closed day lands in this leaf meanwhile
            day = DAYS.index(source.parent.name.removeprefix("date="))
            late.append(land(lake, 2, 0, [(day, source.name.removeprefix("site_id="))]))
        return real(source, *args)

    monkeypatch.setattr(compact_mod, "_merge", merge)
    stats = compact(lake, DS).datasets["request_log"]
    assert (stats.skipped, stats.directories) == (1, 3)
    part = late[0].files[0]
    assert (Path(lake.dataset_root(DS)) / part.directory / part.name).exists()
    after = rows(lake)
    assert len(after) == len(before) + 1
    assert [r for r in after if r["_partition"] != 2] == before
    stats = compact(lake, DS).datasets["request_log"]  # the next run compacts it
    assert (stats.skipped, stats.directories) == (0, 1)
    assert rows(lake) == after


def test_a_file_landing_during_the_swap_is_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before = rows(lake)
    late: list[Segment] = []

    def land_late(leaf: Path) -> None:  # after the last listing, just before the swap
        if not late:
            day = DAYS.index(leaf.parent.name.removeprefix("date="))
            late.append(land(lake, 2, 0, [(day, leaf.name.removeprefix("site_id="))] * 2))

    slow_exchange(monkeypatch, land_late)
    stats = compact(lake, DS)
    assert stats.rescued == 1
    assert stats.datasets["request_log"].directories == 4
    part = late[0].files[0]
    assert (Path(lake.dataset_root(DS)) / part.directory / part.name).exists()
    after = rows(lake)
    assert len(after) == len(before) + 2
    assert [r for r in after if r["_partition"] != 2] == before


# -- crashes and leftovers -----------------------------------------------------------------------
class Crash(BaseException):
    """A process dying mid-run (nothing after it runs, unlike an Exception's cleanup)."""


def test_leftovers_of_a_crash_after_the_swap_are_removed_and_late_files_rescued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before = rows(lake)
    late: list[Segment] = []

    def land_late(leaf: Path) -> None:
        if not late:
            day = DAYS.index(leaf.parent.name.removeprefix("date="))
            late.append(land(lake, 2, 0, [(day, leaf.name.removeprefix("site_id="))]))

    def crash(*args: Any) -> int:
        raise Crash

    slow_exchange(monkeypatch, land_late)
    monkeypatch.setattr(compact_mod, "_reconcile", crash)
    with pytest.raises(Crash):
        compact(lake, DS)
    staging = Path(lake.root) / "_landing" / "compact"
    assert any(staging.rglob("*.parquet"))  # the swapped-out old copy, with the late file
    assert len(rows(lake)) == len(before)  # which no reader sees yet
    monkeypatch.undo()

    stats = compact(lake, DS)
    assert (stats.leftovers, stats.rescued) == (1, 1)
    assert not any(staging.iterdir())
    after = rows(lake)
    assert len(after) == len(before) + 1
    assert [r for r in after if r["_partition"] != 2] == before


def test_leftovers_of_a_crash_before_the_swap_are_removed(tmp_path: Path) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before_rows, before_files = rows(lake), files(lake)
    root = Path(lake.dataset_root(DS))
    staging = Path(lake.root) / "_landing" / "compact" / "0123abcd"
    copies = []
    for copy, leaf in [
        (staging / "feedbeef", root / f"date={DAYS[0]}/site_id=s1"),
        (root / f"date={DAYS[1]}/.site_id=s2.compact-9f8e7d", root / f"date={DAYS[1]}/site_id=s2"),
    ]:
        # a complete new copy that was never swapped in: hard links and merged files
        copy.mkdir(parents=True)
        if copy.parent == staging:
            compact_mod._write_journal(copy, leaf.relative_to(Path(lake.root)))
        listing = compact_mod._listing(leaf)
        runs = compact_mod._plan(compact_mod._segment_files(listing), set(), 1 << 30, leaf)
        inputs = {f.name for run in runs for f in run}
        assert len(inputs) >= 8
        for name in set(listing) - inputs:
            os.link(leaf / name, copy / name)
        for run in runs:
            compact_mod._merge(leaf, run, copy, "tok")
        copies.append(copy)
    assert len(rows(lake)) > len(before_rows)  # `rows` reads hidden directories, like DuckDB

    stats = compact(lake, DS, older_than_days=30)  # nothing is closed: only the cleanup

    assert (stats.leftovers, stats.rescued) == (2, 0)
    assert not any(copy.exists() for copy in copies) and not staging.exists()
    assert rows(lake) == before_rows
    assert files(lake) == before_files


# -- refusals ------------------------------------------------------------------------------------
def test_unsupported_directory_swap_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before_rows, before_files = rows(lake), files(lake)

    def renameat2(*args: Any) -> int:
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(compact_mod, "_renameat2", lambda: renameat2)
    with pytest.raises(PipelineError, match="cannot swap directories atomically"):
        compact(lake, DS)
    assert (rows(lake), files(lake)) == (before_rows, before_files)
    assert not any((Path(lake.root) / "_landing" / "compact").rglob("*"))


def test_remote_lakes_and_concurrent_runs_are_refused(tmp_path: Path) -> None:
    build(tmp_path, days=1, per_day=1)
    lake = lake_at(tmp_path)
    lake.local = False
    with pytest.raises(ConfigError, match="local filesystem"):
        compact(lake, DS)
    lake.local = True
    lock = Path(lake.root) / "_landing" / "compact.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(PipelineError, match="another compaction or rebuild is running"):
            compact(lake, DS)
    assert compact(lake).datasets.keys() == {"request_log"}


def test_cli_compacts_and_prints_a_table(tmp_path: Path) -> None:
    build(tmp_path)
    lake = lake_at(tmp_path)
    before = rows(lake)
    result = CliRunner().invoke(
        app, ["lake", "compact", "--lake", lake.root, "--dataset", "request_log"]
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "request_log" in line)
    # 48 + 2 files; in 4 closed leaves, 2 partitions x 4 files become 2; 96 rows rewritten
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert [cells[0], cells[1], cells[3], cells[4]] == ["request_log", "50 → 26", "96", "4 (0)"]
    assert re.fullmatch(r"\d+\.\d → \d+\.\d", cells[2]), cells[2]
    assert rows(lake) == before
    result = CliRunner().invoke(app, ["lake", "compact", "--lake", lake.root, "--dataset", "x"])
    assert isinstance(result.exception, ConfigError)
