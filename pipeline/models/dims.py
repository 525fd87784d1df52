"""Reference data from the fleet file as `dim_` tables (Arrow, loaded by `build`).

- `dim_site` (site): city, country, timezone, grid zone, design PUE, capex and lifetime,
  monthly opex and its parts, solar kW, the hyperscale baseline (region, RTT, PUE, grid
  intensity, egress and core-hour prices) and the zone's static fallback intensity;
- `dim_node` (node): site, rack, cores, idle and max W, capex, embodied kgCO2e, lifetime, GPU;
- `dim_team` (team): cost center, monthly energy budget kWh;
- `dim_service` (service x site): team, SLO targets and threshold, period, CPU ms per request;
- `dim_tariff` (site x tariff period): local start and end minute of the day, USD per kWh;
- `dim_fleet` (one row): carbon price, idle policy, on-site renewable intensity, currency.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.fleet.model import Fleet


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def dim_tables(fleet: Fleet) -> dict[str, pa.Table]:
    sites = fleet.sites
    tariff_rows = []
    for site in sites:
        periods = sorted(site.tariff, key=lambda p: _minutes(p.start))
        for i, period in enumerate(periods):
            end = _minutes(periods[i + 1].start) if i + 1 < len(periods) else 24 * 60
            tariff_rows.append(
                {
                    "site_id": site.site_id,
                    "start_minute": _minutes(period.start),
                    "end_minute": end,
                    "usd_per_kwh": period.usd_per_kwh,
                }
            )
    return {
        "dim_site": pa.Table.from_pylist(
            [
                {
                    "site_id": s.site_id,
                    "city": s.city,
                    "country": s.country,
                    "timezone": s.timezone,
                    "grid_zone": s.grid_zone,
                    "design_pue": s.design_pue,
                    "capex_usd": s.capex_usd,
                    "lifetime_years": float(s.lifetime_years),
                    "opex_usd_per_month": s.opex_usd_per_month.total_usd,
                    "opex_staff_usd": s.opex_usd_per_month.staff_usd,
                    "opex_network_usd": s.opex_usd_per_month.network_usd,
                    "opex_colocation_usd": s.opex_usd_per_month.colocation_usd,
                    "solar_peak_kw": s.solar_peak_kw,
                    "baseline_region": s.baseline.region,
                    "baseline_rtt_ms": s.baseline.rtt_ms,
                    "baseline_pue": s.baseline.pue,
                    "baseline_grid_gco2e_per_kwh": s.baseline.grid_gco2e_per_kwh,
                    "baseline_egress_usd_per_gb": s.baseline.egress_usd_per_gb,
                    "baseline_usd_per_core_hour": s.baseline.usd_per_core_hour,
                    "fallback_gco2e_per_kwh": fleet.grid_fallback_gco2e_per_kwh.get(s.grid_zone),
                }
                for s in sites
            ]
        ),
        "dim_node": pa.Table.from_pylist(
            [
                {
                    "node_id": n.node_id,
                    "site_id": n.site_id,
                    "rack_id": n.rack_id,
                    "cores": n.cores,
                    "idle_power_w": n.idle_power_w,
                    "max_power_w": n.max_power_w,
                    "capex_usd": n.capex_usd,
                    "embodied_kgco2e": n.embodied_kgco2e,
                    "lifetime_years": float(n.lifetime_years),
                    "has_gpu": n.has_gpu,
                }
                for n in fleet.nodes
            ]
        ),
        "dim_team": pa.Table.from_pylist(
            [
                {
                    "team": t.team,
                    "cost_center": t.cost_center,
                    "energy_budget_kwh_per_month": t.energy_budget_kwh_per_month,
                }
                for t in fleet.teams
            ]
        ),
        "dim_service": pa.Table.from_pylist(
            [
                {
                    "service": s.service,
                    "site_id": site_id,
                    "team": s.team,
                    "availability_target": s.slo.availability_target,
                    "latency_threshold_ms": s.slo.latency_threshold_ms,
                    "latency_target": s.slo.latency_target,
                    "slo_period_days": s.slo.period_days,
                    "cpu_ms_per_request": s.load.cpu_ms_per_request,
                }
                for s in fleet.services
                for site_id in s.sites
            ]
        ),
        "dim_tariff": pa.Table.from_pylist(tariff_rows),
        "dim_fleet": pa.Table.from_pylist(
            [
                {
                    "carbon_price_usd_per_tonne": fleet.carbon_price_usd_per_tonne,
                    "idle_policy": fleet.idle_policy,
                    "shared_policy": fleet.shared_policy,
                    "onsite_renewable_gco2e_per_kwh": fleet.onsite_renewable_gco2e_per_kwh,
                    "currency": fleet.currency,
                }
            ]
        ),
    }
