"""What the HTML report shows, read from a built DuckDB warehouse: pure queries, typed rows.

Only tables are read (marts and `dim_` tables), never the staging views: those read the Parquet
lake by path, and a report must build from a warehouse file copied away from its lake. Ratios
are re-derived from sums (DESIGN.md §5), never averaged. Times come back as naive UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import ConfigError

#: Every table the report reads; a warehouse without one of them gets a WarehouseError.
TABLES = (
    "dim_site",
    "dim_fleet",
    "dim_service",
    "fct_energy_per_request_hourly",
    "fct_site_efficiency_daily",
    "fct_slo_daily",
    "fct_chargeback_monthly",
    "fct_roi_site",
)
_HINT = "build it with `microdc models build` or `microdc demo`"


class WarehouseError(ConfigError):
    """The warehouse cannot feed the report; names the file, the table and how to fix it."""

    def __init__(self, db: Path, reason: str, table: str | None = None) -> None:
        self.db = db
        self.table = table
        self.reason = reason
        where = f"{db}: {table}" if table else str(db)
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Site:
    site_id: str
    city: str
    country: str
    design_pue: float


@dataclass(frozen=True)
class SiteHour:
    """One site and UTC hour, all services (attributed energy: idle excluded, as in the mart)."""

    site_id: str
    hour_utc: datetime
    requests: int
    facility_energy_wh: float
    gco2e: float

    @property
    def facility_wh_per_request(self) -> float | None:
        return self.facility_energy_wh / self.requests if self.requests else None

    @property
    def gco2e_per_request(self) -> float | None:
        return self.gco2e / self.requests if self.requests else None


@dataclass(frozen=True)
class ServiceHour:
    """p95 latency of one service at one site in one UTC hour (exact, from the request logs)."""

    site_id: str
    service: str
    hour_utc: datetime
    requests: int
    latency_p95_ms: float | None


@dataclass(frozen=True)
class SiteDay:
    site_id: str
    local_date: date
    minutes: int
    it_energy_kwh: float
    facility_energy_kwh: float
    pue: float | None


@dataclass(frozen=True)
class SloStatus:
    """One service at one site (or `__all__`) over the whole period."""

    service: str
    site_id: str
    last_date: date
    requests: int
    bad_availability: int
    bad_latency: int
    availability_target: float | None
    latency_target: float | None
    availability_budget_remaining: float | None  # at the end of the last day
    latency_budget_remaining: float | None
    worst_availability_burn: float | None  # over every day of the period
    worst_latency_burn: float | None

    @property
    def availability_sli(self) -> float | None:
        return 1 - self.bad_availability / self.requests if self.requests else None

    @property
    def latency_sli(self) -> float | None:
        return 1 - self.bad_latency / self.requests if self.requests else None


@dataclass(frozen=True)
class Charge:
    """One team at one site, every month of the period summed."""

    team: str
    site_id: str
    cost_center: str | None
    requests: int
    facility_energy_kwh: float
    energy_cost_usd: float
    carbon_cost_usd: float
    capex_share_usd: float
    opex_share_usd: float
    total_usd: float
    #: the part of facility_energy_kwh that is shared infrastructure energy
    shared_facility_energy_kwh: float = 0.0


@dataclass(frozen=True)
class Roi:
    """One site against its hyperscale baseline (null where the mart has no value)."""

    site_id: str
    baseline_region: str
    pilot_days: float
    requests: int
    microdc_usd_per_month: float | None
    operating_usd_per_month: float | None
    cloud_usd_per_month: float | None
    investment_usd: float | None
    microdc_usd_6m: float | None
    cloud_usd_6m: float | None
    microdc_usd_12m: float | None
    cloud_usd_12m: float | None
    monthly_savings_usd: float | None
    payback_months: float | None
    roi_6m_pct: float | None
    roi_12m_pct: float | None
    latency_p95_ms: float | None
    baseline_latency_p95_ms: float | None
    facility_wh_per_request: float | None
    baseline_wh_per_request: float | None
    gco2e_per_request: float | None
    baseline_gco2e_per_request: float | None
    #: The like-for-like baseline: the site's cores rented in the cloud around the clock.
    cloud_capacity_usd_per_month: float | None
    capacity_payback_months: float | None
    capacity_roi_12m_pct: float | None


@dataclass(frozen=True)
class ReportData:
    db: Path
    period_start: datetime  # first UTC hour with requests
    period_end: datetime  # end of the last one
    currency: str
    idle_policy: str
    shared_policy: str
    carbon_price_usd_per_tonne: float
    sites: list[Site]
    site_hours: list[SiteHour]
    service_hours: list[ServiceHour]
    site_days: list[SiteDay]
    slo: list[SloStatus]
    charges: list[Charge]
    months: list[date]  # site-local months the chargeback covers
    roi: list[Roi]


def load(db: Path) -> ReportData:
    """Everything the report shows, from the warehouse at `db` (opened read-only)."""
    if not db.is_file():
        raise WarehouseError(db, f"no warehouse here ({_HINT})")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseError(db, f"cannot open the warehouse: {exc}") from exc
    con.execute("set enable_progress_bar = false")
    try:
        _check_tables(con, db)
        return _read(con, db)
    finally:
        con.close()


def _check_tables(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    present = {str(r[0]) for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    if not present:
        raise WarehouseError(db, f"empty warehouse, it has no tables ({_HINT})")
    missing = [t for t in TABLES if t not in present]
    if missing:
        raise WarehouseError(
            db, f"no such table in the warehouse (old or partial build? {_HINT})", missing[0]
        )


def _read(con: duckdb.DuckDBPyConnection, db: Path) -> ReportData:
    q = _Query(con, db)
    period = q.one(
        "fct_energy_per_request_hourly",
        "select timezone('UTC', min(hour_utc)), timezone('UTC', max(hour_utc)), "
        "coalesce(sum(requests), 0) from fct_energy_per_request_hourly",
    )
    if not period[2]:
        raise WarehouseError(
            db,
            "no requests: the lake had no data when the warehouse was built (land data or run "
            "`microdc demo`, then rebuild)",
            "fct_energy_per_request_hourly",
        )
    fleet = q.one(
        "dim_fleet",
        "select currency, idle_policy, carbon_price_usd_per_tonne, shared_policy from dim_fleet",
    )
    return ReportData(
        db=db,
        period_start=period[0],
        period_end=period[1] + timedelta(hours=1),
        currency=str(fleet[0]),
        idle_policy=str(fleet[1]),
        shared_policy=str(fleet[3]),
        carbon_price_usd_per_tonne=float(fleet[2]),
        sites=[
            Site(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in q.all("dim_site", _SITES)
        ],
        site_hours=[
            SiteHour(str(r[0]), r[1], int(r[2]), float(r[3]), float(r[4]))
            for r in q.all("fct_energy_per_request_hourly", _SITE_HOURS)
        ],
        service_hours=[
            ServiceHour(str(r[0]), str(r[1]), r[2], int(r[3]), _opt(r[4]))
            for r in q.all("fct_energy_per_request_hourly", _SERVICE_HOURS)
        ],
        site_days=[
            SiteDay(str(r[0]), r[1], int(r[2]), float(r[3]), float(r[4]), _opt(r[5]))
            for r in q.all("fct_site_efficiency_daily", _SITE_DAYS)
        ],
        slo=[
            SloStatus(
                str(r[0]),
                str(r[1]),
                r[2],
                int(r[3]),
                int(r[4]),
                int(r[5]),
                *(_opt(v) for v in r[6:12]),
            )
            for r in q.all("fct_slo_daily", _SLO)
        ],
        charges=[
            Charge(
                str(r[0]),
                str(r[1]),
                None if r[2] is None else str(r[2]),
                int(r[3]),
                *(float(v) for v in r[4:11]),
            )
            for r in q.all("fct_chargeback_monthly", _CHARGES)
        ],
        months=[r[0] for r in q.all("fct_chargeback_monthly", _MONTHS)],
        roi=[_roi(r) for r in q.all("fct_roi_site", _ROI)],
    )


def _roi(r: tuple[Any, ...]) -> Roi:
    return Roi(
        str(r[0]),
        str(r[1]),
        float(r[2]),
        int(r[3]),
        *(_opt(v) for v in r[4:25]),
    )


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


class _Query:
    """Runs the report's queries; a failure names the warehouse and the table."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db: Path) -> None:
        self.con = con
        self.db = db

    def all(self, table: str, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self.con.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(self.db, f"cannot read it ({_HINT}): {exc}", table) from exc

    def one(self, table: str, sql: str) -> tuple[Any, ...]:
        rows = self.all(table, sql)
        if not rows:
            raise WarehouseError(self.db, f"has no rows ({_HINT})", table)
        return rows[0]


_SITES = "select site_id, city, country, design_pue from dim_site order by site_id"

_SITE_HOURS = """
select
    site_id,
    timezone('UTC', hour_utc) as hour_utc,
    sum(requests) as requests,
    sum(facility_energy_wh) as facility_energy_wh,
    sum(operational_gco2e + embodied_gco2e) as gco2e
from fct_energy_per_request_hourly
group by all
order by site_id, hour_utc
"""

# The mart repeats a service's latency on each of its team rows; max() takes that one value.
_SERVICE_HOURS = """
select
    site_id,
    service,
    timezone('UTC', hour_utc) as hour_utc,
    sum(requests) as requests,
    max(latency_p95_ms) as latency_p95_ms
from fct_energy_per_request_hourly
group by all
order by site_id, service, hour_utc
"""

_SITE_DAYS = """
select site_id, local_date, minutes, it_energy_kwh, facility_energy_kwh, pue
from fct_site_efficiency_daily
order by site_id, local_date
"""

_SLO = """
with

slo as (
    select * from fct_slo_daily
),

targets as (
    select
        service,
        any_value(availability_target) as availability_target,
        any_value(latency_target) as latency_target
    from dim_service
    group by service
),

period as (
    select
        service,
        site_id,
        max(date_utc) as last_date,
        sum(requests) as requests,
        sum(bad_availability) as bad_availability,
        sum(bad_latency) as bad_latency,
        arg_max(availability_budget_remaining, date_utc) as availability_budget_remaining,
        arg_max(latency_budget_remaining, date_utc) as latency_budget_remaining,
        max(worst_availability_burn) as worst_availability_burn,
        max(worst_latency_burn) as worst_latency_burn
    from slo
    group by service, site_id
    having sum(requests) > 0
),

final as (
    select
        p.service,
        p.site_id,
        p.last_date,
        p.requests,
        p.bad_availability,
        p.bad_latency,
        t.availability_target,
        t.latency_target,
        p.availability_budget_remaining,
        p.latency_budget_remaining,
        p.worst_availability_burn,
        p.worst_latency_burn
    from period as p
    left join targets as t using (service)
)

select * from final order by service, site_id = '__all__', site_id
"""

_CHARGES = """
select
    team,
    site_id,
    any_value(cost_center) as cost_center,
    sum(requests) as requests,
    sum(facility_energy_kwh) as facility_energy_kwh,
    sum(energy_cost_usd) as energy_cost_usd,
    sum(carbon_cost_usd) as carbon_cost_usd,
    sum(capex_share_usd) as capex_share_usd,
    sum(opex_share_usd) as opex_share_usd,
    sum(total_usd) as total_usd,
    sum(shared_facility_energy_kwh) as shared_facility_energy_kwh
from fct_chargeback_monthly
group by team, site_id
order by team, site_id
"""

_MONTHS = "select distinct local_month from fct_chargeback_monthly order by local_month"

_ROI = """
select
    site_id,
    baseline_region,
    pilot_days,
    requests,
    microdc_usd_per_month,
    operating_usd_per_month,
    cloud_usd_per_month,
    investment_usd,
    microdc_usd_6m,
    cloud_usd_6m,
    microdc_usd_12m,
    cloud_usd_12m,
    monthly_savings_usd,
    payback_months,
    roi_6m_pct,
    roi_12m_pct,
    latency_p95_ms,
    baseline_latency_p95_ms,
    facility_wh_per_request,
    baseline_wh_per_request,
    gco2e_per_request,
    baseline_gco2e_per_request,
    cloud_capacity_usd_per_month,
    capacity_payback_months,
    capacity_roi_12m_pct
from fct_roi_site
order by site_id
"""
