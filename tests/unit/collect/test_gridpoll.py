"""The grid poller: each source on its own interval, a value sent once unless revised, a refused
batch sent again, failures backed off, garbage and skipped values as dead letters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.collect import grid
from pipeline.collect.config import CollectorConfig, GridSource, parse_collectors
from pipeline.collect.grid_http import GridHttpError
from pipeline.collect.gridpoll import GridPoller, csv_records
from pipeline.collect.service import MAX_BACKOFF_S
from pipeline.contracts.records import GridIntensity
from pipeline.errors import PipelineError
from pipeline.fleet import load_fleet
from tests.support.outputs import RecordingOutput

FIXTURES = Path(__file__).parents[2] / "fixtures" / "grid"
HOUR = datetime(2026, 3, 2, 12, tzinfo=UTC)


def value(g: float, *, hour: int = 0, estimated: bool = True) -> GridIntensity:
    start = HOUR + timedelta(hours=hour)
    return GridIntensity(
        valid_from=start,
        valid_to=start + timedelta(hours=1),
        zone="CO",
        carbon_intensity_gco2e_per_kwh=g,
        emission_factor_type="lifecycle",
        signal="average",
        source="electricitymaps",
        is_estimated=estimated,
    )


class FakeClient:
    """Answers `latest()` from a script: a Parsed, or an exception to raise."""

    def __init__(self, source: GridSource) -> None:
        self.label = f"{source.kind} {source.zone}"
        self.script: list[grid.Parsed | Exception] = []
        self.calls = 0

    async def latest(self) -> grid.Parsed:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self) -> None:
        pass


def poller() -> tuple[GridPoller, FakeClient, list[int]]:
    config: CollectorConfig = parse_collectors(
        "grid:\n  - {kind: electricity_maps, zone: CO, poll_interval_s: 600}\n", load_fleet()
    )
    clients: list[FakeClient] = []

    def make(source: GridSource) -> FakeClient:
        clients.append(FakeClient(source))
        return clients[-1]

    now = [0]
    p = GridPoller(config, clock_ms=lambda: now[0], make_client=make)  # type: ignore[arg-type]
    return p, clients[0], now


def test_a_value_is_sent_once_and_again_when_revised() -> None:
    p, client, now = poller()
    sink = RecordingOutput()
    client.script = [
        ([value(160.0)], []),
        ([value(160.0)], []),  # the same hour, the same value: nothing new
        ([value(151.0, estimated=False), value(170.0, hour=1)], []),  # measured, and a new hour
    ]

    async def go() -> None:
        await p.step(sink)
        now[0] += 300_000
        await p.step(sink)  # not due yet (600 s): no call
        assert client.calls == 1
        now[0] += 300_000
        await p.step(sink)
        now[0] += 600_000
        await p.step(sink)

    asyncio.run(go())
    sent = [[r.carbon_intensity_gco2e_per_kwh for r in result.grid] for result in sink.results]
    assert sent == [[160.0], [151.0, 170.0]]
    assert client.calls == 3


def test_a_refused_batch_is_sent_on_the_next_poll() -> None:
    p, client, now = poller()
    sink = RecordingOutput()
    client.script = [([value(160.0)], []), ([value(160.0)], [])]
    sink.full = True

    async def go() -> None:
        await p.step(sink)
        sink.full = False
        now[0] += 600_000
        await p.step(sink)

    asyncio.run(go())
    assert [[r.carbon_intensity_gco2e_per_kwh for r in x.grid] for x in sink.results] == [[160.0]]


def test_failures_back_off_and_garbage_is_a_dead_letter() -> None:
    p, client, now = poller()
    sink = RecordingOutput()
    client.script = [
        GridHttpError("electricity_maps CO: 503 Service Unavailable"),
        grid.GridError("electricitymaps", "no `data` list"),
        ([value(160.0)], [grid.Skipped("data[1]", "carbonIntensity is null")]),
    ]

    async def go() -> None:
        await p.step(sink)  # down: retried after the poll interval, at most MAX_BACKOFF_S
        now[0] += MAX_BACKOFF_S * 1000 - 1_000
        await p.step(sink)
        assert client.calls == 1
        now[0] += 1_000
        await p.step(sink)  # garbage: a dead letter, backoff again
        assert client.calls == 2
        now[0] += MAX_BACKOFF_S * 1000
        await p.step(sink)

    asyncio.run(go())
    dead = [d for result in sink.results for d in result.dead_letters]
    assert [d.error_detail for d in dead] == [
        "grid electricitymaps: no `data` list",
        "carbonIntensity is null",
    ]
    assert dead[1].value == b"data[1]"
    assert [r.carbon_intensity_gco2e_per_kwh for x in sink.results for r in x.grid] == [160.0]


def test_a_portal_csv_is_loaded_for_the_fleet_zone() -> None:
    csv = FIXTURES / "electricitymaps_portal.csv"
    lifecycle = csv_records(csv, "CO", "lifecycle", at_ms=0)
    direct = csv_records(csv, "CO", "direct", at_ms=0)
    assert {r.zone for r in lifecycle.grid + direct.grid} == {"CO"}
    first = datetime(2025, 1, 1, tzinfo=UTC)
    by_hour = {r.valid_from: r for r in lifecycle.grid}
    assert by_hour[first].carbon_intensity_gco2e_per_kwh == 171.4
    assert by_hour[first].emission_factor_type == "lifecycle"
    assert {r.valid_from: r for r in direct.grid}[first].carbon_intensity_gco2e_per_kwh == 98.12
    # the empty and the negative direct value of 02:00 and 03:00: dead letters with the reason
    assert len(direct.dead_letters) >= 2
    assert all(d.error_detail for d in direct.dead_letters)


def test_a_csv_that_is_not_there_or_not_a_portal_csv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"nope.csv: cannot read"):
        csv_records(tmp_path / "nope.csv", "CO", "lifecycle", at_ms=0)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(PipelineError, match=r"bad.csv: .*Datetime \(UTC\)"):
        csv_records(bad, "CO", "lifecycle", at_ms=0)
