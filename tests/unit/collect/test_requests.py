"""Access logs followed by the collector: records handed on, positions committed only once the
output took them, a refused batch read again, a restart resuming, client IPs never raw."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from pipeline.collect.config import parse_collectors
from pipeline.collect.requests import RequestFollower, RequestPrivacy
from pipeline.contracts.records import CollectedRequestLog
from pipeline.fleet import Fleet, load_fleet
from pipeline.lake.privacy import IpPolicy
from tests.support.outputs import RecordingOutput

SECRET = b"lake-secret"


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet()


def config_text(log: Path, fmt: str = "nginx_json") -> str:
    return f"""
requests:
  - kind: access_log
    path: {log}
    format: {fmt}
request_mapping:
  nodes:
    - {{match: "10.20.0.11:*", node_id: bog1-r1-n01}}
    - {{match: "10.20.0.12:*", node_id: bog1-r1-n02}}
  services:
    - {{service: checkout-api, host: "shop.*", route_prefix: /checkout}}
    - {{service: catalog-search, host: "shop.*"}}
"""


def nginx_line(n: int, *, upstream: str = "10.20.0.11:8080", uri: str = "/checkout") -> str:
    return json.dumps(
        {
            "msec": f"{1772452800 + n}.250",
            "request_id": f"req-{n:04d}",
            "status": "200",
            "request_time": "0.042",
            "upstream_addr": upstream,
            "bytes_sent": "1000",
            "request_length": "300",
            "uri": uri,
            "host": "shop.example.co",
            "remote_addr": f"203.0.113.{n % 250}",
        }
    )


def append(log: Path, *lines: str) -> None:
    with log.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def follower(tmp_path: Path, fleet: Fleet, secret: bytes | None = SECRET) -> RequestFollower:
    config = parse_collectors(config_text(tmp_path / "access.log"), fleet)
    privacy = RequestPrivacy(IpPolicy(secret))
    return RequestFollower(config, fleet, tmp_path / "state", privacy=privacy, max_lines=3)


def drain(f: RequestFollower, sink: RecordingOutput) -> None:
    async def go() -> None:
        while await f.step(sink):
            pass

    asyncio.run(go())


def test_lines_become_records_with_the_ip_hashed_as_the_lake_does(
    tmp_path: Path, fleet: Fleet
) -> None:
    log = tmp_path / "access.log"
    append(log, nginx_line(1), nginx_line(2, upstream="10.20.0.12:8080", uri="/search"))
    sink = RecordingOutput()
    drain(follower(tmp_path, fleet), sink)
    first, second = [r for result in sink.results for r in result.requests]
    assert isinstance(first, CollectedRequestLog)
    assert first.finished_at == datetime(2026, 3, 2, 12, 0, 1, 250000, tzinfo=UTC)
    assert (first.node_id, first.service, first.team, first.site_id) == (
        "bog1-r1-n01",
        "checkout-api",
        "payments",
        "bog1",
    )
    assert first.latency_ms == pytest.approx(42.0)
    assert (second.node_id, second.service) == ("bog1-r1-n02", "catalog-search")
    assert first.client_ip is None
    assert first.client_ip_hmac == IpPolicy(SECRET)("203.0.113.1")
    wire = msgspec.json.encode(first)
    assert b"203.0.113" not in wire and b"client_ip_hmac" in wire


def test_without_a_secret_the_ip_is_dropped(tmp_path: Path, fleet: Fleet) -> None:
    append(tmp_path / "access.log", nginx_line(1))
    sink = RecordingOutput()
    drain(follower(tmp_path, fleet, secret=None), sink)
    (record,) = sink.results[0].requests
    assert record.client_ip is None and record.client_ip_hmac is None


def test_an_unmapped_or_broken_line_is_a_dead_letter_without_the_raw_ip(
    tmp_path: Path, fleet: Fleet
) -> None:
    log = tmp_path / "access.log"
    append(
        log,
        nginx_line(1, upstream="10.99.0.1:80"),
        '{"msec": "17724528',  # a torn write that still ends in a newline
        nginx_line(2),
    )
    sink = RecordingOutput()
    drain(follower(tmp_path, fleet, secret=None), sink)
    assert sink.ids == ["req-0002"]
    dead = [d for result in sink.results for d in result.dead_letters]
    assert len(dead) == 2
    assert "no node rule matches upstream '10.99.0.1:80'" in dead[0].error_detail
    assert b"203.0.113.1" not in dead[0].value and b"ip-redacted" in dead[0].value
    assert dead[0].source_topic == "collect"
    assert "JSON" in dead[1].error_detail or "json" in dead[1].error_detail


def test_positions_are_committed_only_when_the_output_took_the_batch(
    tmp_path: Path, fleet: Fleet
) -> None:
    log = tmp_path / "access.log"
    append(log, *(nginx_line(n) for n in range(1, 6)))
    sink = RecordingOutput()
    f = follower(tmp_path, fleet)
    sink.full = True
    drain(f, sink)  # refused: nothing committed, nothing lost
    assert sink.ids == []
    sink.full = False
    drain(f, sink)
    assert sink.ids == [f"req-{n:04d}" for n in range(1, 6)]
    # a restart resumes after the last committed line: no repeat, no loss
    f.close()
    append(log, nginx_line(6))
    again = follower(tmp_path, fleet)
    drain(again, sink)
    assert sink.ids == [f"req-{n:04d}" for n in range(1, 7)]


def test_a_refusal_in_the_middle_rewinds_to_the_last_commit(tmp_path: Path, fleet: Fleet) -> None:
    log = tmp_path / "access.log"
    append(log, *(nginx_line(n) for n in range(1, 8)))
    sink = RecordingOutput()
    f = follower(tmp_path, fleet)  # 3 lines per step

    async def go() -> None:
        assert await f.step(sink) == 3
        sink.full = True
        assert await f.step(sink) == 0
        sink.full = False
        while await f.step(sink):
            pass

    asyncio.run(go())
    assert sink.ids == [f"req-{n:04d}" for n in range(1, 8)]


def test_a_missing_log_waits_for_its_writer(tmp_path: Path, fleet: Fleet) -> None:
    sink = RecordingOutput()
    f = follower(tmp_path, fleet)
    drain(f, sink)
    assert sink.results == []
    append(tmp_path / "access.log", nginx_line(1))
    drain(f, sink)
    assert sink.ids == ["req-0001"]


def test_per_log_metrics(tmp_path: Path, fleet: Fleet) -> None:
    from pipeline.collect.service import CollectorMetrics

    log = tmp_path / "access.log"
    append(log, nginx_line(1), nginx_line(2, upstream="10.99.0.1:80"))
    config = parse_collectors(config_text(log), fleet)
    metrics = CollectorMetrics()
    now = [1_772_452_900_000]
    f = RequestFollower(
        config, fleet, tmp_path / "state", metrics=metrics, clock_ms=lambda: now[0],
        privacy=RequestPrivacy(IpPolicy(None)),
    )  # fmt: skip
    sink = RecordingOutput()
    drain(f, sink)
    labels = {"source": f"access_log {log}"}
    value = metrics.registry.get_sample_value
    assert value("microdc_collect_requests_total", labels) == 1
    assert value("microdc_collect_dead_letters_total", labels) == 1
    assert value("microdc_collect_last_success_timestamp_seconds", labels) == now[0] / 1000
    now[0] += 30_000
    drain(f, sink)
    assert value("microdc_collect_staleness_seconds", labels) == 0
