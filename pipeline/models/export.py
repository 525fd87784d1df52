"""`microdc export`: warehouse marts as files finance loads (CSV, Parquet, Excel, FinOps FOCUS).

The shape of every file is fixed. `export chargeback` writes one month of
`fct_chargeback_monthly`: the columns of `CHARGEBACK_COLUMNS` in that order, rows ordered by
site and team, `month` as `YYYY-MM` and `month_start` as an ISO date (the first day of the
site-local month), energy and carbon as DECIMAL(18,6), money as DECIMAL(18,6), requests and
minutes as integers. The month is each site's local calendar month, as in the mart. The rows
include the `__idle__` and `__shared__` (shared infrastructure) rows the fleet's idle and shared
policies keep separate (`idle_policy`, `shared_policy`); per site-month the facility kWh equal
the facility meter's, and `shared_facility_energy_kwh` and `design_pue_facility_energy_kwh` are
the parts of a row's facility kWh that are shared infrastructure energy and energy of minutes
without a usable meter (node IT x design PUE). `export roi` writes `fct_roi_site` the same way
(`ROI_COLUMNS`, one row per site).

`xlsx` writes one sheet with a bold header row, frozen panes (header row and the key columns),
numbers as numbers with a fixed number format (`0.000000` for decimals, `0` for integers) and
dates as dates. `focus` (chargeback only) writes a FinOps FOCUS 1.2 cost-and-usage CSV, see
`FOCUS_COLUMNS`, read from the mart `fct_focus_chargeback_monthly`. Every file is written next
to its destination and renamed into place, so a reader never sees half of it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb

from pipeline.errors import ConfigError

Format = Literal["csv", "parquet", "xlsx"]
ChargebackFormat = Literal["csv", "parquet", "xlsx", "focus"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "xlsx")
CHARGEBACK_FORMATS: tuple[ChargebackFormat, ...] = ("csv", "parquet", "xlsx", "focus")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_SCALE = "decimal(18, 6)"
_XLSX_DECIMAL = "0.000000"
_XLSX_INTEGER = "0"
_XLSX_DATE = "yyyy-mm-dd"


def _dec(expr: str) -> str:
    return f"cast(round({expr}, 6) as {_SCALE})"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# (column, SQL expression over fct_chargeback_monthly): the stable column order of the file
CHARGEBACK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("month", "strftime(local_month, '%Y-%m')"),
    ("month_start", "local_month"),
    ("site_id", "site_id"),
    ("team", "team"),
    ("cost_center", "cost_center"),
    ("idle_policy", "idle_policy"),
    ("shared_policy", "shared_policy"),
    ("requests", "cast(requests as bigint)"),
    ("it_energy_kwh", _dec("it_energy_kwh")),
    ("facility_energy_kwh", _dec("facility_energy_kwh")),
    ("idle_facility_energy_kwh", _dec("idle_facility_energy_kwh")),
    ("shared_facility_energy_kwh", _dec("shared_facility_energy_kwh")),
    ("design_pue_facility_energy_kwh", _dec("design_pue_facility_energy_kwh")),
    ("energy_cost_usd", _dec("energy_cost_usd")),
    ("operational_kgco2e", _dec("operational_kgco2e")),
    ("embodied_kgco2e", _dec("embodied_kgco2e")),
    ("carbon_cost_usd", _dec("carbon_cost_usd")),
    ("capex_share_usd", _dec("capex_share_usd")),
    ("opex_share_usd", _dec("opex_share_usd")),
    ("total_usd", _dec("total_usd")),
    ("cost_per_1k_requests", _dec("cost_per_1k_requests")),
    ("minutes_present", "cast(minutes_present as bigint)"),
    ("minutes_in_month", "cast(minutes_in_month as bigint)"),
)

# (column, SQL expression over fct_roi_site): the mart's own order, decimals at 6 places
ROI_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site_id", "site_id"),
    ("baseline_region", "baseline_region"),
    ("pilot_days", _dec("pilot_days")),
    ("requests", "cast(requests as bigint)"),
    ("pilot_microdc_usd", _dec("pilot_microdc_usd")),
    ("microdc_usd_per_month", _dec("microdc_usd_per_month")),
    ("operating_usd_per_month", _dec("operating_usd_per_month")),
    ("cloud_usd_per_month", _dec("cloud_usd_per_month")),
    ("core_hours_per_month", _dec("core_hours_per_month")),
    ("egress_gb_per_month", _dec("egress_gb_per_month")),
    ("baseline_usd_per_core_hour", _dec("baseline_usd_per_core_hour")),
    ("baseline_egress_usd_per_gb", _dec("baseline_egress_usd_per_gb")),
    ("investment_usd", _dec("investment_usd")),
    ("microdc_usd_6m", _dec("microdc_usd_6m")),
    ("cloud_usd_6m", _dec("cloud_usd_6m")),
    ("microdc_usd_12m", _dec("microdc_usd_12m")),
    ("cloud_usd_12m", _dec("cloud_usd_12m")),
    ("monthly_savings_usd", _dec("monthly_savings_usd")),
    ("payback_months", _dec("payback_months")),
    ("roi_6m_pct", _dec("roi_6m_pct")),
    ("roi_12m_pct", _dec("roi_12m_pct")),
    ("latency_p50_ms", _dec("latency_p50_ms")),
    ("latency_p95_ms", _dec("latency_p95_ms")),
    ("baseline_rtt_ms", _dec("baseline_rtt_ms")),
    ("baseline_latency_p50_ms", _dec("baseline_latency_p50_ms")),
    ("baseline_latency_p95_ms", _dec("baseline_latency_p95_ms")),
    ("facility_wh_per_request", _dec("facility_wh_per_request")),
    ("baseline_wh_per_request", _dec("baseline_wh_per_request")),
    ("gco2e_per_request", _dec("gco2e_per_request")),
    ("baseline_gco2e_per_request", _dec("baseline_gco2e_per_request")),
    ("baseline_pue", _dec("baseline_pue")),
    ("baseline_grid_gco2e_per_kwh", _dec("baseline_grid_gco2e_per_kwh")),
    ("provisioned_cores", "provisioned_cores"),
    ("cloud_capacity_usd_per_month", _dec("cloud_capacity_usd_per_month")),
    ("capacity_monthly_savings_usd", _dec("capacity_monthly_savings_usd")),
    ("capacity_payback_months", _dec("capacity_payback_months")),
    ("capacity_roi_12m_pct", _dec("capacity_roi_12m_pct")),
)

# --- FinOps FOCUS 1.2 -----------------------------------------------------------------------
# The projection is a model, `sql/marts/fct_focus_chargeback_monthly.sql` (one FOCUS row per
# chargeback row; its header says how each column is made); the export reads one month of it
# by the names below, FOCUS columns in alphabetical order, then the custom x_ columns.
FOCUS_OPERATOR = "Micro-DC Operations"  # InvoiceIssuerName, ProviderName and PublisherName
FOCUS_UNALLOCATED = "UNALLOCATED"  # BillingAccountId of the __idle__ and __shared__ rows
FOCUS_MART = "fct_focus_chargeback_monthly"
FOCUS_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ServiceCategory",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "x_LocalMonth",
    "x_Requests",
    "x_ItEnergyKwh",
    "x_FacilityEnergyKwh",
    "x_IdleFacilityEnergyKwh",
    "x_SharedFacilityEnergyKwh",
    "x_DesignPueFacilityEnergyKwh",
    "x_OperationalKgCO2e",
    "x_EmbodiedKgCO2e",
    "x_EnergyCostUsd",
    "x_CarbonCostUsd",
    "x_CapexShareUsd",
    "x_OpexShareUsd",
    "x_IdlePolicy",
    "x_SharedPolicy",
)


def parse_month(text: str) -> str:
    """`YYYY-MM` -> the ISO date of the month's first day; anything else is a ConfigError."""
    if not _MONTH.match(text):
        raise ConfigError(f"--month {text!r}: expected YYYY-MM, e.g. 2026-03")
    return f"{text}-01"


def _select(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{expr} as {name}" for name, expr in columns)


def _focus_query(first_day: str) -> str:
    columns = ", ".join(f'"{name}"' for name in FOCUS_COLUMNS)
    return (
        f"select {columns} from {FOCUS_MART}"
        f" where x_LocalMonth = {_lit(first_day[:7])} order by RegionId, SubAccountId"
    )


def export_chargeback(
    db_path: Path | str, month: str, fmt: ChargebackFormat, out: Path | str
) -> int:
    """Write the chargeback rows of `month` (YYYY-MM) to `out`; returns the number of rows."""
    first_day = parse_month(month)
    if fmt not in CHARGEBACK_FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(CHARGEBACK_FORMATS)}")
    if fmt == "focus":
        return _export(db_path, _focus_query(first_day), "csv", out, table=FOCUS_MART)
    query = (
        f"select {_select(CHARGEBACK_COLUMNS)} from fct_chargeback_monthly"
        f" where local_month = date '{first_day}' order by site_id, team"
    )
    return _export(
        db_path, query, fmt, out, table="fct_chargeback_monthly", sheet="chargeback", keys=4
    )


def export_roi(db_path: Path | str, fmt: Format, out: Path | str) -> int:
    """Write `fct_roi_site` (one row per site) to `out`; returns the number of rows."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    query = f"select {_select(ROI_COLUMNS)} from fct_roi_site order by site_id"
    return _export(db_path, query, fmt, out, table="fct_roi_site", sheet="roi", keys=1)


def _export(
    db_path: Path | str,
    query: str,
    fmt: Format,
    out: Path | str,
    *,
    table: str,
    sheet: str = "data",
    keys: int = 0,
) -> int:
    db = Path(db_path)
    if not db.is_file():
        raise ConfigError(f"{db}: no warehouse (build it with `microdc models build`)")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise ConfigError(f"{db}: cannot open the warehouse: {exc}") from exc
    con.execute("set enable_progress_bar = false")
    try:
        try:
            row = con.execute(f"select count(*) from ({query})").fetchone()
        except duckdb.CatalogException as exc:
            hint = "rebuild with `microdc models build`"
            raise ConfigError(f"{db}: no {table} or one of its dimensions ({hint})") from exc
        if fmt == "xlsx":
            _write_xlsx(con, query, temp, sheet=sheet, keys=keys)
        else:
            options = "format csv, header true" if fmt == "csv" else "format parquet"
            path = str(temp).replace("'", "''")
            con.execute(f"copy ({query}) to '{path}' ({options})")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    temp.replace(target)
    return int(row[0]) if row else 0


def _write_xlsx(
    con: duckdb.DuckDBPyConnection, query: str, path: Path, *, sheet: str, keys: int
) -> None:
    """One sheet: a bold header, frozen header row and `keys` key columns, typed cells."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    cursor = con.execute(query)
    names = [d[0] for d in cursor.description]
    kinds = [str(d[1]).upper() for d in cursor.description]
    formats: list[str | None] = [
        _XLSX_DECIMAL
        if kind.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL"))
        else _XLSX_INTEGER
        if kind in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT")
        else _XLSX_DATE
        if kind == "DATE"
        else None
        for kind in kinds
    ]
    book = Workbook()
    ws = book.active
    ws.title = sheet
    ws.append(names)
    bold = Font(bold=True)
    for cell in ws[1]:
        cell.font = bold
    for values in cursor.fetchall():
        ws.append([_cell(v) for v in values])
    for i, (name, fmt) in enumerate(zip(names, formats, strict=True), start=1):
        letter = get_column_letter(i)
        if fmt is not None:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.number_format = fmt
        ws.column_dimensions[letter].width = max(len(name) + 2, 12)
    ws.freeze_panes = f"{get_column_letter(keys + 1)}2"
    book.save(str(path))


def _cell(value: Any) -> Any:
    # Excel numbers are IEEE doubles; DECIMAL(18,6) values below 1e9 survive the conversion
    return float(value) if isinstance(value, Decimal) else value
