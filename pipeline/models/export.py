"""`microdc export chargeback`: one month of `fct_chargeback_monthly` as a CSV or Parquet file.

The file is what finance loads, so its shape is fixed: the columns of `CHARGEBACK_COLUMNS` in
that order, rows ordered by site and team, `month` as `YYYY-MM` and `month_start` as an ISO date
(the first day of the site-local month), energy and carbon as DECIMAL(18,6), money as
DECIMAL(18,6), requests and minutes as integers. The month is each site's local calendar month,
as in the mart. The file is written next to its destination and renamed into place, so a reader
never sees half of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import duckdb

from pipeline.errors import ConfigError

Format = Literal["csv", "parquet"]
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_SCALE = "decimal(18, 6)"

# (column, SQL expression over fct_chargeback_monthly): the stable column order of the file
CHARGEBACK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("month", "strftime(local_month, '%Y-%m')"),
    ("month_start", "local_month"),
    ("site_id", "site_id"),
    ("team", "team"),
    ("cost_center", "cost_center"),
    ("idle_policy", "idle_policy"),
    ("requests", "cast(requests as bigint)"),
    ("it_energy_kwh", f"cast(round(it_energy_kwh, 6) as {_SCALE})"),
    ("facility_energy_kwh", f"cast(round(facility_energy_kwh, 6) as {_SCALE})"),
    ("idle_facility_energy_kwh", f"cast(round(idle_facility_energy_kwh, 6) as {_SCALE})"),
    ("energy_cost_usd", f"cast(round(energy_cost_usd, 6) as {_SCALE})"),
    ("operational_kgco2e", f"cast(round(operational_kgco2e, 6) as {_SCALE})"),
    ("embodied_kgco2e", f"cast(round(embodied_kgco2e, 6) as {_SCALE})"),
    ("carbon_cost_usd", f"cast(round(carbon_cost_usd, 6) as {_SCALE})"),
    ("capex_share_usd", f"cast(round(capex_share_usd, 6) as {_SCALE})"),
    ("opex_share_usd", f"cast(round(opex_share_usd, 6) as {_SCALE})"),
    ("total_usd", f"cast(round(total_usd, 6) as {_SCALE})"),
    ("cost_per_1k_requests", f"cast(round(cost_per_1k_requests, 6) as {_SCALE})"),
    ("minutes_present", "cast(minutes_present as bigint)"),
    ("minutes_in_month", "cast(minutes_in_month as bigint)"),
)


def parse_month(text: str) -> str:
    """`YYYY-MM` -> the ISO date of the month's first day; anything else is a ConfigError."""
    if not _MONTH.match(text):
        raise ConfigError(f"--month {text!r}: expected YYYY-MM, e.g. 2026-03")
    return f"{text}-01"


def export_chargeback(db_path: Path | str, month: str, fmt: Format, out: Path | str) -> int:
    """Write the chargeback rows of `month` (YYYY-MM) to `out`; returns the number of rows."""
    first_day = parse_month(month)
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format {fmt!r}: expected csv or parquet")
    db = Path(db_path)
    if not db.is_file():
        raise ConfigError(f"{db}: no warehouse (build it with `microdc models build`)")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    columns = ", ".join(f"{expr} as {name}" for name, expr in CHARGEBACK_COLUMNS)
    query = (
        f"select {columns} from fct_chargeback_monthly"
        f" where local_month = date '{first_day}' order by site_id, team"
    )
    options = "format csv, header true" if fmt == "csv" else "format parquet"
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise ConfigError(f"{db}: cannot open the warehouse: {exc}") from exc
    try:
        try:
            row = con.execute(f"select count(*) from ({query})").fetchone()
        except duckdb.CatalogException as exc:
            raise ConfigError(
                f"{db}: no fct_chargeback_monthly table (rebuild with `microdc models build`)"
            ) from exc
        path = str(temp).replace("'", "''")
        con.execute(f"copy ({query}) to '{path}' ({options})")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    temp.replace(target)
    return int(row[0]) if row else 0
