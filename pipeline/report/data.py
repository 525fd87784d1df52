"""What the HTML report shows, read from a built DuckDB warehouse: pure queries, typed rows.

Only tables are read (marts and `dim_` tables), never the staging views: those read the Parquet
lake by path, and a report must build from a warehouse file copied away from its lake. Ratios
are re-derived from sums (DESIGN.md §5), never averaged. Times come back as naive UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb

from pipeline.errors import ConfigError
from pipeline.models.analyses import rows_as

T = TypeVar("T")

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


@dataclass(frozen=True)
class _Period:
    first_hour: datetime | None
    last_hour: datetime | None
    requests: int


@dataclass(frozen=True)
class _Fleet:
    currency: str
    idle_policy: str
    shared_policy: str
    carbon_price_usd_per_tonne: float


@dataclass(frozen=True)
class _Month:
    month: date


def _read(con: duckdb.DuckDBPyConnection, db: Path) -> ReportData:
    q = _Query(con, db)
    period = q.one("fct_energy_per_request_hourly", "report_period", _Period)
    if not period.requests or period.first_hour is None or period.last_hour is None:
        raise WarehouseError(
            db,
            "no requests: the lake had no data when the warehouse was built (land data or run "
            "`microdc demo`, then rebuild)",
            "fct_energy_per_request_hourly",
        )
    fleet = q.one("dim_fleet", "report_fleet", _Fleet)
    return ReportData(
        db=db,
        period_start=period.first_hour,
        period_end=period.last_hour + timedelta(hours=1),
        currency=fleet.currency,
        idle_policy=fleet.idle_policy,
        shared_policy=fleet.shared_policy,
        carbon_price_usd_per_tonne=fleet.carbon_price_usd_per_tonne,
        sites=q.all("dim_site", "report_sites", Site),
        site_hours=q.all("fct_energy_per_request_hourly", "report_site_hours", SiteHour),
        service_hours=q.all("fct_energy_per_request_hourly", "report_service_hours", ServiceHour),
        site_days=q.all("fct_site_efficiency_daily", "report_site_days", SiteDay),
        slo=q.all("fct_slo_daily", "report_slo", SloStatus),
        charges=q.all("fct_chargeback_monthly", "report_charges", Charge),
        months=[m.month for m in q.all("fct_chargeback_monthly", "chargeback_months", _Month)],
        roi=q.all("fct_roi_site", "report_roi", Roi),
    )


class _Query:
    """Runs the report's queries (`sql/analyses/report_*.sql`) into typed rows by column name;
    a failure names the warehouse and the table."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db: Path) -> None:
        self.con = con
        self.db = db

    def all(self, table: str, analysis: str, row_type: type[T]) -> list[T]:
        try:
            return rows_as(self.con, analysis, row_type)
        except duckdb.Error as exc:
            raise WarehouseError(self.db, f"cannot read it ({_HINT}): {exc}", table) from exc

    def one(self, table: str, analysis: str, row_type: type[T]) -> T:
        rows = self.all(table, analysis, row_type)
        if not rows:
            raise WarehouseError(self.db, f"has no rows ({_HINT})", table)
        return rows[0]
