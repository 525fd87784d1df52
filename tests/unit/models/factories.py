"""Output records for hand-made lakes: every field at a neutral default, overridden by name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.contracts.outputs import EnergyMinute, SiteMinute


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
