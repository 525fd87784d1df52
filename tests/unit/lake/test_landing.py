"""The lake's pure parts and its store: paths, Arrow schemas, segments, atomic landing, recovery,
privacy and readers (DuckDB, Polars, pyarrow) - no Kafka here (see tests/integration)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipeline.contracts.records import RequestLog
from pipeline.contracts.topics import REQUEST_LOG
from pipeline.errors import PipelineError
from pipeline.lake import BY_NAME, IpPolicy, Lake, RollPolicy, SegmentBuffer
from pipeline.lake.arrow_schema import arrow_schema, load_contract
from pipeline.lake.datasets import Dataset
from pipeline.lake.paths import file_name, parse_file_name, partition_value, temp_name
from pipeline.lake.segment import SEGMENT_META

T0 = datetime(2026, 3, 2, 23, 58, tzinfo=UTC)  # two minutes before a day boundary
TOPIC = REQUEST_LOG.name
REQUESTS = BY_NAME["request_log"]


def request(
    i: int, *, site: str = "bog1", at: datetime | None = None, ip: str | None = None
) -> bytes:
    record = RequestLog(
        finished_at=at or T0 + timedelta(seconds=i),
        request_id=f"r{i}",
        site_id=site,
        node_id=f"{site}-n01",
        service="checkout-api",
        team="payments",
        status=200 if i % 7 else 503,
        latency_ms=10.0 + i,
        bytes_in=100,
        bytes_out=2000 + i,
        route="/pay",
        client_region="CO-DC",
        client_ip=ip,
    )
    return msgspec.json.encode(record)


def buffer(policy: RollPolicy | None = None, ip: IpPolicy | None = None) -> SegmentBuffer:
    return SegmentBuffer(REQUESTS, TOPIC, 2, policy or RollPolicy(), ip or IpPolicy())


def read_rows(lake: Lake, dataset: Dataset) -> pa.Table:
    return pads.dataset(
        lake.dataset_root(dataset), format="parquet", partitioning="hive"
    ).to_table()


# -- paths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bog1", "bog1"),
        ("MX-CMX_2.b", "MX-CMX_2.b"),
        ("../../etc", "%2E%2E%2F%2E%2E%2Fetc"),
        ("..", "%2E%2E"),
        (".hidden", "%2Ehidden"),
        ("a/b", "a%2Fb"),
        ("", "%00"),
        (None, "__null__"),
        ("sp ace", "sp%20ace"),
    ],
)
def test_partition_values_are_one_safe_path_component(value: object, expected: str) -> None:
    got = partition_value(value)
    assert got == expected
    assert "/" not in got and got not in (".", "..") and not got.startswith(".")


def test_file_names_round_trip_and_temps_are_invisible() -> None:
    name = file_name("p.mdc.request-log", 3, 17, 4_000_000_000)
    assert name == "p.mdc.request-log+3+00000000000000000017-00000000004000000000.parquet"
    seg = parse_file_name(name)
    assert seg is not None and (seg.topic, seg.partition, seg.first, seg.last) == (
        "p.mdc.request-log",
        3,
        17,
        4_000_000_000,
    )
    temp = temp_name(name, "abc")
    assert temp.startswith(".") and not temp.endswith(".parquet")
    assert parse_file_name(temp) is None


# -- Arrow schemas -------------------------------------------------------------------------------
def test_request_log_schema_is_derived_from_the_contract_not_the_data() -> None:
    schema = arrow_schema(load_contract("request_log.schema.json"))
    assert schema.field("finished_at").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("finished_at").nullable
    assert schema.field("status").type == pa.int64()
    assert schema.field("latency_ms").type == pa.float64()
    assert schema.field("route").nullable and schema.field("route").type == pa.string()
    # The files' schema: partition column out, the IP replaced by its keyed hash, lineage in.
    files = REQUESTS.schema
    assert "site_id" not in files.names and "client_ip" not in files.names
    assert files.field("client_ip_hmac").nullable
    assert files.names[-4:] == ["_topic", "_partition", "_offset", "_kafka_timestamp"]


def test_output_schemas_map_bytes_maps_and_optional_fields() -> None:
    dead = BY_NAME["dead_letters"].schema
    assert dead.field("value").type == pa.binary() and not dead.field("value").nullable
    assert dead.field("record_key").nullable
    burn = BY_NAME["slo_burn"].schema
    assert burn.field("availability_burn").type == pa.map_(pa.string(), pa.float64())
    energy = BY_NAME["energy_minutes"].schema
    assert energy.field("sci_gco2e_per_request").nullable
    assert energy.field("window_start").type == pa.timestamp("us", tz="UTC")


def test_an_unmappable_contract_names_the_file_and_field() -> None:
    doc = {"properties": {"x": {"type": "array"}}}
    with pytest.raises(PipelineError, match=r"schemas/x.json: \$\.properties\.x: cannot map"):
        arrow_schema(doc, source="schemas/x.json")


def test_committed_output_schemas_are_current() -> None:
    from pipeline.contracts.output_schemas import OUTPUT_RECORDS, output_json_schema

    root = Path(__file__).resolve().parents[3] / "schemas" / "outputs"
    for name in OUTPUT_RECORDS:
        assert (root / f"{name}.schema.json").read_text() == output_json_schema(name), (
            f"schemas/outputs/{name}.schema.json is stale: run `microdc schemas write`"
        )


# -- segments ------------------------------------------------------------------------------------
def test_a_segment_splits_by_date_and_site_and_keeps_lineage() -> None:
    buf = buffer()
    for i in range(240):  # 4 minutes from 23:58: two dates; alternate sites
        assert (
            buf.add(1000 + i, 1_772_000_000_000 + i, request(i, site=("bog1", "mex1")[i % 2]))
            is None
        )
    assert buf.add(1240, 0, b"{not json") is not None
    assert buf.add(1241, 0, None) is not None
    segment = buf.take()
    assert segment is not None and buf.take() is None
    assert (segment.first, segment.last, segment.rows, segment.invalid) == (1000, 1241, 240, 2)
    dirs = [f.directory for f in segment.files]
    assert dirs == [
        "date=2026-03-02/site_id=bog1",
        "date=2026-03-02/site_id=mex1",
        "date=2026-03-03/site_id=bog1",
        "date=2026-03-03/site_id=mex1",
    ]
    assert {f.name for f in segment.files} == {file_name(TOPIC, 2, 1000, 1241)}
    assert sum(f.table.num_rows for f in segment.files) == 240
    offsets = sorted(o for f in segment.files for o in f.table.column("_offset").to_pylist())
    assert offsets == list(range(1000, 1240))
    first = segment.files[0].table
    assert first.schema.metadata[SEGMENT_META] and json.loads(
        first.schema.metadata[SEGMENT_META]
    ) == {
        "topic": TOPIC,
        "partition": 2,
        "first": 1000,
        "last": 1241,
        "files": 4,
    }


def test_rolls_on_rows_bytes_and_the_writers_event_time_hour() -> None:
    small = buffer(RollPolicy(max_rows=3))
    for i in range(2):
        small.add(i, 0, request(i))
    assert not small.full()
    small.add(2, 0, request(2))
    assert small.full()

    by_bytes = buffer(RollPolicy(max_bytes=500))
    by_bytes.add(0, 0, request(0))
    by_bytes.add(1, 0, request(1))
    assert by_bytes.full()

    hourly = buffer(RollPolicy(lateness_ms=120_000))
    hourly.add(0, 0, request(0, at=datetime(2026, 3, 2, 10, 59, 30, tzinfo=UTC)))
    end = int(datetime(2026, 3, 2, 11, tzinfo=UTC).timestamp() * 1000)
    assert not hourly.hour_passed(end + 119_999)  # within the allowed lateness
    assert hourly.hour_passed(end + 120_000)
    assert not hourly.hour_passed(None)


def test_client_ips_never_land_raw() -> None:
    ips = ["203.0.113.7", "198.51.100.9", "203.0.113.7"]
    keyed = buffer(ip=IpPolicy(b"s3cret"))
    dropped = buffer()
    for i, ip in enumerate(ips):
        keyed.add(i, 0, request(i, ip=ip))
        dropped.add(i, 0, request(i, ip=ip))
    hashed = keyed.take()
    gone = dropped.take()
    assert hashed is not None and gone is not None
    values = hashed.files[0].table.column("client_ip_hmac").to_pylist()
    assert values[0] == values[2] != values[1]
    assert all(len(v) == 32 and v not in ips for v in values)
    assert values[0] == IpPolicy(b"s3cret")("203.0.113.7") != IpPolicy(b"other")("203.0.113.7")
    assert gone.files[0].table.column("client_ip_hmac").to_pylist() == [None] * 3
    for segment in (hashed, gone):
        text = segment.files[0].table.to_pandas().to_csv()
        assert not any(ip in text for ip in ips)


def test_a_hostile_site_id_cannot_write_outside_the_lake(tmp_path: Path) -> None:
    # Valid request logs cannot carry such an id (the contract forbids it), but outputs and
    # future datasets might: the partition value is encoded, never interpreted as a path.
    lake = Lake(tmp_path / "lake")
    buf = buffer()
    buf.add(0, 0, request(0))
    segment = buf.take()
    assert segment is not None
    segment.files[0].directory = "date=2026-03-02/site_id=" + partition_value("../../../escaped")
    lake.write_segment(REQUESTS, segment)
    assert not (tmp_path / "escaped").exists()
    landed = [p for p in (tmp_path / "lake").rglob("*.parquet")]
    assert len(landed) == 1 and landed[0].is_relative_to(tmp_path / "lake" / "bronze")
    segment.files[0].directory = "date=2026-03-02/../../../../escaped"
    with pytest.raises(ValueError, match="outside the lake"):
        lake.write_segment(REQUESTS, segment)
    assert not (tmp_path / "escaped").exists()


# -- store: landing and recovery -----------------------------------------------------------------
def land(lake: Lake, first: int, n: int, *, sites: tuple[str, ...] = ("bog1", "mex1")) -> None:
    buf = buffer()
    for i in range(first, first + n):
        buf.add(i, 1_772_000_000_000, request(i, site=sites[i % len(sites)]))
    segment = buf.take()
    assert segment is not None
    lake.write_segment(REQUESTS, segment)


def test_recovery_resumes_after_the_newest_whole_segment(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    assert lake.recover(REQUESTS, TOPIC, 2) is None
    land(lake, 0, 100)
    land(lake, 100, 50)
    assert lake.recover(REQUESTS, TOPIC, 2) == 150
    assert lake.recover(REQUESTS, "other.topic", 2) is None
    assert read_rows(lake, REQUESTS).num_rows == 150


def test_a_segment_cut_short_by_a_crash_is_removed_and_read_again(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    land(lake, 0, 100)
    land(lake, 100, 60)  # four files: two sites, and midnight UTC falls inside
    newest = sorted(tmp_path.rglob(f"*{file_name(TOPIC, 2, 100, 159)}"))
    assert len(newest) == 4
    newest[-1].unlink()  # the crash happened before the last rename
    temp = newest[0].parent / temp_name(newest[0].name, "dead")
    temp.write_bytes(b"half a file")
    foreign_temp = newest[0].parent / temp_name(file_name(TOPIC, 3, 0, 9), "live")
    foreign_temp.write_bytes(b"another partition's writer")
    assert lake.recover(REQUESTS, TOPIC, 2) == 100
    assert not any(path.exists() for path in newest) and not temp.exists()
    assert foreign_temp.exists()  # not ours: partition 3 may be landing right now
    assert read_rows(lake, REQUESTS).num_rows == 100
    land(lake, 100, 60)
    assert lake.recover(REQUESTS, TOPIC, 2) == 160
    offsets = read_rows(lake, REQUESTS).column("_offset").to_pylist()
    assert sorted(offsets) == list(range(160))


def test_one_writer_per_partition(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    first = lake.lock(TOPIC, 1)
    assert first is not None
    assert lake.lock(TOPIC, 1) is None  # flock is per open file: a second owner is refused
    other = lake.lock(TOPIC, 2)
    assert other is not None
    first.release()
    again = lake.lock(TOPIC, 1)
    assert again is not None
    again.release()
    other.release()


# -- readers -------------------------------------------------------------------------------------
def test_duckdb_polars_and_pyarrow_read_the_lake_with_hive_partitions(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    land(lake, 0, 90)
    glob = f"{lake.dataset_root(REQUESTS)}/**/*.parquet"
    con = duckdb.connect()
    by_site = dict(
        con.execute(
            f"select site_id, count(*) from read_parquet('{glob}', hive_partitioning=true) "
            "group by all order by 1"
        ).fetchall()
    )
    assert by_site == {"bog1": 45, "mex1": 45}
    frame = pl.scan_parquet(glob, hive_partitioning=True).collect()
    assert frame.height == 90 and Counter(frame["site_id"].to_list()) == {"bog1": 45, "mex1": 45}
    table = read_rows(lake, REQUESTS)
    assert table.num_rows == 90 and set(table.column("site_id").to_pylist()) == {"bog1", "mex1"}
    assert con.execute(
        f"select count(*) from read_parquet('{glob}', hive_partitioning=true) "
        "where date = '2026-03-02'"
    ).fetchone() == (90,)


def test_a_new_optional_field_is_a_new_column_and_old_files_stay_readable(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    land(lake, 0, 10)
    # The contract gains an optional field: a new dataset definition with the extra column.
    doc = json.loads(json.dumps(load_contract("request_log.schema.json")))
    doc["properties"]["http_version"] = {"type": ["string", "null"]}
    evolved_schema = arrow_schema(doc)
    assert evolved_schema.field("http_version").nullable
    newer = pq.read_table(next(tmp_path.rglob("*.parquet")))
    table = newer.append_column("http_version", pa.array(["h2"] * newer.num_rows))
    target = next(tmp_path.rglob("*.parquet")).parent / file_name(TOPIC, 2, 10, 19)
    pq.write_table(
        table.set_column(
            table.schema.get_field_index("_offset"),
            "_offset",
            pa.array(range(10, 10 + table.num_rows), pa.int64()),
        ),
        target,
    )
    glob = f"{lake.dataset_root(REQUESTS)}/**/*.parquet"
    con = duckdb.connect()
    got = con.execute(
        f"select count(*), count(http_version) from read_parquet('{glob}', "
        "hive_partitioning=true, union_by_name=true)"
    ).fetchone()
    assert got == (10 + table.num_rows, table.num_rows)
    unified = pads.dataset(
        lake.dataset_root(REQUESTS),
        format="parquet",
        partitioning="hive",
        schema=pa.unify_schemas([REQUESTS.schema, table.schema]),
    ).to_table()
    assert unified.num_rows == 10 + table.num_rows
    # Polars takes the first file's schema unless told: give it the unified one.
    files_schema = pl.from_arrow(pa.unify_schemas([REQUESTS.schema, table.schema]).empty_table())
    frame = pl.scan_parquet(
        glob, hive_partitioning=True, schema=files_schema.schema, missing_columns="insert"
    ).collect()
    assert frame.height == 10 + table.num_rows
    assert frame["http_version"].null_count() == 10


def test_records_failing_their_contract_beyond_the_grouping_fields_are_not_landed() -> None:
    # Bronze reads event time and site first and validates the whole record when the segment
    # is built: a status of 42 or a non-UTC-only field still keeps the record out.
    buf = buffer()
    bad_status = request(0).replace(b'"status":503', b'"status":42')
    assert b'"status":42' in bad_status
    bad_site_only = request(1, site="zzz9").replace(b'"team":"payments"', b'"team":"../x"')
    buf.add(0, 0, bad_status)
    buf.add(1, 0, request(2))
    buf.add(2, 0, bad_site_only)  # the only record of its site: no file for that directory
    segment = buf.take()
    assert segment is not None
    assert (segment.rows, segment.invalid) == (1, 2)
    assert [f.directory for f in segment.files] == ["date=2026-03-02/site_id=bog1"]
    assert json.loads(segment.files[0].table.schema.metadata[SEGMENT_META])["files"] == 1
    assert segment.files[0].table.column("_offset").to_pylist() == [1]
