"""fct_roi_site on a one-minute pilot with round numbers, computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import msgspec
import pytest

from pipeline.contracts.topics import ENERGY_MINUTES, REQUEST_LOG
from pipeline.embedded.landing import EmbeddedLander
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build
from tests.support.factories import energy_minute, request_log

replace = msgspec.structs.replace
T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in Bogotá, March (44,640 minutes)


def test_roi_of_a_one_minute_pilot(tmp_path: Path) -> None:
    demo = load_fleet()
    bog = next(s for s in demo.sites if s.site_id == "bog1")
    bog = replace(
        bog,
        capex_usd=12_000.0,
        lifetime_years=1.0,  # 1,000 USD a month
        opex_usd_per_month=replace(
            bog.opex_usd_per_month, staff_usd=1_000.0, network_usd=0.0, colocation_usd=0.0
        ),
        tariff=[replace(bog.tariff[0], start="00:00", usd_per_kwh=0.10)],
        baseline=replace(
            bog.baseline,
            rtt_ms=50.0,
            pue=1.2,
            grid_gco2e_per_kwh=400.0,
            egress_usd_per_gb=0.10,
            usd_per_core_hour=0.05,
        ),
    )
    fleet = replace(
        demo,
        sites=[bog, *(s for s in demo.sites if s.site_id != "bog1")],
        nodes=[replace(n, capex_usd=0.0) for n in demo.nodes],
        carbon_price_usd_per_tonne=0.0,
        idle_policy="separate",
    )
    lake = Lake(tmp_path / "lake")
    lander = EmbeddedLander(lake)
    # checkout-api (18 ms of CPU per request in the demo fleet): 1,000 requests, 2 GB out
    lander.add_output(
        ENERGY_MINUTES,
        energy_minute(
            T,
            "bog1-r1-n01",
            "checkout-api",
            "payments",
            requests=1000,
            bytes_out=2_000_000_000,
            it_energy_wh=600.0,
            facility_energy_wh=900.0,
            operational_gco2e=300.0,
            embodied_gco2e=60.0,
        ),
        0,
    )
    lander.add_output(
        ENERGY_MINUTES,
        energy_minute(
            T, "bog1-r1-n01", "__idle__", "__idle__", it_energy_wh=80.0, facility_energy_wh=100.0
        ),
        0,
    )
    for i, latency in enumerate([10.0, 20.0, 30.0, 40.0]):
        value = request_log(
            T.replace(second=i),
            f"r{i}",
            "bog1-r1-n01",
            "checkout-api",
            "payments",
            latency_ms=latency,
        )
        lander.add(REQUEST_LOG, b"bog1-r1-n01", value, 0)
    lander.close()
    build(lake, fleet, tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    row = con.execute("select * from fct_roi_site where site_id = 'bog1'").fetchone()
    assert row is not None
    got = dict(zip([d[0] for d in con.description], row, strict=True))

    per_month = 30.4375 * 1440  # one pilot minute -> a month: 43,830x
    energy_usd = (0.9 + 0.1) * 0.10  # all facility kWh (idle too) from the grid x 0.10
    capex_usd = opex_usd = 1000 * 1 / 44_640  # one minute of March's 44,640
    assert got["pilot_days"] == pytest.approx(1 / 1440)
    assert got["microdc_usd_per_month"] == pytest.approx(
        (energy_usd + capex_usd + opex_usd) * per_month
    )
    assert got["operating_usd_per_month"] == pytest.approx((energy_usd + opex_usd) * per_month)
    core_hours = 1000 * 18 / 3_600_000  # 0.005 core-hours
    cloud = (core_hours * 0.05 + 2 * 0.10) * per_month  # 0.20025 USD a minute
    assert got["cloud_usd_per_month"] == pytest.approx(cloud)
    savings = cloud - (energy_usd + opex_usd) * per_month
    assert got["monthly_savings_usd"] == pytest.approx(savings)
    assert got["investment_usd"] == 12_000.0
    assert got["cloud_usd_12m"] == pytest.approx(12 * cloud)
    assert got["microdc_usd_6m"] == pytest.approx(6 * got["microdc_usd_per_month"])
    assert got["payback_months"] == pytest.approx(12_000 / savings)
    assert got["roi_12m_pct"] == pytest.approx((12 * savings - 12_000) / 12_000 * 100)
    # quantile_cont(10, 20, 30, 40; 0.95) = 38.5; plus the 50 ms round trip
    assert got["latency_p95_ms"] == pytest.approx(38.5)
    assert got["baseline_latency_p95_ms"] == pytest.approx(88.5)
    assert got["facility_wh_per_request"] == pytest.approx(1000 / 1000)  # (900 + 100) Wh
    # attributed IT 600 Wh x PUE 1.2 + 2 GB x 0.001 kWh/GB = 720 + 2 Wh, per request
    assert got["baseline_wh_per_request"] == pytest.approx(722 / 1000)
    assert got["gco2e_per_request"] == pytest.approx(360 / 1000)
    assert got["baseline_gco2e_per_request"] == pytest.approx(0.722 / 1000 * 400)
    # like-for-like: bog1's 20 x 64 + 4 x 48 cores rented around the clock, plus the egress
    assert got["provisioned_cores"] == 20 * 64 + 4 * 48
    capacity = 1472 * 0.05 * 730.5 + 2 * 0.10 * per_month
    assert got["cloud_capacity_usd_per_month"] == pytest.approx(capacity)
    capacity_savings = capacity - (energy_usd + opex_usd) * per_month
    assert got["capacity_monthly_savings_usd"] == pytest.approx(capacity_savings)
    assert got["capacity_payback_months"] == pytest.approx(12_000 / capacity_savings)
    assert got["capacity_roi_12m_pct"] == pytest.approx(
        (12 * capacity_savings - 12_000) / 12_000 * 100
    )
