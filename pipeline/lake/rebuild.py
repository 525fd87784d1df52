"""Rebuild silver from bronze (`microdc lake rebuild`): recompute the stream outputs of a date
range with the same stream core as `microdc process`, and swap them in atomically per date.

Why: a record later than the allowed lateness becomes a late event in the stream, yet it lands
in bronze all the same. Rebuilding the dates it touched puts it into the marts.

What is read. The four bronze inputs (`node_telemetry`, `request_log`, `facility_telemetry`,
`grid_intensity`) from the warm-up start to `date_to`, plus, of the day after `date_to`, the
node and facility samples whose interval starts before it (a sample observed at 00:00:20 with a
30 s interval adds energy to the last minute of `date_to`). The warm-up is history the outputs
of `date_from` depend on, run through the core and then thrown away:
- at least 3 days (`MIN_WARMUP_DAYS`): the longest SLO burn window (3d), so burn rates and SLO
  alerts at `date_from` 00:00 see full windows;
- the fleet's longest SLO period (`period_days`, 30 by default): the error budget remaining
  (`slo_burn.*_budget_remaining`, the daily SLO mart) counts requests over the whole period;
- back to the first day of the month of `date_from` (UTC): the team energy-budget alerts burn
  the month's kWh so far.
`required_warmup_days` computes it; a shorter `warmup_days` runs faster, and then only those
columns may differ from what the stream computed. Grid values valid before `date_from` come
with the warm-up; the grid dataset is read `GRID_LOOKBACK_DAYS` further back still, as a grid
value may be valid for up to 31 days (`MAX_GRID_SPAN`).

How. Bronze rows are deduplicated on their lineage (`_topic`, `_partition`, `_offset`: a
segment landed twice); a record delivered twice at two offsets is dropped by the core itself
(`request_id`; node or site and `observed_at`), as in the live stream. Rows become contract
records again (the directory gives the partition field; `client_ip_hmac` is dropped, so a
rebuilt request has `client_ip` None - nothing downstream of the core uses it) and are fed to
`runner.EmbeddedPipeline`, keyed and partitioned as `microdc process` does, in the core's
event-time order: requests by `finished_at`, node and facility samples by the *start* of their
interval (the instant their lateness is judged by), grid values by `valid_from`. Each source is
therefore in order and nothing is late: the rebuild has no late events worth keeping (any are
counted and dropped, as are the dead letters: bronze holds only contract-valid records, and
what the core rejects - an unknown node, an implausible value - it rejected live too). Bronze
is read one date at a time, so memory holds a day of input and the rebuilt range's outputs.
The core is flushed at the end.

What is written. The outputs of `energy_minutes`, `site_minutes`, `slo_burn` and `alerts`
whose date (the dataset's partition rule: `window_start`, `at_ms`) lies in
[`date_from`, `date_to`]. `late_events` and `dead_letters` are not rebuilt. Their lineage
cannot be taken for a Kafka topic-partition: `_topic` is `<topic>.rebuild-<run id>`,
`_partition` 0, `_offset` counting from 0 per dataset and run, `_kafka_timestamp` the record's
event time; `Lake.recover` and `Lake.landed` only ever look at the landed topic's own names.
A date whose bronze holds no node telemetry and no request log is left as it is (bronze may
have been expired while silver is kept): rebuilding it would empty it.

Atomic per date directory (`silver/<dataset>/date=YYYY-MM-DD`, its `site_id=` directories
included): the new directory is built under `<lake>/_landing/rebuild/<run>/`, then swapped in
with one `renameat2(RENAME_EXCHANGE)` (`compact.exchange_directories`) and the old copy is
deleted. Readers see the old date or the new one, never a mix. Datasets and dates are swapped
one after the other, not all at once.

Safe next to `microdc land`:
- `date_to` must lie before the newest date of the four silver datasets (where a running lander
  writes), unless `force`;
- the newest segment of every landed topic-partition keeps its files: where one of them lies in
  a rebuilt date, the new directory holds a file of the same name and footer with no rows, so
  the lander's recovery still resumes after it (deleting it would make the lander land that
  segment again, stale rows and all). A date holding part of an *incomplete* newest segment
  (a landing in progress, or a crash the lander has not recovered yet) is refused;
- a date directory is listed (names and inodes) before the core runs and again right before
  its swap: if anything changed (a file landed, a temp appeared), that date is not swapped and
  is reported as a conflict; what lands in the instant between that listing and the swap is
  moved into the new directory just after it;
- compaction and rebuild never run together: both hold `compact.maintenance_lock`.
A run that dies leaves its staging directory; the next run removes it, first moving back any
file landed during an interrupted swap (a journal next to each new directory records the old
listing). Only local lakes on a Linux filesystem with `RENAME_EXCHANGE`.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import shutil
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.records import EPOCH, MAX_GRID_SPAN, epoch_ms
from pipeline.contracts.topics import DEAD_LETTERS, LATE_EVENTS, output_event_ms
from pipeline.embedded.driver import EmbeddedPipeline
from pipeline.errors import ConfigError, PipelineError
from pipeline.fleet.model import Fleet
from pipeline.lake.compact import (
    clean_staging,
    exchange_directories,
    maintenance_lock,
    write_journal,
)
from pipeline.lake.datasets import BY_NAME, Dataset
from pipeline.lake.paths import TEMP_MARK, SegmentName, parse_file_name
from pipeline.lake.privacy import HASHED_IP, IpPolicy
from pipeline.lake.segment import DAY_MS, RollPolicy, Segment, SegmentBuffer
from pipeline.lake.store import COMPRESSION, COMPRESSION_LEVEL, Lake, fsync_dir
from pipeline.metrics.slo import BUFFER_MINUTES
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S

log = logging.getLogger(__name__)

#: Bronze inputs, in the order a tie in event time is fed (as `microdc process` does).
INPUTS: tuple[Dataset, ...] = tuple(
    BY_NAME[name]
    for name in ("node_telemetry", "request_log", "facility_telemetry", "grid_intensity")
)
#: The silver datasets a rebuild replaces.
REBUILT: tuple[Dataset, ...] = tuple(
    BY_NAME[name] for name in ("energy_minutes", "site_minutes", "slo_burn", "alerts")
)
#: What a rebuilt file's `_topic` carries after the dataset's topic: `<topic>.rebuild-<run>`.
REBUILD_MARK = ".rebuild-"
#: The longest SLO burn window (3 days).
MIN_WARMUP_DAYS = BUFFER_MINUTES // 1440
#: How much further back than the warm-up the grid is read: a value may be valid this long.
GRID_LOOKBACK_DAYS = MAX_GRID_SPAN.days
#: A sample's interval is at most an hour (`IntervalS`): a sample dated on day d+1 may start
#: (and so be fed) up to this long before d+1 begins.
MAX_LEAD_MS = 3_600_000
_SAMPLES = frozenset({"node_telemetry", "facility_telemetry"})
_STAGE_ONE = ("node_telemetry", "request_log")


def is_rebuild_topic(topic: str) -> bool:
    """True for the `_topic` of rows a rebuild wrote (never a Kafka topic the lander lands)."""
    return REBUILD_MARK in topic


def required_warmup_days(fleet: Fleet, date_from: date) -> int:
    """Days of bronze before `date_from` that make the rebuilt outputs equal the stream's: the
    3-day burn windows, the longest SLO period, the month so far (energy budgets, UTC)."""
    periods = [service.slo.period_days for service in fleet.services]
    return max(MIN_WARMUP_DAYS, *periods, date_from.day - 1)


@dataclass
class DateChange:
    """One silver dataset's date directory: what it held, what the rebuild puts there."""

    dataset: str
    day: date
    rows_before: int
    rows_after: int
    files_before: int
    files_after: int = 0
    #: Empty stand-ins for parts of a landed topic-partition's newest segment.
    placeholders: int = 0
    swapped: bool = False
    #: Why the directory was left as it was (files landed meanwhile), else None.
    conflict: str | None = None


@dataclass
class RebuildStats:
    """What `rebuild` read, computed and (unless a dry run) swapped in."""

    run_id: str
    date_from: date
    date_to: date
    #: First date of bronze read (grid values are read from `GRID_LOOKBACK_DAYS` earlier).
    read_from: date
    warmup_days: int
    required_warmup_days: int
    dry_run: bool
    #: Bronze records fed to the core, per dataset.
    inputs: Counter[str] = field(default_factory=Counter)
    #: Bronze rows dropped because their (topic, partition, offset) had been read already.
    relanded: int = 0
    #: Bronze rows that are no valid record under today's contract (skipped).
    invalid: int = 0
    #: Deliveries the core counted once (same request_id; same node or site and observed_at).
    duplicates: int = 0
    #: Outputs of the run that are not rebuilt (see the module).
    late_events: int = 0
    dead_letters: int = 0
    #: Dates in the range without bronze node telemetry or request logs: left as they were.
    skipped_dates: list[date] = field(default_factory=list)
    changes: list[DateChange] = field(default_factory=list)
    #: Files landed during a swap (or an interrupted earlier run) moved into place.
    rescued: int = 0
    #: Staging directories of an interrupted earlier run that were removed.
    leftovers: int = 0

    @property
    def conflicts(self) -> list[DateChange]:
        return [c for c in self.changes if c.conflict is not None]

    def by_dataset(self) -> dict[str, list[DateChange]]:
        out: dict[str, list[DateChange]] = {d.name: [] for d in REBUILT}
        for change in self.changes:
            out[change.dataset].append(change)
        return out


def rebuild(
    lake_root: str | Path,
    date_from: date,
    date_to: date,
    fleet: Fleet,
    *,
    force: bool = False,
    dry_run: bool = False,
    warmup_days: int | None = None,
    lateness_s: float = 120.0,
    facility_wait_s: float = FACILITY_WAIT_S,
    grid_wait_s: float = GRID_WAIT_S,
) -> RebuildStats:
    """Recompute silver `energy_minutes`, `site_minutes`, `slo_burn` and `alerts` for the dates
    [`date_from`, `date_to`] from bronze, and swap each date directory in (see the module).

    `fleet` must be the fleet the stream ran with; `lateness_s`, `facility_wait_s` and
    `grid_wait_s` the worker's values. `dry_run` computes everything and writes nothing.
    Raises `ConfigError` for a bad range or a live date (without `force`), `PipelineError` when
    bronze holds nothing for the range or a date holds an incomplete newest segment.
    """
    if date_from > date_to:
        raise ConfigError(
            f"--from {date_from.isoformat()} is after --to {date_to.isoformat()}: "
            "give the first date, then the last (they may be equal)"
        )
    if warmup_days is not None and warmup_days < 0:
        raise ConfigError(f"warm-up days {warmup_days} must be 0 or more")
    text = str(lake_root)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(
            f"lake {text!r}: rebuild needs a local filesystem (it swaps directories "
            "atomically); run it on the host that holds the lake"
        )
    if not Path(text.removeprefix("file://")).is_dir():
        raise ConfigError(f"no lake at {text}: nothing to rebuild")
    lake = Lake(text)
    root = Path(lake.root)
    _refuse_live_dates(lake, date_to, force)
    required = required_warmup_days(fleet, date_from)
    warmup = required if warmup_days is None else warmup_days
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stats = RebuildStats(
        run_id=f"{stamp}-{uuid.uuid4().hex[:6]}",
        date_from=date_from,
        date_to=date_to,
        read_from=date_from - timedelta(days=warmup),
        warmup_days=warmup,
        required_warmup_days=required,
        dry_run=dry_run,
    )
    bronze = {ds.name: _date_dirs(Path(lake.dataset_root(ds))) for ds in INPUTS}
    wanted = list(_days(date_from, date_to))
    stats.skipped_dates = [
        day for day in wanted if not any(_has_files(bronze[name].get(day)) for name in _STAGE_ONE)
    ]
    if len(stats.skipped_dates) == len(wanted):
        raise PipelineError(_nothing_in_bronze(lake, bronze, date_from, date_to))
    days = [day for day in wanted if day not in stats.skipped_dates]
    lock = contextlib.nullcontext() if dry_run else maintenance_lock(root)
    with lock:
        if not dry_run:
            stats.leftovers, stats.rescued = _clean_staging(root)
        plans = {ds.name: _plan(lake, ds, days) for ds in REBUILT}
        outputs = _run_core(fleet, bronze, stats, lateness_s, facility_wait_s, grid_wait_s)
        staging = root / "_landing" / "rebuild" / stats.run_id
        try:
            for ds in REBUILT:
                offset = 0  # rebuilt rows of a dataset: offsets 0, 1, ... over the run
                for day in days:
                    records = outputs.get((ds.name, day), [])
                    change = _apply(lake, ds, day, records, plans[ds.name], staging, stats, offset)
                    if change is not None:
                        stats.changes.append(change)
                        offset += change.rows_after
        finally:
            with contextlib.suppress(OSError):
                staging.rmdir()  # not empty only after a failure past a swap
                staging.parent.rmdir()
    return stats


# -- refusals ------------------------------------------------------------------------------------
def _refuse_live_dates(lake: Lake, date_to: date, force: bool) -> None:
    """A running lander writes into the newest date of silver: `date_to` must come before it."""
    newest: tuple[date, str] | None = None
    for ds in REBUILT:
        dates = _date_dirs(Path(lake.dataset_root(ds)))
        if dates and (newest is None or max(dates) > newest[0]):
            newest = (max(dates), ds.path)
    if newest is None or date_to < newest[0] or force:
        return
    day, where = newest
    raise ConfigError(
        f"--to {date_to.isoformat()} is not before {day.isoformat()}, the newest date of "
        f"{where}: a running `microdc land` may still be writing there (and the stream may "
        f"still emit outputs for it); rebuild up to {(day - timedelta(days=1)).isoformat()}, "
        "or pass --force when nothing is landing"
    )


def _nothing_in_bronze(
    lake: Lake, bronze: dict[str, dict[date, Path]], date_from: date, date_to: date
) -> str:
    present = sorted({d for name in _STAGE_ONE for d, p in bronze[name].items() if _has_files(p)})
    span = f"{date_from.isoformat()} .. {date_to.isoformat()}"
    where = f"{lake.root}/bronze"
    if not present:
        return f"{where} holds no node telemetry or request logs: nothing to rebuild for {span}"
    return (
        f"{where} holds no node telemetry or request logs for {span}: nothing to rebuild "
        f"(bronze has {present[0].isoformat()} .. {present[-1].isoformat()})"
    )


# -- what each date directory holds now ----------------------------------------------------------
@dataclass
class _DatePlan:
    """A date directory of one dataset as listed before the core ran."""

    snapshot: dict[str, int]
    rows: int
    files: int
    #: Files (relative to the date directory) of a landed topic-partition's newest segment.
    newest: list[str]


def _plan(lake: Lake, ds: Dataset, days: list[date]) -> dict[date, _DatePlan]:
    """List every date directory to replace; refuse one holding part of an incomplete newest
    segment of a landed topic-partition (its recovery would land the segment again)."""
    base = Path(lake.dataset_root(ds))
    wanted = {f"date={day.isoformat()}": day for day in days}
    parts: dict[SegmentName, list[str]] = defaultdict(list)
    for rel in lake.list_files(ds):
        segment = parse_file_name(rel.rsplit("/", 1)[-1])
        if segment is not None and not is_rebuild_topic(segment.topic):
            parts[segment].append(rel)
    newest: dict[tuple[str, int], SegmentName] = {}
    for segment in parts:
        tp = (segment.topic, segment.partition)
        if tp not in newest or (segment.last, segment.first) > (newest[tp].last, newest[tp].first):
            newest[tp] = segment
    keep: dict[date, list[str]] = defaultdict(list)
    for segment in newest.values():
        inside = [rel for rel in parts[segment] if rel.split("/", 1)[0] in wanted]
        if not inside:
            continue
        expected = lake.segment_file_count(f"{base}/{parts[segment][0]}")
        if len(parts[segment]) < expected:
            day = wanted[inside[0].split("/", 1)[0]]
            raise PipelineError(
                f"{ds.path} date {day.isoformat()}: it holds part of the newest segment of "
                f"{segment.topic}[{segment.partition}] (offsets {segment.first}-{segment.last}), "
                f"which has {len(parts[segment])} of its {expected} files: a landing in progress "
                "or a crash `microdc land` has not recovered yet; let the lander run, then "
                "rebuild again"
            )
        for rel in inside:
            top, rest = rel.split("/", 1)
            keep[wanted[top]].append(rest)
    plans = {}
    for day in days:
        directory = base / f"date={day.isoformat()}"
        snapshot = _tree(directory)
        temps = [rel for rel in snapshot if TEMP_MARK in rel.rsplit("/", 1)[-1]]
        if temps:
            raise PipelineError(
                f"{ds.path} date {day.isoformat()}: a file is being landed there ({temps[0]}); "
                "try again when `microdc land` has moved on"
            )
        files = [rel for rel in snapshot if _is_data_file(rel)]
        rows = sum(pq.read_metadata(directory / rel).num_rows for rel in files)
        plans[day] = _DatePlan(snapshot, rows, len(files), sorted(keep.get(day, [])))
    return plans


# -- the stream core over bronze -----------------------------------------------------------------
#: (event ms, input rank, Kafka ms, topic, partition, offset, sequence, spec index, key, value):
#: totally ordered by the first seven fields (the sequence is unique).
_Input = tuple[int, int, int, str, int, int, int, int, bytes | None, bytes]


def _run_core(
    fleet: Fleet,
    bronze: dict[str, dict[date, Path]],
    stats: RebuildStats,
    lateness_s: float,
    facility_wait_s: float,
    grid_wait_s: float,
) -> dict[tuple[str, date], list[Any]]:
    """Feed bronze [read_from, date_to] (+ the next day's leading samples) to the core in event
    order; return the outputs to keep, per (dataset, date), in emission order."""
    pipeline = EmbeddedPipeline(
        fleet, lateness_s=lateness_s, facility_wait_s=facility_wait_s, grid_wait_s=grid_wait_s
    )
    grid_from = stats.read_from - timedelta(days=GRID_LOOKBACK_DAYS)
    after = stats.date_to + timedelta(days=1)
    dates = sorted(
        {
            day
            for name, dirs in bronze.items()
            for day in dirs
            if (grid_from if name == "grid_intensity" else stats.read_from) <= day <= after
        }
    )
    kept: dict[tuple[str, date], list[Any]] = defaultdict(list)
    pending: list[_Input] = []
    sequence = 0
    for day in dates:
        for rank, ds in enumerate(INPUTS):
            directory = bronze[ds.name].get(day)
            if directory is None or (day < stats.read_from and ds.name != "grid_intensity"):
                continue
            if day == after and ds.name not in _SAMPLES:
                continue
            limit = _day_ms(after) if day == after else None
            rows = _read_bronze(ds, rank, directory, sequence, limit, stats)
            sequence += len(rows)
            pending.extend(rows)
        pending.sort()
        horizon = _day_ms(day + timedelta(days=1)) - MAX_LEAD_MS
        cut = bisect.bisect_left(pending, (horizon,))
        _feed(pipeline, pending[:cut])
        del pending[:cut]
        _collect(pipeline, stats, kept)
    _feed(pipeline, pending)
    result = pipeline.close()
    _collect(pipeline, stats, kept)
    stats.duplicates = result.duplicates
    return kept


def _read_bronze(
    ds: Dataset,
    rank: int,
    directory: Path,
    sequence: int,
    start_before_ms: int | None,
    stats: RebuildStats,
) -> list[_Input]:
    """One bronze date directory as inputs (deduplicated on lineage). With `start_before_ms`,
    only samples whose interval starts before it."""
    spec = ds.topic
    convert = msgspec.convert
    encode = msgspec.json.encode
    seen: set[tuple[str, int, int]] = set()
    out: list[_Input] = []
    for path, partition_value in _bronze_files(ds, directory):
        try:
            table = pq.read_table(path, partitioning=None)
        except (OSError, pa.ArrowException) as exc:
            raise PipelineError(f"{path}: cannot read this bronze file: {exc}") from exc
        for row in table.to_pylist():
            lineage = (row.pop("_topic"), row.pop("_partition"), row.pop("_offset"))
            kafka_ms = epoch_ms(row.pop("_kafka_timestamp"))
            if lineage in seen:
                stats.relanded += 1
                continue
            seen.add(lineage)
            row.pop(HASHED_IP, None)
            if ds.partition_field is not None:
                row[ds.partition_field] = partition_value
            try:
                record = convert(row, ds.record_type)
            except (msgspec.ValidationError, ValueError, TypeError) as exc:
                stats.invalid += 1
                log.warning("%s: offset %d is not a valid record: %s", path, lineage[2], exc)
                continue
            event_ms = _event_ms(ds, record)
            if start_before_ms is not None and event_ms >= start_before_ms:
                continue
            stats.inputs[ds.name] += 1
            out.append(
                (
                    event_ms,
                    rank,
                    kafka_ms,
                    *lineage,
                    sequence + len(out),
                    rank,
                    spec.key_of(record),
                    encode(record),
                )
            )
    return out


def _event_ms(ds: Dataset, record: Any) -> int:
    """The instant the core judges the record's lateness by (a sample: its interval's start)."""
    assert ds.time_field is not None
    ms = epoch_ms(getattr(record, ds.time_field))
    if ds.name in _SAMPLES:
        ms -= round(record.interval_s * 1000)
    return ms


def _feed(pipeline: EmbeddedPipeline, items: list[_Input]) -> None:
    for item in items:
        pipeline.feed_one(INPUTS[item[7]].topic, item[8], item[9])


def _collect(
    pipeline: EmbeddedPipeline, stats: RebuildStats, kept: dict[tuple[str, date], list[Any]]
) -> None:
    """Move what the core emitted so far out of it: the rebuilt range's outputs into `kept`."""
    outputs = pipeline.result.outputs
    stats.late_events += len(outputs.get(LATE_EVENTS.name, ()))
    stats.dead_letters += len(outputs.get(DEAD_LETTERS.name, ()))
    for ds in REBUILT:
        assert ds.time_field is not None
        for record in outputs.get(ds.topic.name, ()):
            value = getattr(record, ds.time_field)
            ms = int(value) if ds.time_is_ms else epoch_ms(value)
            day = (EPOCH + timedelta(days=ms // DAY_MS)).date()
            if stats.date_from <= day <= stats.date_to:
                kept[(ds.name, day)].append(record)
    outputs.clear()  # the core only appends: this bounds memory over a long warm-up


# -- writing and swapping ------------------------------------------------------------------------
def _apply(
    lake: Lake,
    ds: Dataset,
    day: date,
    records: list[Any],
    plans: dict[date, _DatePlan],
    staging: Path,
    stats: RebuildStats,
    offset: int,
) -> DateChange | None:
    """Stage and swap in one date directory (or, in a dry run, only count it)."""
    plan = plans[day]
    if not records and not plan.files:
        return None  # nothing there, nothing to put there
    change = DateChange(ds.name, day, plan.rows, len(records), plan.files)
    topic = f"{ds.topic.name}{REBUILD_MARK}{stats.run_id}"
    segments = _segments(ds, day, records, topic, offset)
    change.files_after = sum(len(s.files) for s in segments)
    change.placeholders = len(plan.newest)
    if stats.dry_run:
        return change
    name = f"date={day.isoformat()}"
    live = Path(lake.dataset_root(ds)) / name
    copy_root = staging / uuid.uuid4().hex[:12]
    copy = Path(Lake(copy_root).dataset_root(ds)) / name
    copy.mkdir(parents=True)
    journal = _write_journal(copy_root, Path(lake.root), live, copy, plan.snapshot)
    swapped = False
    try:
        _stage(Lake(copy_root), ds, segments, live, copy, plan)
        if _tree(live) != plan.snapshot:
            change.conflict = "files landed there during the rebuild; run it again for this date"
            log.warning("%s/%s: %s", ds.path, name, change.conflict)
            return change
        live.mkdir(parents=True, exist_ok=True)
        exchange_directories(live, copy)
        swapped = True
        fsync_dir(live.parent)
        fsync_dir(copy.parent)
        stats.rescued += _rescue(live, copy, plan.snapshot)
        shutil.rmtree(copy_root)
        journal.unlink()
        change.swapped = True
        if not change.files_after and not change.placeholders:
            _remove_empty(live)
        return change
    finally:
        if not swapped:  # still the unused new copy: nothing of value in it
            shutil.rmtree(copy_root, ignore_errors=True)
            journal.unlink(missing_ok=True)


def _segments(ds: Dataset, day: date, records: list[Any], topic: str, offset: int) -> list[Segment]:
    """The rebuilt rows of one date as segments of `topic` partition 0 from `offset` on."""
    buffer = SegmentBuffer(ds, topic, 0, RollPolicy(), IpPolicy())
    fallback = _day_ms(day)
    encode = msgspec.json.encode
    segments: list[Segment] = []
    for record in records:
        reason = buffer.add(offset, output_event_ms(record, fallback), encode(record))
        if reason is not None:  # the core's own output: its contract holds
            raise PipelineError(f"{ds.path}: a rebuilt record does not fit the lake: {reason}")
        offset += 1
        if buffer.full():
            segments.extend(_take(buffer))
    segments.extend(_take(buffer))
    return segments


def _take(buffer: SegmentBuffer) -> list[Segment]:
    segment = buffer.take()
    return [] if segment is None or not segment.files else [segment]


def _stage(
    staging: Lake, ds: Dataset, segments: list[Segment], live: Path, copy: Path, plan: _DatePlan
) -> None:
    """Build the new date directory: the rebuilt files, and an empty file (same name, schema
    and footer) for each part of a landed topic-partition's newest segment."""
    for segment in segments:
        staging.write_segment(ds, segment)
    for rel in plan.newest:
        source, target = live / rel, copy / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        schema = pq.read_schema(source)
        with target.open("wb") as out:
            pq.write_table(
                schema.empty_table(),
                out,
                compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL,
            )
            out.flush()
            os.fsync(out.fileno())
    for directory, _, _ in os.walk(copy, topdown=False):
        fsync_dir(directory)


def _rescue(live: Path, old: Path, snapshot: dict[str, int]) -> int:
    """Move into `live` the files that appeared in the old copy after it was listed (landed
    in the instant before the swap); the rest of the old copy is what was replaced."""
    rescued = 0
    for rel, inode in _tree(old).items():
        if snapshot.get(rel) == inode or TEMP_MARK in rel.rsplit("/", 1)[-1]:
            continue
        target = live / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        (old / rel).replace(target)
        fsync_dir(target.parent)
        log.warning("%s: landed during the swap; moved into place", target)
        rescued += 1
    return rescued


def _remove_empty(directory: Path) -> None:
    """Remove `directory` and its subdirectories if they hold no file (a lander may be making
    one at this instant: then it stays)."""
    for sub, _, _ in os.walk(directory, topdown=False):
        with contextlib.suppress(OSError):
            Path(sub).rmdir()


def _write_journal(
    copy_root: Path, lake_root: Path, live: Path, copy: Path, snapshot: dict[str, int]
) -> Path:
    """Record, before anything is staged, which date directory `copy` replaces, the inode of
    `copy` and the listing of the live one: after a crash, the directory at `copy`'s path is the
    old one if its inode differs, and its files missing from the listing landed meanwhile."""
    entry = {
        "live": str(live.relative_to(lake_root)),
        "copy": str(copy.relative_to(lake_root)),
        "inode": copy.stat().st_ino,
        "snapshot": snapshot,
    }
    return write_journal(copy_root.with_suffix(".json"), entry)


def _clean_staging(lake_root: Path) -> tuple[int, int]:
    """Remove what interrupted runs left in `<lake>/_landing/rebuild`, first moving back the
    files landed during an interrupted swap."""
    base = lake_root / "_landing" / "rebuild"

    def rescue(journal: Path, entry: dict[str, Any]) -> int:
        live = (lake_root / str(entry["live"])).resolve()
        copy = (lake_root / str(entry["copy"])).resolve()
        inode = int(entry["inode"])
        snapshot = {str(k): int(v) for k, v in dict(entry["snapshot"]).items()}
        inside = live.is_relative_to(lake_root) and copy.is_relative_to(journal.parent)
        if inside and copy.is_dir() and live.is_dir() and copy.stat().st_ino != inode:
            return _rescue(live, copy, snapshot)
        return 0

    return clean_staging(base, rescue)


# -- listing -------------------------------------------------------------------------------------
def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _day_ms(day: date) -> int:
    return epoch_ms(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _date_dirs(root: Path) -> dict[date, Path]:
    """The `date=YYYY-MM-DD` directories of a dataset, by date."""
    out: dict[date, Path] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(root) as entries:
        for entry in entries:
            if not entry.name.startswith("date=") or not entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(ValueError):
                out[date.fromisoformat(entry.name.removeprefix("date="))] = Path(entry.path)
    return out


def _has_files(directory: Path | None) -> bool:
    return directory is not None and any(_is_data_file(rel) for rel in _tree(directory))


def _is_data_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith(".")


def _tree(directory: Path) -> dict[str, int]:
    """Every file below `directory` (hidden ones included), relative to it, with its inode."""
    out: dict[str, int] = {}
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            info = entry.stat(follow_symlinks=False)
                            out[str(Path(entry.path).relative_to(directory))] = info.st_ino
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return out


def _bronze_files(ds: Dataset, directory: Path) -> Iterator[tuple[Path, str | None]]:
    """The data files of one bronze date directory, in name order, with the partition value
    their directory names (`site_id=bog1`; percent-decoded as `paths.partition_value` encoded)."""
    prefix = f"{ds.partition_field}="
    for rel in sorted(r for r in _tree(directory) if _is_data_file(r)):
        parts = rel.split("/")
        value = None
        if ds.partition_field is not None:
            if len(parts) != 2 or not parts[0].startswith(prefix):
                continue  # not where the lander puts this dataset's files
            value = unquote(parts[0].removeprefix(prefix))
        yield directory / rel, value
