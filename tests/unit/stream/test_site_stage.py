"""Stage 2: hand-computed PUE, carbon and SCI; a minute closes only when every source passed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pipeline.contracts import FacilitySample, GridIntensity
from pipeline.contracts.outputs import (
    AlertEvent,
    EnergyMinute,
    NodeMinute,
    PartitionMark,
    SiteMinute,
    SloBurn,
)
from pipeline.fleet import load_fleet
from pipeline.metrics.carbon import embodied_g_per_minute
from pipeline.stream.site_stage import SiteStage

T12 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FLEET = load_fleet()


def facility(at: datetime, facility_w: float, it_w: float, renewable_w: float) -> FacilitySample:
    return FacilitySample(
        observed_at=at,
        site_id="bog1",
        interval_s=60.0,
        facility_power_w=facility_w,
        it_power_w=it_w,
        onsite_renewable_w=renewable_w,
        water_l=None,
        outdoor_temp_c=15.0,
    )


def grid(zone: str, value: float, start: datetime = T12) -> GridIntensity:
    """The hourly value of `zone` that begins at `start`."""
    return GridIntensity(
        valid_from=start,
        valid_to=start + timedelta(hours=1),
        zone=zone,
        carbon_intensity_gco2e_per_kwh=value,
        emission_factor_type="lifecycle",
        signal="average",
        source="test",
        is_estimated=False,
    )


def row(it_wh: float, requests: int, embodied_g: float) -> NodeMinute:
    return NodeMinute(
        key="2026-03-02T12:00:00Z|bog1-r1-n01|checkout-api",
        window_start=T12,
        site_id="bog1",
        rack_id="bog1-r1",
        node_id="bog1-r1-n01",
        service="checkout-api",
        team="payments",
        requests=requests,
        errors_5xx=1,
        slow=0,
        busy_ms=100.0,
        bytes_in=0,
        bytes_out=0,
        it_energy_wh=it_wh,
        node_energy_wh=it_wh,
        coverage=1.0,
        embodied_gco2e=embodied_g,
        max_inlet_c=28.5,
        latency=None,
        partition=0,
    )


def marks(before: datetime) -> list[PartitionMark]:
    return [PartitionMark(partition=p, partitions=4, closed_before=before) for p in range(4)]


def test_hand_computed_minute_and_close_conditions() -> None:
    stage = SiteStage(FLEET)
    stage.on_stage_one([row(10.0, 4, 0.5)])
    # facility (12:00, 12:01]: 6000 W, IT 4000 W, solar 1500 W -> 100 Wh, 66.67 Wh, 25 Wh
    stage.on_facility(facility(T12 + timedelta(minutes=1), 6000.0, 4000.0, 1500.0))
    stage.on_grid(grid("CO", 200.0))
    stage.on_grid(grid("MX", 500.0))
    stage.on_grid(grid("BR", 100.0))
    stage.on_stage_one(marks(T12 + timedelta(minutes=1)))
    # SLO burn, alerts and thermal need stage 1 only: they are out at once; energy and site
    # minutes wait, for the facility watermark has not passed 12:01 yet
    early = stage.drain()
    assert {type(o) for o in early} == {SloBurn, AlertEvent}
    # a later meter reading (interval start 12:03) moves the facility watermark to 12:01
    stage.on_facility(facility(T12 + timedelta(minutes=4), 6000.0, 4000.0, 1500.0))
    out = stage.drain()
    assert {type(o) for o in out} == {EnergyMinute, SiteMinute}
    site = next(o for o in out if isinstance(o, SiteMinute) and o.site_id == "bog1")
    assert site.pue == pytest.approx(1.5) and site.pue_source == "metered"
    assert site.facility_energy_wh == pytest.approx(100.0)
    assert site.renewable_share == pytest.approx(0.25)
    assert (site.grid_intensity_gco2e_per_kwh, site.intensity_source) == (200.0, "grid")
    energy = next(o for o in out if isinstance(o, EnergyMinute))
    # facility Wh = 10 * 1.5; mix = 0.75 * 200 + 0.25 * 41 (solar) = 160.25 g/kWh
    assert energy.facility_energy_wh == pytest.approx(15.0)
    assert energy.operational_gco2e == pytest.approx(0.015 * 160.25)
    assert energy.sci_gco2e_per_request == pytest.approx((0.015 * 160.25 + 0.5) / 4)
    assert energy.facility_wh_per_request == pytest.approx(3.75)
    assert energy.it_wh_per_request == pytest.approx(2.5)
    burn = next(
        o
        for o in early
        if isinstance(o, SloBurn) and o.service == "checkout-api" and o.site_id == "bog1"
    )
    # 1 of 4 failed against a 99.9 % target: burn = 0.25 / 0.001 = 250 in every window
    assert burn.availability_burn["5m"] == pytest.approx(250.0)
    assert burn.availability_burn["3d"] == pytest.approx(250.0)
    thermal = [o for o in early if isinstance(o, AlertEvent) and o.kind == "thermal"]
    assert [(a.severity, a.state, a.node_id) for a in thermal] == [
        ("ticket", "firing", "bog1-r1-n01")
    ]  # 28.5 °C inlet is above ASHRAE's 27 °C


def test_without_meters_design_pue_and_without_grid_the_static_fallback() -> None:
    stage = SiteStage(FLEET)
    stage.on_stage_one([row(10.0, 2, 0.0)])
    stage.on_stage_one(marks(T12 + timedelta(minutes=1)))
    waiting = stage.drain()  # energy and site minutes wait for meters and grid ...
    assert waiting and not any(isinstance(o, (EnergyMinute, SiteMinute)) for o in waiting)
    stage.on_stage_one(marks(T12 + timedelta(hours=2, minutes=2)))  # ... for 30 min and 2 h
    site = next(o for o in stage.drain() if isinstance(o, SiteMinute) and o.site_id == "bog1")
    assert (site.pue, site.pue_source) == (1.42, "design")
    assert (site.grid_intensity_gco2e_per_kwh, site.intensity_source) == (260.0, "fallback")


def test_stage_one_re_emissions_after_close_are_ignored() -> None:
    stage = SiteStage(FLEET)
    for zone in ("CO", "MX", "BR"):
        stage.on_grid(grid(zone, 100.0))
    stage.on_stage_one([row(10.0, 2, 0.0)])
    stage.on_facility(facility(T12 + timedelta(minutes=1), 600.0, 400.0, 0.0))
    stage.on_facility(facility(T12 + timedelta(minutes=4), 600.0, 400.0, 0.0))
    stage.on_stage_one(marks(T12 + timedelta(minutes=1)))
    first = [o for o in stage.drain() if isinstance(o, EnergyMinute) and o.requests]
    stage.on_stage_one([row(10.0, 2, 0.0)])  # a failover re-emits the closed minute
    assert len(first) == 1
    assert [o for o in stage.drain() if isinstance(o, EnergyMinute)] == []


def test_snapshot_round_trip_keeps_trackers() -> None:
    stage = SiteStage(FLEET)
    stage.on_stage_one([row(10.0, 4, 0.5)])
    restored = SiteStage.restore(FLEET, stage.snapshot())
    assert restored.snapshot() == stage.snapshot()


def test_a_row_re_emitted_before_the_minute_closes_counts_once() -> None:
    stage = SiteStage(FLEET)
    for zone in ("CO", "MX", "BR"):
        stage.on_grid(grid(zone, 100.0))
    stage.on_stage_one([row(10.0, 2, 0.0)])
    stage.on_stage_one([row(10.0, 2, 0.0)])  # stage-1 failover before the close
    stage.on_facility(facility(T12 + timedelta(minutes=1), 600.0, 400.0, 0.0))
    stage.on_facility(facility(T12 + timedelta(minutes=4), 600.0, 400.0, 0.0))
    stage.on_stage_one(marks(T12 + timedelta(minutes=1)))
    out = stage.drain()
    assert len([o for o in out if isinstance(o, EnergyMinute) and o.requests]) == 1
    site = next(o for o in out if isinstance(o, SiteMinute) and o.site_id == "bog1")
    assert site.requests == 2 and site.node_it_energy_wh == pytest.approx(10.0)


def test_a_minute_closes_once_a_grid_value_valid_for_it_is_known() -> None:
    """The hourly value that began at 12:00 is valid for 12:05: the minute does not wait for
    the 13:00 value (issue 12: site minutes had waited for the next hourly value)."""
    t = T12 + timedelta(minutes=5)
    stage = SiteStage(FLEET)
    stage.on_stage_one([msgspec.structs.replace(row(10.0, 2, 0.0), window_start=t, key=f"{t}|n")])
    for zone, value in (("CO", 200.0), ("MX", 500.0)):
        stage.on_grid(grid(zone, value, T12))
    stage.on_facility(facility(t + timedelta(minutes=1), 600.0, 400.0, 0.0))
    stage.on_facility(facility(t + timedelta(minutes=4), 600.0, 400.0, 0.0))
    stage.on_stage_one(marks(t + timedelta(minutes=1)))
    assert not [o for o in stage.drain() if isinstance(o, SiteMinute)]  # BR has no value yet
    stage.on_grid(grid("BR", 100.0, T12 - timedelta(hours=1)))  # 11:00-12:00: not for 12:05
    assert not [o for o in stage.drain() if isinstance(o, SiteMinute)]
    stage.on_grid(grid("BR", 100.0, T12))
    sites = [o for o in stage.drain() if isinstance(o, SiteMinute)]
    assert [(o.window_start, o.intensity_source) for o in sites if o.site_id == "bog1"] == [
        (t, "grid")
    ]
    assert {o.site_id for o in sites} == {"bog1", "mex1", "sao1"}


def test_a_marginal_rate_is_not_the_sci_intensity() -> None:
    """WattTime's co2_moer (marginal) lands in the lake, but the location-based SCI takes the
    average mix: a marginal value neither closes a minute nor sets its intensity."""
    t = T12 + timedelta(minutes=5)
    stage = SiteStage(FLEET)
    stage.on_stage_one([msgspec.structs.replace(row(10.0, 2, 0.0), window_start=t, key=f"{t}|n")])
    stage.on_facility(facility(t + timedelta(minutes=1), 600.0, 400.0, 0.0))
    stage.on_facility(facility(t + timedelta(minutes=4), 600.0, 400.0, 0.0))
    stage.on_stage_one(marks(t + timedelta(minutes=1)))
    for zone in ("MX", "BR"):
        stage.on_grid(grid(zone, 300.0))
    marginal = msgspec.structs.replace(grid("CO", 650.0), signal="marginal", source="watttime")
    stage.on_grid(marginal)
    assert not [o for o in stage.drain() if isinstance(o, SiteMinute)]  # CO has no average
    stage.on_grid(grid("CO", 200.0))
    (bog,) = [o for o in stage.drain() if isinstance(o, SiteMinute) and o.site_id == "bog1"]
    assert (bog.grid_intensity_gco2e_per_kwh, bog.intensity_source) == (200.0, "grid")


def test_slo_burn_and_alerts_do_not_wait_for_a_silent_grid_or_meter() -> None:
    """No grid value and no meter reading at all: every SLO burn row and page alert of a
    minute is out as soon as stage 1 closed it, while its energy rows wait."""
    bad = msgspec.structs.replace(row(1.0, 100, 0.0), errors_5xx=100)  # an outage: all 5xx
    stage = SiteStage(FLEET)
    stage.on_stage_one([bad])
    stage.on_stage_one(marks(T12 + timedelta(minutes=1)))
    out = stage.drain()
    pages = [o for o in out if isinstance(o, AlertEvent) and o.severity == "page"]
    assert pages and all(p.state == "firing" for p in pages)
    burn = [o for o in out if isinstance(o, SloBurn) and o.service == "checkout-api"]
    assert {b.site_id for b in burn} >= {"bog1"} and not any(
        isinstance(o, (EnergyMinute, SiteMinute)) for o in out
    )
    # later, the same minute's energy rows close; its SLO rows are not emitted twice
    stage.on_stage_one(marks(T12 + timedelta(hours=2, minutes=2)))
    later = stage.drain()
    assert any(isinstance(o, EnergyMinute) for o in later)
    assert not any(isinstance(o, SloBurn) for o in later)


def test_silent_nodes_get_an_idle_row_with_embodied_carbon_from_stage_two() -> None:
    """Stage 1 reports the nodes whose records it saw (whatever partition the producer chose);
    stage 2 adds, for every other fleet node, the idle row: no energy, its embodied carbon."""
    stage = SiteStage(FLEET)
    for zone in ("CO", "MX", "BR"):
        stage.on_grid(grid(zone, 100.0))
    stage.on_stage_one([row(10.0, 2, 0.5)])
    stage.on_stage_one(marks(T12 + timedelta(hours=2, minutes=2)))  # no meters: design PUE
    energy = [o for o in stage.drain() if isinstance(o, EnergyMinute) and o.window_start == T12]
    assert {o.node_id for o in energy} == {n.node_id for n in FLEET.nodes}
    silent = [o for o in energy if o.node_id != "bog1-r1-n01"]
    assert all(o.service == "__idle__" and o.it_energy_wh == 0.0 for o in silent)
    assert all(o.coverage == 0.0 and o.requests == 0 for o in silent)
    node = FLEET.node_by_id["bog1-r2-n05"]
    five = next(o for o in silent if o.node_id == node.node_id)
    assert five.embodied_gco2e == pytest.approx(
        embodied_g_per_minute(node.embodied_kgco2e, node.lifetime_years)
    )
    assert five.key == f"2026-03-02T12:00:00Z|{node.node_id}|__idle__"


def test_the_waits_for_silent_meters_and_grid_are_options() -> None:
    """No meter reading and no grid value: with the defaults (30 min, 2 h of event time) the
    12:00 energy rows still wait when stage 1 is at 12:03; with 60 s and 120 s they close then,
    on design PUE and the static fallback."""

    def closed_at_12_03(**waits: float) -> list[SiteMinute]:
        stage = SiteStage(FLEET, **waits)
        stage.on_stage_one([row(10.0, 2, 0.0)])
        stage.on_stage_one(marks(T12 + timedelta(minutes=3)))
        return [o for o in stage.drain() if isinstance(o, SiteMinute) and o.site_id == "bog1"]

    assert closed_at_12_03() == []
    assert closed_at_12_03(facility_wait_s=60.0) == []  # the grid still holds it
    (site,) = closed_at_12_03(facility_wait_s=60.0, grid_wait_s=120.0)
    assert (site.pue_source, site.intensity_source) == ("design", "fallback")
