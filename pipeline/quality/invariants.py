"""Reconciliation invariants of the warehouse, computed in DuckDB SQL on all rows.

`reconcile` returns small (invariant, site_id, month, expected, actual, tolerance, ok, detail)
rows; `reconciliation_frame` makes them the frame the `reconciliation.invariants` suite
validates. Per node-minute, the stream's energy (all services plus `__idle__`) equals the bronze
recomputation (int_node_energy_minutes_from_bronze) within 1e-5 Wh; per site and site-local
month, the chargeback's facility kWh equal the facility meter's (silver site minutes: the
metered facility energy, plus node IT x design PUE over the minutes without a usable meter),
its energy cost equals that energy's grid share at the local tariff of each minute (what the
utility bills), and its `total_usd` equals energy + carbon + capex + opex shares. Minutes whose
meter IT reading is below the node sum are listed in the notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import duckdb

from pipeline.quality.suites import CHARGEBACK, COST_PARTS

#: Per node-minute stream vs bronze energy (the stream sums integer micro-Wh, SQL sums floats).
CONSERVATION_TOLERANCE_WH = 1e-5
#: Chargeback reconciliations: |expected - actual| <= ABS + REL * |expected|.
RECONCILE_ABS_TOLERANCE = 1e-6
RECONCILE_REL_TOLERANCE = 1e-9

_LOCAL_MONTH = "cast(date_trunc('month', timezone(d.timezone, {ts})) as date)"

_CONSERVATION_SQL = f"""
with stream as (
    select node_id, site_id, window_start, sum(it_energy_wh) as wh
    from stg_energy_minutes
    group by all
),
joined as (
    select
        s.site_id,
        {_LOCAL_MONTH.format(ts="s.window_start")} as month,
        b.it_energy_wh as expected,
        s.wh as actual
    from stream as s
    join int_node_energy_minutes_from_bronze as b using (node_id, window_start)
    join dim_site as d on d.site_id = s.site_id
)
select
    site_id,
    month,
    sum(expected) as expected,
    sum(actual) as actual,
    count(*) as compared,
    count(*) filter (where not abs(actual - expected) <= {CONSERVATION_TOLERANCE_WH}) as mismatched,
    max(abs(actual - expected)) as worst
from joined
group by all
order by site_id, month
"""

# What the chargeback must add up to, from the facility meter itself (silver site minutes), not
# from the attributed rows it is built from: per site and site-local month, the meter's facility
# kWh over the minutes it metered (`pue_source = 'metered'`), plus node IT x design PUE over the
# minutes without a usable meter; and the energy cost of that energy, grid share only, at the
# local tariff of each minute (what the utility bills). The calendar and the tariff of a
# site-minute come from int_site_minute_prices, the one home of both; sites missing from
# dim_site are dropped there, as in the mart.
_METER_SQL = """
with minutes as (
    select
        m.site_id,
        p.local_month as month,
        m.pue_source = 'metered' as metered,
        case
            when m.pue_source = 'metered' then m.metered_facility_energy_wh
            else m.node_it_energy_wh * m.pue
        end / 1000 as kwh,
        least(greatest(coalesce(m.renewable_share, 0), 0), 1) as renewable_share,
        p.usd_per_kwh
    from stg_site_minutes as m
    join int_site_minute_prices as p using (site_id, window_start)
)
select
    site_id,
    month,
    coalesce(sum(kwh) filter (where metered), 0) as meter_kwh,
    coalesce(sum(kwh) filter (where not metered), 0) as design_kwh,
    count(*) filter (where not metered) as design_minutes,
    sum(kwh * (1 - renewable_share) * usd_per_kwh) as cost_usd
from minutes
group by all
"""

_CHARGEBACK_METER_SQL = f"""
with meter as ({_METER_SQL}),
mart as (
    select
        site_id,
        local_month as month,
        sum(facility_energy_kwh) as kwh,
        sum(energy_cost_usd) as cost_usd
    from {CHARGEBACK}
    group by all
)
select
    site_id,
    month,
    meter.meter_kwh,
    meter.design_kwh,
    meter.design_minutes,
    meter.meter_kwh + meter.design_kwh as expected_kwh,
    mart.kwh as actual_kwh,
    meter.cost_usd as expected_usd,
    mart.cost_usd as actual_usd
from meter
full join mart using (site_id, month)
order by site_id, month
"""

# A valid meter whose IT reading is below the node sum (meter drift, a node outside the meter):
# the chargeback follows the meter's facility energy there; the minutes are reported.
_METER_BELOW_NODES_SQL = """
select
    m.site_id,
    p.local_month as month,
    count(*) as minutes,
    sum(m.nodes_over_meter_it_wh) / 1000 as kwh
from int_site_meter_minutes as m
join int_site_minute_prices as p using (site_id, window_start)
where m.meter_status = 'meter_below_nodes'
group by all
order by all
"""

_CHARGEBACK_TOTAL_SQL = f"""
select
    site_id,
    local_month as month,
    sum({" + ".join(COST_PARTS)}) as expected,
    sum(total_usd) as actual,
    count(*) as rows,
    count(*) filter (
        where not abs(total_usd - ({" + ".join(COST_PARTS)}))
            <= {RECONCILE_ABS_TOLERANCE}
            + {RECONCILE_REL_TOLERANCE} * abs({" + ".join(COST_PARTS)})
    ) as mismatched
from {CHARGEBACK}
group by all
order by site_id, month
"""


@dataclass
class InvariantRow:
    """One invariant at one site and month (or the whole run): expected vs actual, and why."""

    invariant: str
    site_id: str | None
    month: str | None
    expected: float | None
    actual: float | None
    tolerance: float | None
    ok: bool
    detail: str

    @classmethod
    def failed(cls, invariant: str, detail: str) -> InvariantRow:
        """An invariant that could not be computed at all."""
        return cls(invariant, None, None, None, None, None, False, detail)


def _close(expected: float | None, actual: float | None) -> tuple[bool, float]:
    tol = RECONCILE_ABS_TOLERANCE + RECONCILE_REL_TOLERANCE * abs(expected or 0.0)
    if expected is None or actual is None or not math.isfinite(expected - actual):
        return False, tol
    return abs(expected - actual) <= tol, tol


def _month(value: Any) -> str | None:
    return None if value is None else str(value)[:7]


def reconcile(
    con: duckdb.DuckDBPyConnection, tables: set[str], notes: list[str]
) -> list[InvariantRow]:
    """Every invariant's rows over `con`; what was skipped, and why, goes to `notes`."""
    rows: list[InvariantRow] = []
    name = "node_minute_energy_conservation"
    try:
        for site, month, expected, actual, compared, mismatched, worst in con.execute(
            _CONSERVATION_SQL
        ).fetchall():
            rows.append(
                InvariantRow(
                    name,
                    site,
                    _month(month),
                    expected,
                    actual,
                    CONSERVATION_TOLERANCE_WH,
                    mismatched == 0,
                    f"{compared:,} node-minutes compared, {mismatched:,} off by more than "
                    f"{CONSERVATION_TOLERANCE_WH:g} Wh (worst {worst:.3g} Wh)",
                )
            )
        if not rows:
            notes.append(f"{name}: no node-minute is in both the stream and the bronze telemetry")
    except duckdb.Error as exc:
        rows.append(InvariantRow.failed(name, f"cannot compute: {exc}"))

    if CHARGEBACK not in tables:
        notes.append(f"{CHARGEBACK}: not built; its suite and reconciliations were skipped")
        return rows
    columns = {
        c
        for (c,) in con.execute(
            "select column_name from duckdb_columns() where table_name = ?", [CHARGEBACK]
        ).fetchall()
    }
    needed = {"site_id", "local_month", "facility_energy_kwh", "total_usd", *COST_PARTS}
    if missing := sorted(needed - columns):
        rows.append(
            InvariantRow.failed(
                "chargeback", f"{CHARGEBACK} lacks column(s) {', '.join(missing)}: cannot reconcile"
            )
        )
        return rows
    try:
        rows.extend(_meter_rows(con, notes))
    except duckdb.Error as exc:
        rows.append(
            InvariantRow.failed("chargeback_facility_kwh_equals_meter", f"cannot compute: {exc}")
        )
    for site, month, expected, actual, n, mismatched in con.execute(
        _CHARGEBACK_TOTAL_SQL
    ).fetchall():
        ok, tol = _close(expected, actual)
        rows.append(
            InvariantRow(
                "chargeback_total_equals_parts",
                site,
                _month(month),
                expected,
                actual,
                tol,
                ok and mismatched == 0,
                f"sum of parts {_num(expected)} USD, total_usd {_num(actual)} USD, "
                f"{mismatched} of {n} rows off",
            )
        )
    return rows


def _meter_rows(con: duckdb.DuckDBPyConnection, notes: list[str]) -> list[InvariantRow]:
    """The chargeback against the facility meter, per site and local month; the minutes whose
    meter IT reading is below the node sum become notes."""
    out: list[InvariantRow] = []
    for (
        site,
        month,
        meter_kwh,
        design_kwh,
        design_minutes,
        expected,
        actual,
        expected_usd,
        actual_usd,
    ) in con.execute(_CHARGEBACK_METER_SQL).fetchall():
        ok, tol = _close(expected, actual)
        design = (
            f" + design PUE {_num(design_kwh)} kWh over {design_minutes:,} unmetered minutes"
            if design_minutes
            else ""
        )
        out.append(
            InvariantRow(
                "chargeback_facility_kwh_equals_meter",
                site,
                _month(month),
                expected,
                actual,
                tol,
                ok,
                f"{site} {_month(month)}: facility meter {_num(meter_kwh)} kWh{design}, "
                f"chargeback rows {_num(actual)} kWh",
            )
        )
        ok, tol = _close(expected_usd, actual_usd)
        out.append(
            InvariantRow(
                "chargeback_energy_cost_equals_meter",
                site,
                _month(month),
                expected_usd,
                actual_usd,
                tol,
                ok,
                f"{site} {_month(month)}: the meter's grid kWh at the local tariffs "
                f"{_num(expected_usd)} USD, chargeback energy cost {_num(actual_usd)} USD",
            )
        )
    for site, month, minutes, kwh in con.execute(_METER_BELOW_NODES_SQL).fetchall():
        notes.append(
            f"{site} {_month(month)}: {minutes:,} minute(s) whose facility meter's IT reading is "
            f"below the node sum by {_num(kwh)} kWh (meter drift, or a node outside the meter); "
            "charged at the meter's facility energy, no shared energy (int_site_meter_minutes)"
        )
    return out


def reconciliation_frame(rows: list[InvariantRow]) -> Any:
    """The rows as a pandas frame (through Arrow: typed columns even when there are no rows)."""
    import pyarrow as pa

    text, number = pa.string(), pa.float64()
    schema = pa.schema(
        [
            ("invariant", text),
            ("site_id", text),
            ("month", text),
            ("expected", number),
            ("actual", number),
            ("tolerance", number),
            ("ok", pa.bool_()),
            ("detail", text),
        ]
    )
    return pa.Table.from_pylist([vars(r) for r in rows], schema=schema).to_pandas()


def _num(value: float | None) -> str:
    return "null" if value is None else f"{value:,.6f}"
