"""Rebuilding silver from bronze: late records come back into the marts and the rebuilt dates
equal the in-order run of the stream core, other dates are untouched, the lander's recovery
ignores rebuild files and keeps its position, live dates and bad ranges are refused, a dry run
writes nothing, files landing meanwhile are never lost, and the CLI prints its tables."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.embedded.demo import demo_fleet
from pipeline.embedded.driver import RunResult, run_embedded
from pipeline.embedded.landing import simulate_and_land
from pipeline.errors import ConfigError, PipelineError
from pipeline.fleet import load_fleet
from pipeline.fleet.model import Fleet
from pipeline.lake import BY_NAME, IpPolicy, Lake, RollPolicy, SegmentBuffer
from pipeline.lake import rebuild as rebuild_mod
from pipeline.lake.paths import parse_file_name
from pipeline.lake.rebuild import (
    REBUILD_MARK,
    REBUILT,
    is_rebuild_topic,
    rebuild,
    required_warmup_days,
)
from pipeline.simulate import FaultConfig, SimConfig, Simulator
from tests.support.cli_run import one_error_line, run

#: 22:00 on the first day to 02:00 on the second: two dates, the second the newest ("live").
CONFIG = SimConfig(
    start=datetime(2026, 3, 1, 22, 0, tzinfo=UTC),
    minutes=240,
    seed=5,
    rps_scale=0.004,
    faults=FaultConfig(late=0.05),
)
D1, D2 = date(2026, 3, 1), date(2026, 3, 2)
LINEAGE = ["_topic", "_partition", "_offset", "_kafka_timestamp"]
Rows = dict[tuple[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return demo_fleet(load_fleet(None), 2)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> Path:
    """A lake landed by `microdc demo`'s driver from a simulation with 5 % late records: they
    are late events in the stream, and in bronze."""
    root = tmp_path_factory.mktemp("landed") / "lake"
    run_ = simulate_and_land(fleet, CONFIG, Lake(root))
    assert run_.result.outputs["mdc.late-events"], "the simulation must make late events"
    return root


@pytest.fixture(scope="module")
def in_order(fleet: Fleet) -> RunResult:
    """The stream core over the same records in event-time order: nothing is late."""
    envelopes = [e for batch in Simulator(fleet, CONFIG).minutes() for e in batch]
    envelopes.sort(key=lambda e: e.event_ms)
    result = run_embedded(fleet, [(e.topic, e.key, e.value) for e in envelopes])
    assert not result.outputs.get("mdc.late-events")
    return result


@pytest.fixture
def lake(tmp_path: Path, landed: Path) -> Path:
    """A copy of the landed lake for one test."""
    shutil.copytree(landed, tmp_path / "lake")
    return tmp_path / "lake"


# -- reading the lake ----------------------------------------------------------------------------
def _row_key(row: dict[str, Any]) -> Any:
    return row["key"] if "key" in row else (row["alert_id"], row["state"])


def silver(root: Path, name: str, day: date) -> Rows:
    """Rows of a silver date directory without lineage, by (leaf directory, natural key)."""
    base = root / "silver" / name
    rows: Rows = {}
    for path in sorted((base / f"date={day.isoformat()}").rglob("*.parquet")):
        table = pq.read_table(path, partitioning=None).drop_columns(LINEAGE)
        for row in table.to_pylist():
            key = (str(path.parent.relative_to(base)), _row_key(row))
            assert key not in rows, f"{name}: {key} twice"
            rows[key] = row
    return rows


def expected(result: RunResult, name: str, day: date) -> Rows:
    """The in-order run's records of a dataset and date, stored as the lake stores them (the
    segment writer turns them into the same columns and directories)."""
    ds = BY_NAME[name]
    buffer = SegmentBuffer(ds, "expected", 0, RollPolicy(), IpPolicy())
    for offset, record in enumerate(result.outputs[ds.topic.name]):
        assert buffer.add(offset, 0, msgspec.json.encode(record)) is None
    segment = buffer.take()
    assert segment is not None
    rows: Rows = {}
    for part in segment.files:
        if part.directory.split("/")[0] == f"date={day.isoformat()}":
            for row in part.table.drop_columns(LINEAGE).to_pylist():
                rows[(part.directory, _row_key(row))] = row
    return rows


def lineage_topics(root: Path, name: str, day: date) -> set[str]:
    base = root / "silver" / name / f"date={day.isoformat()}"
    return {
        topic
        for path in base.rglob("*.parquet")
        for topic in pq.read_table(path, columns=["_topic"]).column("_topic").to_pylist()
    }


def contents(root: Path, below: str = "") -> dict[str, str]:
    """Every file below `root/below` (hidden ones and `_landing` included) with its sha256."""
    base = root / below
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(base.rglob("*"))
        if path.is_file()
    }


def bronze_request_ids(root: Path, day: date) -> set[str]:
    base = root / "bronze" / "request_log" / f"date={day.isoformat()}"
    return {
        rid
        for path in base.rglob("*.parquet")
        for rid in pq.read_table(path, columns=["request_id"]).column("request_id").to_pylist()
    }


def positions(root: Path) -> dict[tuple[str, str, int], int | None]:
    """Where the lander would resume each landed silver topic-partition (`Lake.recover`)."""
    lake = Lake(root)
    out = {}
    for ds in REBUILT:
        tps = set()
        for rel in lake.list_files(ds):
            seg = parse_file_name(rel.rsplit("/", 1)[-1])
            if seg is not None and not is_rebuild_topic(seg.topic):
                tps.add((seg.topic, seg.partition))
        for topic, partition in sorted(tps):
            out[(ds.name, topic, partition)] = lake.recover(ds, topic, partition)
    return out


# -- what a rebuild computes ---------------------------------------------------------------------
def test_a_rebuild_puts_late_records_back_and_equals_the_in_order_run(
    lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    before = silver(lake, "energy_minutes", D1)
    want = expected(in_order, "energy_minutes", D1)
    stream_requests = sum(row["requests"] for row in before.values())
    assert stream_requests < sum(row["requests"] for row in want.values())  # late ones missing
    untouched = {"silver D2": contents(lake, "silver"), "bronze": contents(lake, "bronze")}
    untouched["silver D2"] = {k: v for k, v in untouched["silver D2"].items() if "2026-03-02" in k}
    late_events = contents(lake, "silver/late_events")

    stats = rebuild(lake, D1, D1, fleet)

    for ds in REBUILT:
        got, want = silver(lake, ds.name, D1), expected(in_order, ds.name, D1)
        assert got.keys() == want.keys(), ds.name
        for key, row in want.items():
            assert got[key] == row, (ds.name, key)
        assert lineage_topics(lake, ds.name, D1) == {f"{ds.topic.name}.rebuild-{stats.run_id}"}
    # every request of the day that bronze holds is in the day's energy minutes now
    rebuilt = silver(lake, "energy_minutes", D1)
    assert sum(row["requests"] for row in rebuilt.values()) == len(bronze_request_ids(lake, D1))
    after = contents(lake, "silver")
    assert {k: v for k, v in after.items() if "2026-03-02" in k} == untouched["silver D2"]
    assert contents(lake, "bronze") == untouched["bronze"]
    assert contents(lake, "silver/late_events") == late_events
    assert not (lake / "_landing" / "rebuild").exists()
    changes = {c.dataset: c for c in stats.changes}
    assert changes.keys() == {ds.name for ds in REBUILT}
    energy = changes["energy_minutes"]
    assert (energy.rows_before, energy.rows_after) == (len(before), len(rebuilt))
    assert all(c.swapped and c.conflict is None for c in stats.changes)
    assert stats.late_events == 0 and stats.dead_letters == 0 and stats.relanded == 0
    assert stats.read_from == date(2026, 1, 30)  # the demo SLOs' 30-day period


def test_the_last_minutes_of_a_day_take_the_next_days_samples(
    lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    # 23:59:30-00:00:00 is the sample observed at 00:00:00, which bronze dates the next day
    rebuild(lake, D1, D1, fleet)

    def last_minute(rows: Rows) -> Rows:
        return {k: r for k, r in rows.items() if r["window_start"].strftime("%H:%M") == "23:59"}

    got = last_minute(silver(lake, "energy_minutes", D1))
    assert got and got == last_minute(expected(in_order, "energy_minutes", D1))
    assert {row["coverage"] for row in got.values()} == {1.0}


def test_rows_landed_twice_are_read_once(lake: Path, fleet: Fleet, in_order: RunResult) -> None:
    leaf = lake / "bronze" / "request_log" / f"date={D1.isoformat()}" / "site_id=bog1"
    original = sorted(leaf.glob("*.parquet"))[0]
    seg = parse_file_name(original.name)
    assert seg is not None
    copy = leaf / f"{seg.topic}+{seg.partition}+{seg.first:020d}-{seg.last + 1:020d}.parquet"
    shutil.copy(original, copy)  # the same rows, landed again (as a merge next to its inputs)
    stats = rebuild(lake, D1, D1, fleet)
    assert stats.relanded == pq.read_metadata(original).num_rows > 0
    assert silver(lake, "energy_minutes", D1) == expected(in_order, "energy_minutes", D1)


def test_the_warm_up_covers_burn_windows_slo_periods_and_the_month(fleet: Fleet) -> None:
    assert required_warmup_days(fleet, date(2026, 3, 2)) == 30  # the demo SLOs' period
    short = msgspec.structs.replace(
        fleet,
        services=[
            msgspec.structs.replace(s, slo=msgspec.structs.replace(s.slo, period_days=1))
            for s in fleet.services
        ],
    )
    assert required_warmup_days(short, date(2026, 3, 2)) == 3  # the 3-day burn window
    assert required_warmup_days(short, date(2026, 3, 20)) == 19  # energy budgets: the month


def test_a_short_warm_up_changes_the_slo_columns_the_default_one_does_not(
    lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    want = expected(in_order, "slo_burn", D2)
    rebuild(lake, D2, D2, fleet, force=True, warmup_days=0)  # the first day's 2 h not read
    short = silver(lake, "slo_burn", D2)
    assert short.keys() == want.keys() and short != want
    stats = rebuild(lake, D2, D2, fleet, force=True)
    assert stats.warmup_days == stats.required_warmup_days == 30
    assert silver(lake, "slo_burn", D2) == want
    assert silver(lake, "energy_minutes", D2) == expected(in_order, "energy_minutes", D2)


# -- the lander --------------------------------------------------------------------------------
def _land_extra_site_minutes(root: Path, in_order: RunResult) -> tuple[str, int, int]:
    """Land a segment of site minutes of D1 after every other one of its partition (a
    re-emission landed late): the newest segment of `mdc.site-minutes`[0] now lies in D1.
    Returns the topic, where its recovery resumes and how many files the segment has."""
    lake = Lake(root)
    ds = BY_NAME["site_minutes"]
    topic = ds.topic.name
    last = max(item.segment.last for item in lake.landed(ds, topic, 0))
    buffer = SegmentBuffer(ds, topic, 0, RollPolicy(), IpPolicy())
    records = [r for r in in_order.outputs[topic] if r.window_start.date() == D1][:5]
    for i, record in enumerate(records):
        assert buffer.add(last + 1 + i, 0, msgspec.json.encode(record)) is None
    segment = buffer.take()
    assert segment is not None and len(segment.files) > 1
    lake.write_segment(ds, segment)
    return topic, last + 1 + len(records), len(segment.files)


def test_the_landers_recovery_ignores_rebuild_files_and_keeps_its_position(
    lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    topic, resume, files = _land_extra_site_minutes(lake, in_order)
    before = positions(lake)
    assert before[("site_minutes", topic, 0)] == resume
    stats = rebuild(lake, D1, D1, fleet)
    rebuilt_files = {
        rel: sha for rel, sha in contents(lake, "silver").items() if REBUILD_MARK in rel
    }
    assert rebuilt_files
    assert positions(lake) == before  # recovery resumes where it did, deleting nothing
    assert {rel: sha for rel, sha in contents(lake, "silver").items() if REBUILD_MARK in rel} == (
        rebuilt_files
    )
    # the newest segment's part in D1 became an empty file of the same name; its rows are gone
    change = next(c for c in stats.changes if c.dataset == "site_minutes")
    assert change.placeholders == files  # one per site directory the segment reached
    assert silver(lake, "site_minutes", D1) == expected(in_order, "site_minutes", D1)
    # a landing of the next offsets lands next to the rebuilt files, which recovery never lists
    lake_ = Lake(lake)
    ds = BY_NAME["site_minutes"]
    assert all(not is_rebuild_topic(item.segment.topic) for item in lake_.landed(ds, topic, 0))
    assert lake_.landed(ds, f"{topic}{REBUILD_MARK}{stats.run_id}", 0)  # its own name only


def test_a_date_holding_part_of_an_incomplete_newest_segment_is_refused(
    lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    topic, resume, files = _land_extra_site_minutes(lake, in_order)
    parts = sorted((lake / "silver" / "site_minutes").rglob(f"{topic}+*-{resume - 1:020d}.parquet"))
    assert len(parts) == files
    parts[-1].unlink()  # a crash cut the segment short
    before = {**contents(lake, "bronze"), **contents(lake, "silver")}
    pattern = rf"silver/site_minutes date 2026-03-01: .* {files - 1} of its {files} files"
    with pytest.raises(PipelineError, match=pattern):
        rebuild(lake, D1, D1, fleet)
    assert {**contents(lake, "bronze"), **contents(lake, "silver")} == before
    assert not (lake / "_landing" / "rebuild").exists()


# -- refusals and dry runs -----------------------------------------------------------------------
def test_the_newest_date_is_refused_without_force(lake: Path, fleet: Fleet) -> None:
    before = contents(lake)
    with pytest.raises(ConfigError, match=r"--to 2026-03-02 is not before 2026-03-02.*--force"):
        rebuild(lake, D1, D2, fleet)
    with pytest.raises(ConfigError, match="not before"):
        rebuild(lake, D1, D2, fleet, dry_run=True)
    assert contents(lake) == before
    stats = rebuild(lake, D1, D2, fleet, force=True)
    assert {c.day for c in stats.changes} == {D1, D2}


def test_bad_ranges_are_clear_errors_and_write_nothing(
    tmp_path: Path, lake: Path, fleet: Fleet
) -> None:
    before = contents(lake)
    with pytest.raises(ConfigError, match="--from 2026-03-02 is after --to 2026-03-01"):
        rebuild(lake, D2, D1, fleet)
    with pytest.raises(
        PipelineError,
        match=r"no node telemetry or request logs for 2026-02-01 \.\. 2026-02-03: nothing to "
        r"rebuild \(bronze has 2026-03-01 \.\. 2026-03-02\)",
    ):
        rebuild(lake, date(2026, 2, 1), date(2026, 2, 3), fleet)
    with pytest.raises(ConfigError, match="no lake at"):
        rebuild(tmp_path / "nowhere", D1, D1, fleet)
    assert not (tmp_path / "nowhere").exists()
    assert contents(lake) == before
    # a date without bronze inside the range is left alone, the others are rebuilt
    stats = rebuild(lake, date(2026, 2, 28), D1, fleet)
    assert stats.skipped_dates == [date(2026, 2, 28)]
    assert {c.day for c in stats.changes} == {D1}


def test_a_dry_run_says_what_would_change_and_writes_nothing(
    lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    before = contents(lake)
    stats = rebuild(lake, D1, D1, fleet, dry_run=True)
    assert contents(lake) == before  # not even a lock file or a staging directory
    assert stats.dry_run and not any(c.swapped for c in stats.changes)
    for change in stats.changes:
        assert change.rows_before == len(silver(lake, change.dataset, D1))
        assert change.rows_after == len(expected(in_order, change.dataset, D1))
    assert any(c.rows_after != c.rows_before for c in stats.changes)


def test_compaction_and_rebuild_never_run_together(lake: Path, fleet: Fleet) -> None:
    lock = lake / "_landing" / "compact.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    before = contents(lake, "silver")
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(PipelineError, match="another compaction or rebuild is running"):
            rebuild(lake, D1, D1, fleet)
    assert contents(lake, "silver") == before


# -- files landing meanwhile ---------------------------------------------------------------------
def land_now(root: Path, name: str, partition: int, offset: int, record: Any) -> Path:
    """Land a one-record segment of `name` as `microdc land` would (straight into the lake)."""
    ds = BY_NAME[name]
    buffer = SegmentBuffer(ds, ds.topic.name, partition, RollPolicy(), IpPolicy())
    assert buffer.add(offset, 0, msgspec.json.encode(record)) is None
    segment = buffer.take()
    assert segment is not None
    (path,) = Lake(root).write_segment(ds, segment)
    return Path(path)


def first_record(result: RunResult, name: str, day: date) -> Any:
    ds = BY_NAME[name]
    return next(
        r
        for r in result.outputs[ds.topic.name]
        if (
            r.window_start.date()
            if hasattr(r, "window_start")
            else datetime.fromtimestamp(r.at_ms / 1000, UTC).date()
        )
        == day
    )


def wrap(monkeypatch: pytest.MonkeyPatch, name: str, before: Callable[..., None]) -> None:
    """Run `before(*args)` ahead of `rebuild_mod.<name>(*args)`."""
    real = getattr(rebuild_mod, name)

    def wrapped(*args: Any) -> Any:
        before(*args)
        return real(*args)

    monkeypatch.setattr(rebuild_mod, name, wrapped)


def date_dir(root: Path, name: str, day: date) -> Path:
    return (root / "silver" / name / f"date={day.isoformat()}").resolve()


def test_a_date_a_file_lands_in_during_the_rebuild_is_left_alone(
    lake: Path, fleet: Fleet, in_order: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed: list[Path] = []

    def land(staging: Any, ds: Any, *rest: Any) -> None:  # while the new copy is built
        if ds.name == "energy_minutes":
            record = first_record(in_order, "energy_minutes", D1)
            landed.append(land_now(lake, "energy_minutes", 3, 99_999_999, record))

    wrap(monkeypatch, "_stage", land)
    before = contents(lake, "silver/energy_minutes")
    stats = rebuild(lake, D1, D1, fleet)
    (conflict,) = stats.conflicts
    assert (conflict.dataset, conflict.day, conflict.swapped) == ("energy_minutes", D1, False)
    rel = str(landed[0].relative_to(Path(lake).resolve()))
    assert contents(lake, "silver/energy_minutes") == {**before, rel: contents(lake)[rel]}
    assert {c.dataset for c in stats.changes if c.swapped} == {"site_minutes", "slo_burn", "alerts"}
    assert not (lake / "_landing" / "rebuild").exists()


def test_a_file_landing_during_the_swap_is_moved_into_place(
    lake: Path, fleet: Fleet, in_order: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed: list[Path] = []

    def land(live: Path, copy: Path) -> None:  # after the last listing, right before the swap
        if live == date_dir(lake, "alerts", D1):
            record = first_record(in_order, "alerts", D1)
            landed.append(land_now(lake, "alerts", 0, 99_999_999, record))

    wrap(monkeypatch, "exchange_directories", land)
    stats = rebuild(lake, D1, D1, fleet)
    assert stats.rescued == 1 and not stats.conflicts
    assert landed[0].is_file()  # moved out of the old copy into the rebuilt directory
    assert pq.read_metadata(landed[0]).num_rows == 1
    assert any(REBUILD_MARK in p.name for p in landed[0].parent.iterdir())


def test_an_interrupted_rebuild_is_cleaned_up_and_its_landed_files_rescued(
    lake: Path, fleet: Fleet, in_order: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed: list[Path] = []

    def land(live: Path, copy: Path) -> None:
        if live == date_dir(lake, "slo_burn", D1):
            record = first_record(in_order, "slo_burn", D1)
            landed.append(land_now(lake, "slo_burn", 0, 99_999_999, record))

    real_rescue = rebuild_mod._rescue

    def crash(live: Path, old: Path, snapshot: dict[str, int]) -> int:
        if live == date_dir(lake, "slo_burn", D1):
            raise KeyboardInterrupt  # the process dies right after this swap
        return real_rescue(live, old, snapshot)

    wrap(monkeypatch, "exchange_directories", land)
    monkeypatch.setattr(rebuild_mod, "_rescue", crash)
    with pytest.raises(KeyboardInterrupt):
        rebuild(lake, D1, D1, fleet)
    assert not landed[0].exists()  # it is in the old copy, in the staging area
    monkeypatch.undo()
    stats = rebuild(lake, D1, D1, fleet)
    assert (stats.leftovers, stats.rescued) == (1, 1)
    assert not (lake / "_landing" / "rebuild").exists()
    # moved back, it was the newest segment of its partition: kept as an empty stand-in
    assert landed[0].is_file() and pq.read_metadata(landed[0]).num_rows == 0
    ds = BY_NAME["slo_burn"]
    assert Lake(lake).recover(ds, ds.topic.name, 0) == 100_000_000


# -- the command line ----------------------------------------------------------------------------
def _fleet_file(tmp_path: Path, fleet: Fleet) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(msgspec.yaml.encode(fleet))
    return path


def _cells(output: str, first: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in output.splitlines()
        if line.startswith("│") and line.strip("│ ").split("│")[0].strip() == first
    ]


def test_cli_rebuilds_and_prints_a_summary(
    tmp_path: Path, lake: Path, fleet: Fleet, in_order: RunResult
) -> None:
    fleet_file = _fleet_file(tmp_path, fleet)
    args = ["lake", "rebuild", "--lake", str(lake), "--from", "2026-03-01", "--to", "2026-03-01"]
    args += ["--fleet", str(fleet_file)]
    before = contents(lake)
    rows_now = len(silver(lake, "energy_minutes", D1))
    rows_after = len(expected(in_order, "energy_minutes", D1))
    assert rows_now != rows_after

    result = CliRunner().invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert contents(lake) == before
    (dry, summary) = _cells(result.output, "energy_minutes")
    change = f"{rows_after - rows_now:+,}"
    assert dry[:5] == ["energy_minutes", "2026-03-01", f"{rows_now:,}", f"{rows_after:,}", change]
    assert summary == ["energy_minutes", "2026-03-01", f"{rows_now:,}", f"{rows_after:,}"]
    assert "dry run" in result.output

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (summary,) = _cells(result.output, "energy_minutes")
    assert summary == ["energy_minutes", "2026-03-01", f"{rows_now:,}", f"{rows_after:,}"]
    assert "30 days of warm-up" in result.output
    assert silver(lake, "energy_minutes", D1) == expected(in_order, "energy_minutes", D1)


@pytest.mark.parametrize(
    ("dates", "code", "message"),
    [
        (["--from", "2026-03-02", "--to", "2026-03-01"], 2, "--from 2026-03-02 is after --to"),
        (["--from", "2026-02-30", "--to", "2026-03-01"], 2, "--from '2026-02-30' is not a date"),
        (["--from", "2026-03-01", "--to", "03/02/2026"], 2, "--to '03/02/2026' is not a date"),
        (["--from", "2026-03-01", "--to", "2026-03-02"], 2, "is not before 2026-03-02"),
        (["--from", "2026-02-01", "--to", "2026-02-02"], 1, "nothing to rebuild"),
    ],
)
def test_cli_errors_are_one_line(
    dates: list[str],
    code: int,
    message: str,
    tmp_path: Path,
    lake: Path,
    fleet: Fleet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet_file = _fleet_file(tmp_path, fleet)
    before = contents(lake)
    exit_code, _, err = run(
        ["lake", "rebuild", "--lake", str(lake), "--fleet", str(fleet_file), *dates], capsys
    )
    assert exit_code == code
    assert message in one_error_line(err)
    assert contents(lake) == before


def test_cli_names_the_dates_it_could_not_swap(
    tmp_path: Path,
    lake: Path,
    fleet: Fleet,
    in_order: RunResult,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def land(staging: Any, ds: Any, *rest: Any) -> None:
        if ds.name == "site_minutes":
            land_now(
                lake, "site_minutes", 0, 99_999_999, first_record(in_order, "site_minutes", D1)
            )

    wrap(monkeypatch, "_stage", land)
    args = ["lake", "rebuild", "--lake", str(lake), "--fleet", str(_fleet_file(tmp_path, fleet))]
    code, out, err = run([*args, "--from", "2026-03-01", "--to", "2026-03-01"], capsys)
    assert code == 1
    assert one_error_line(err) == (
        "error: not swapped, files landed there during the rebuild: site_minutes 2026-03-01; "
        "run the rebuild again for those dates"
    )
    assert "slo_burn" in out  # the summary is printed first
