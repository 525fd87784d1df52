"""The invariant macros of sql/macros/invariants.sql, as `microdc quality check` renders them:
given rows, expected results computed by hand; and the defaults dbt's tests use are ours."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from pipeline.quality.invariants import (
    CONSERVATION_TOLERANCE_WH,
    RECONCILE_ABS_TOLERANCE,
    RECONCILE_REL_TOLERANCE,
    invariant_sql,
)
from pipeline.quality.suites import COST_PARTS


def test_dbts_defaults_are_the_tolerances_of_the_quality_check() -> None:
    assert invariant_sql("node_energy_conservation()") == invariant_sql(
        f"node_energy_conservation({CONSERVATION_TOLERANCE_WH!r})"
    )
    assert invariant_sql("chargeback_total_against_parts()") == invariant_sql(
        f"chargeback_total_against_parts({RECONCILE_ABS_TOLERANCE!r}, {RECONCILE_REL_TOLERANCE!r})"
    )
    assert " + ".join(COST_PARTS) in invariant_sql("chargeback_total_against_parts()")


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def test_chargeback_total_counts_rows_off_their_parts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """create table fct_chargeback_monthly (site_id text, local_month date,
        energy_cost_usd double, carbon_cost_usd double, capex_share_usd double,
        opex_share_usd double, total_usd double)"""
    )
    con.execute(
        """insert into fct_chargeback_monthly values
        ('s1', date '2026-11-01', 1.0, 2.0, 3.0, 4.0, 10.0),
        ('s1', date '2026-11-01', 0.5, 0.5, 0.5, 0.5, 2.0),
        ('s2', date '2026-11-01', 1.0, 1.0, 1.0, 1.0, 4.01)"""
    )
    rows = con.execute(invariant_sql("chargeback_total_against_parts()")).fetchall()
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("s1", 12.0, 12.0, 2, 0),
        ("s2", 4.0, pytest.approx(4.01), 1, 1),
    ]


def test_chargeback_against_meter_sums_metered_and_design_pue_minutes(
    con: duckdb.DuckDBPyConnection,
) -> None:
    t0, t1 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC), datetime(2026, 11, 3, 10, 1, tzinfo=UTC)
    con.execute(
        """create table stg_site_minutes (site_id text, window_start timestamptz,
        pue_source text, metered_facility_energy_wh double, node_it_energy_wh double,
        pue double, renewable_share double)"""
    )
    # a metered minute: 1,500 Wh at the meter, 20 % renewable; a design-PUE minute: 1,000 Wh
    # of node IT x 1.4
    con.executemany(
        "insert into stg_site_minutes values (?, ?, ?, ?, ?, ?, ?)",
        [
            ("s1", t0, "metered", 1500.0, 1100.0, 1.36, 0.2),
            ("s1", t1, "design", None, 1000.0, 1.4, None),
        ],
    )
    con.execute(
        """create table int_site_minute_prices as select * from (values
        ('s1', ?::timestamptz, date '2026-11-01', 0.10::double),
        ('s1', ?::timestamptz, date '2026-11-01', 0.20::double))
        t(site_id, window_start, local_month, usd_per_kwh)""",
        [t0, t1],
    )
    con.execute(
        """create table fct_chargeback_monthly as select * from (values
        ('s1', date '2026-11-01', 2.9::double, 0.4::double))
        t(site_id, local_month, facility_energy_kwh, energy_cost_usd)"""
    )
    ((site, _, meter, design, minutes, expected, actual, expected_usd, actual_usd),) = con.execute(
        invariant_sql("chargeback_against_meter()")
    ).fetchall()
    assert (site, meter, design, minutes) == ("s1", 1.5, pytest.approx(1.4), 1)
    assert (expected, actual) == (pytest.approx(2.9), 2.9)
    # 1.5 kWh x 0.8 grid x 0.10 + 1.4 kWh x 1.0 grid x 0.20 = 0.12 + 0.28
    assert (expected_usd, actual_usd) == (pytest.approx(0.40), 0.4)
