"""Reconciliation invariants of the warehouse, computed in DuckDB SQL on all rows.

The queries are the macros of `sql/macros/invariants.sql`, which dbt's singular tests
(`sql/tests/`) use too: one home for what "reconciles" means.

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

from pipeline.models.jinja import load_macros, render
from pipeline.quality.suites import CHARGEBACK, COST_PARTS
from pipeline.resources import sql_dir

#: Per node-minute stream vs bronze energy (the stream sums integer micro-Wh, SQL sums floats).
CONSERVATION_TOLERANCE_WH = 1e-5
#: Chargeback reconciliations: |expected - actual| <= ABS + REL * |expected|.
RECONCILE_ABS_TOLERANCE = 1e-6
RECONCILE_REL_TOLERANCE = 1e-9


def invariant_sql(call: str) -> str:
    """The SQL of one invariant macro of `sql/macros/invariants.sql` (the home they share with
    dbt's singular tests), e.g. `invariant_sql("meter_below_nodes()")`."""
    root = sql_dir()
    return render(
        "{{ " + call + " }}",
        where=f"sql/macros/invariants.sql: {call}",
        macros=load_macros(root),
        source=lambda _layer, name: name,  # the dim_ tables of the fleet source are in main
    ).sql


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
            invariant_sql(f"node_energy_conservation({CONSERVATION_TOLERANCE_WH!r})")
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
    total_sql = invariant_sql(
        f"chargeback_total_against_parts({RECONCILE_ABS_TOLERANCE!r}, {RECONCILE_REL_TOLERANCE!r})"
    )
    for site, month, expected, actual, n, mismatched in con.execute(total_sql).fetchall():
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
    ) in con.execute(invariant_sql("chargeback_against_meter()")).fetchall():
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
    for site, month, minutes, kwh in con.execute(invariant_sql("meter_below_nodes()")).fetchall():
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
