"""`microdc quality check`: Great Expectations suites and reconciliations over a built warehouse.

One short embedded run is built once; copies of its warehouse are corrupted on purpose and the
checks must name the broken expectation (and the CLI exit 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.quality import QualityResult, run_checks
from tests.support.factories import simulated_warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_warehouse(tmp_path_factory.mktemp("quality"), 90)


@pytest.fixture(scope="module")
def clean(warehouse: Path) -> QualityResult:
    return run_checks(warehouse)


def _corrupted(warehouse: Path, name: str, *statements: str) -> Path:
    copy = warehouse.with_name(f"{name}.duckdb")
    shutil.copyfile(warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        for sql in statements:
            con.execute(sql).fetchall()
    finally:
        con.close()
    return copy


@pytest.fixture(scope="module")
def broken(warehouse: Path) -> tuple[Path, QualityResult]:
    db = _corrupted(
        warehouse,
        "broken",
        "create or replace table fct_site_efficiency_daily as "
        "select * replace (0.5 as pue) from fct_site_efficiency_daily",
        "insert into fct_slo_daily select * from fct_slo_daily limit 1",
        "update fct_chargeback_monthly set total_usd = total_usd + 1 "
        "where team = (select min(team) from fct_chargeback_monthly)",
    )
    return db, run_checks(db, db.parent / "broken-docs")


SuiteNames = {
    "bronze.stg_request_log",
    "bronze.stg_node_telemetry",
    "silver.stg_energy_minutes",
    "silver.stg_site_minutes",
    "silver.stg_slo_burn",
    "marts.fct_energy_per_request_hourly",
    "marts.fct_site_efficiency_daily",
    "marts.fct_slo_daily",
    "marts.fct_chargeback_monthly",
    "marts.fct_roi_site",
    "reconciliation.invariants",
}


def test_a_freshly_built_warehouse_passes_every_suite(clean: QualityResult) -> None:
    assert clean.failures() == []
    assert clean.success
    assert {s.suite for s in clean.suites} == SuiteNames
    assert all(s.outcomes and s.rows_validated > 0 for s in clean.suites)
    assert not any(s.sampled for s in clean.suites)
    assert clean.expectations > 60


def test_reconciliations_cover_conservation_and_the_chargeback(clean: QualityResult) -> None:
    recon = clean.suite("reconciliation.invariants")
    names = " ".join(o.expectation for o in recon.outcomes)
    for invariant in (
        "node_minute_energy_conservation",
        "chargeback_facility_kwh_equals_meter",
        "chargeback_energy_cost_equals_meter",
        "chargeback_total_equals_parts",
    ):
        assert invariant in names
    assert recon.rows_validated >= 3


def _meter_failures(result: QualityResult) -> list[str]:
    return [f for f in result.failures() if f.startswith("reconciliation.invariants")]


def test_three_percent_of_the_energy_missing_fails_against_the_meter(warehouse: Path) -> None:
    """The bug of issue 16: the chargeback's rows 3 % below the facility meter. Compared with
    the rows it was built from this passed; compared with the meter it fails, per site and
    month, naming the meter's kWh and the chargeback's."""
    db = _corrupted(
        warehouse,
        "three-percent",
        "create or replace table fct_chargeback_monthly as select * replace ("
        " facility_energy_kwh * 0.97 as facility_energy_kwh,"
        " energy_cost_usd * 0.97 as energy_cost_usd,"
        " total_usd - 0.03 * energy_cost_usd as total_usd) from fct_chargeback_monthly",
    )
    result = run_checks(db, db.parent / "three-percent-docs")
    assert not result.success
    failures = _meter_failures(result)
    assert len(failures) == 2, failures  # facility kWh and energy cost; totals still add up
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        sites = con.execute(
            "select site_id, strftime(local_month, '%Y-%m'), sum(facility_energy_kwh)"
            " from fct_chargeback_monthly group by all order by all"
        ).fetchall()
    finally:
        con.close()
    kwh = next(f for f in failures if "chargeback_facility_kwh_equals_meter" in f)
    cost = next(f for f in failures if "chargeback_energy_cost_equals_meter" in f)
    assert f"{len(sites)} of {len(sites)} rows unexpected" in kwh
    for site, month, facility in sites:
        # site, month, the meter's kWh (what the clean chargeback holds) and the 3 % short one
        assert f"{site} {month}: facility meter " in kwh
        assert f"chargeback rows {facility * 0.97:,.6f} kWh" in kwh
        assert f"{site} {month}: the meter's grid kWh at the local tariffs" in cost


def test_a_chargeback_without_its_shared_line_fails_against_the_meter(warehouse: Path) -> None:
    """The chargeback before issue 16 had no shared infrastructure energy: node rows only."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (shared,) = con.execute(
            "select sum(facility_energy_kwh) from fct_chargeback_monthly where team = '__shared__'"
        ).fetchone() or (None,)
    finally:
        con.close()
    assert shared and shared > 0, "the simulated sites' meters see network and storage load"
    db = _corrupted(
        warehouse, "no-shared", "delete from fct_chargeback_monthly where team = '__shared__'"
    )
    failures = _meter_failures(run_checks(db, db.parent / "no-shared-docs"))
    assert any("chargeback_facility_kwh_equals_meter" in f for f in failures), failures


def test_data_docs_are_written_next_to_the_warehouse(clean: QualityResult, warehouse: Path) -> None:
    assert clean.docs_dir == warehouse.parent / "quality-docs"
    assert clean.docs_index.is_file()
    assert "<html" in clean.docs_index.read_text(encoding="utf-8").lower()


def test_broken_marts_and_totals_are_reported(broken: tuple[Path, QualityResult]) -> None:
    _, result = broken
    assert not result.success
    failures = result.failures()
    assert len(failures) == 3, failures
    pue = next(f for f in failures if f.startswith("marts.fct_site_efficiency_daily"))
    assert "column_values_to_be_between(pue >= 1)" in pue
    assert "pue=0.5" in pue
    dup = next(f for f in failures if f.startswith("marts.fct_slo_daily"))
    assert "compound_columns_to_be_unique(service, site_id, date_utc)" in dup
    total = next(f for f in failures if f.startswith("reconciliation.invariants"))
    assert "chargeback_total_equals_parts" in total
    assert "1 of" in total
    assert result.suite("marts.fct_chargeback_monthly").success  # its own suite cannot see it
    assert (result.docs_dir / "index.html").is_file()


def test_cli_exits_1_with_one_line_per_failure(broken: tuple[Path, QualityResult]) -> None:
    db, _ = broken
    docs = db.parent / "cli-docs"
    outcome = CliRunner().invoke(app, ["quality", "check", "--db", str(db), "--docs", str(docs)])
    assert outcome.exit_code == 1, outcome.output
    lines = [ln for ln in outcome.output.splitlines() if ln.startswith("FAIL ")]
    assert len(lines) == 3, outcome.output
    assert any("fct_site_efficiency_daily" in ln and "pue >= 1" in ln for ln in lines)
    assert (docs / "index.html").is_file()


def test_a_missing_chargeback_is_skipped_and_large_tables_are_sampled(warehouse: Path) -> None:
    db = _corrupted(warehouse, "no-chargeback", "drop table fct_chargeback_monthly")
    result = run_checks(db, db.parent / "no-chargeback-docs", sample_rows=500)
    assert result.success, result.failures()
    assert "marts.fct_chargeback_monthly" not in {s.suite for s in result.suites}
    assert any("fct_chargeback_monthly: not built" in n for n in result.notes)
    recon = result.suite("reconciliation.invariants")
    assert [o.expectation for o in recon.outcomes if "chargeback" in o.expectation] == []
    # Deterministic sample: the first rows by key, and the summary says so.
    requests = result.suite("bronze.stg_request_log")
    assert requests.rows_validated == 500 < requests.rows_total
    assert any(
        n.startswith("stg_request_log: validated a sample, the first 500") for n in result.notes
    )
