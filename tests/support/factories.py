"""Output records for hand-made lakes: every field at a neutral default, overridden by name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from pipeline.contracts.outputs import EnergyMinute, SiteMinute, SloBurn
from pipeline.contracts.records import RequestLog


def energy_minute(at: datetime, node: str, service: str, team: str, **kw: Any) -> EnergyMinute:
    values: dict[str, Any] = {
        "key": f"{at:%Y-%m-%dT%H:%MZ}|{node}|{service}",
        "window_start": at,
        "site_id": node[:4],
        "node_id": node,
        "service": service,
        "team": team,
        "requests": 0,
        "errors_5xx": 0,
        "slow": 0,
        "busy_ms": 0.0,
        "bytes_in": 0,
        "bytes_out": 0,
        "it_energy_wh": 0.0,
        "facility_energy_wh": 0.0,
        "pue": 1.5,
        "pue_source": "metered",
        "coverage": 1.0,
        "grid_intensity_gco2e_per_kwh": 200.0,
        "intensity_source": "grid",
        "renewable_share": 0.0,
        "operational_gco2e": 0.0,
        "embodied_gco2e": 0.0,
        "it_wh_per_request": None,
        "facility_wh_per_request": None,
        "sci_gco2e_per_request": None,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "latency_p99_ms": None,
    }
    values.update(kw)
    return EnergyMinute(**values)


def site_minute(at: datetime, site: str, **kw: Any) -> SiteMinute:
    values: dict[str, Any] = {
        "key": f"{at:%Y-%m-%dT%H:%MZ}|{site}",
        "window_start": at,
        "site_id": site,
        "facility_energy_wh": None,
        "it_energy_wh": None,
        "node_it_energy_wh": 0.0,
        "pue": 1.0,
        "pue_source": "metered",
        "renewable_energy_wh": 0.0,
        "renewable_share": 0.0,
        "water_l": None,
        "wue_l_per_kwh": None,
        "cue_kg_per_kwh": None,
        "grid_intensity_gco2e_per_kwh": 200.0,
        "intensity_source": "grid",
        "operational_gco2e": 0.0,
        "embodied_gco2e": 0.0,
        "requests": 0,
        "nodes_reporting": 1,
        "coverage": 1.0,
        "outdoor_temp_c": None,
    }
    values.update(kw)
    return SiteMinute(**values)


def slo_burn(at: datetime, service: str, site: str, **kw: Any) -> SloBurn:
    values: dict[str, Any] = {
        "key": f"{at:%Y-%m-%dT%H:%MZ}|{service}|{site}",
        "window_start": at,
        "service": service,
        "site_id": site,
        "requests": 0,
        "bad_availability": 0,
        "bad_latency": 0,
        "availability_burn": {},
        "latency_burn": {},
        "availability_budget_remaining": 1.0,
        "latency_budget_remaining": 1.0,
    }
    values.update(kw)
    return SloBurn(**values)


def request_log(
    at: datetime, request_id: str, node: str, service: str, team: str, **kw: Any
) -> bytes:
    """A valid request log, JSON-encoded as it sits in the topic."""
    values: dict[str, Any] = {
        "finished_at": at,
        "request_id": request_id,
        "site_id": node[:4],
        "node_id": node,
        "service": service,
        "team": team,
        "status": 200,
        "latency_ms": 10.0,
        "bytes_in": 1,
        "bytes_out": 1,
    }
    values.update(kw)
    return msgspec.json.encode(RequestLog(**values))


def simulated_warehouse(root: Path, minutes: int, *, rps_scale: float = 0.01) -> Path:
    """The demo fleet simulated from 2026-03-02 00:00 UTC, landed in `root/lake` and built into
    `root/warehouse.duckdb` (the embedded path of `microdc demo`)."""
    from pipeline.embedded.landing import simulate_and_land
    from pipeline.fleet import load_fleet
    from pipeline.lake import Lake
    from pipeline.models.build import build
    from pipeline.simulate import SimConfig

    fleet = load_fleet()
    config = SimConfig(start=datetime(2026, 3, 2, tzinfo=UTC), minutes=minutes, rps_scale=rps_scale)
    lake = Lake(root / "lake")
    simulate_and_land(fleet, config, lake)
    db = root / "warehouse.duckdb"
    build(lake, fleet, db)
    return db
