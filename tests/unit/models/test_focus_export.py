"""`microdc export chargeback --format focus|xlsx` and `microdc export roi`, on the hand-made lake
of test_chargeback.py, and the FOCUS file through the FinOps Foundation's focus-validator. A
variant of that lake (`land_shared`) has shared infrastructure energy (meters that see IT load no
node reported) and a minute without a meter, for the __shared__ row and the design-PUE energy
under each shared policy.

focus-validator 1.0.0 (the newest on PyPI) only knows FOCUS <= 1.0; our file is FOCUS 1.2.

It cannot live in the project's environment, so it is not in pyproject.toml: it pins numpy<2,
pandas<3 and pytz<2024, and our pyarrow (26) refuses numpy<2 at import ("pyarrow requires NumPy
2.0 or newer"; pip does not see the clash, pyarrow does not declare numpy), so installing it into
.venv breaks every pyarrow import. On its own, a plain `pip install focus-validator==1.0.0` is
broken too: it resolves multimethod 2.x, whose API its pandera 0.17.2 predates (ImportError:
cannot import name 'overload'). It runs from a separate environment, `.venv-focus`, which
`make focus-env` builds (`make test` does it first) with focus-validator==1.0.0 and
'multimethod<2'; MICRODC_FOCUS_VALIDATOR_PYTHON may name another interpreter. Without one the
validator tests skip outside CI and fail under CI. They run its own CLI
(`python -m focus_validator.main --validate-version 1.0 --output-type unittest`) and
read its JUnit XML: 133 rules. The 16 that fail on our FOCUS 1.2
file, each with the reason:

Renamed in FOCUS 1.0 GA (the validator's "1.0" rule set still carries the 0.5 names), so the
column it looks for is absent from our file:
- Provider_Required           ProviderName since FOCUS 1.0 (we write ProviderName)
- Publisher_Required          PublisherName since FOCUS 1.0 (we write PublisherName)
- InvoiceIssuer_Required      InvoiceIssuerName since FOCUS 1.0 (we write InvoiceIssuerName)
  Their *_IsString and *_NotNull rules "pass" on the 1.2 file only because the validator skips
  the checks of an absent column, so a second run renames these three columns back to the
  validator's names, where all nine pass on our values.

Conditional columns the validator treats as mandatory (it has no applicability criteria): FOCUS
1.0 and 1.2 require them only when the provider supports the feature, and an internal micro-DC
chargeback has no commitment discounts, price list or SKUs, negotiated unit prices, per-resource
billing or tags, so the file leaves them out:
- CommitmentDiscountCategory_Required, CommitmentDiscountId_Required,
  CommitmentDiscountName_Required, CommitmentDiscountStatus_Required,
  CommitmentDiscountType_Required    only when commitment discounts are supported
- ListUnitPrice_Required             only with a public price list
- ContractedUnitPrice_Required       only with negotiated unit prices
- SkuId_Required, SkuPriceId_Required only with a SKU price list
- ResourceID_Required, ResourceName_Required, ResourceType_Required
                                     only when billing is per provisioned resource (and the
                                     validator spells it ResourceID; FOCUS 1.0+ says ResourceId)
- Tags_Required                      only when tagging is supported
The second run skips these 13 with the validator's own --override-file.

Every other rule passes on the file as written (the first run asserts the exact failing set):
BilledCost, EffectiveCost, ListCost, ContractedCost (decimal, not null), BillingAccountId/Name,
BillingCurrency (ISO 4217), Billing/ChargePeriodStart/End (UTC date-times), ChargeCategory,
ChargeClass, ChargeDescription, ChargeFrequency (enum), ConsumedQuantity/Unit, PricingCategory
(enum), PricingQuantity/Unit, RegionId/Name, ServiceCategory (enum), ServiceName, SubAccountId/Name.
The rules of absent columns pass vacuously, as above. A third run on a broken copy (a local-time
ChargePeriodStart, a lowercase currency) checks that the validator does look at the values.
Its quirk: it reads its ISO currency list from the relative path
focus_validator/utils/currency_codes.csv, so it runs with the package's parent as working folder.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from pipeline.contracts.topics import ENERGY_MINUTES, SITE_MINUTES
from pipeline.embedded.landing import EmbeddedLander
from pipeline.errors import ConfigError
from pipeline.lake import Lake
from pipeline.models.build import build
from pipeline.models.export import (
    CHARGEBACK_COLUMNS,
    FOCUS_COLUMNS,
    FOCUS_OPERATOR,
    FOCUS_UNALLOCATED,
    ROI_COLUMNS,
    export_chargeback,
    export_roi,
)
from tests.support import factories
from tests.unit.models.test_chargeback import (
    IDLE,
    M1,
    M2,
    M3,
    M4,
    NODE_CAPEX,
    ROWS,
    S1,
    SITE_CAPEX,
    e,
    land_rows,
    site_minute,
    small_fleet,
)

# FOCUS 1.2 mandatory columns (presence rules "CostAndUsage-D-0xx-M" of the FOCUS 1.2
# requirements model, FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec)
FOCUS_12_MANDATORY = {
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
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
}
# focus-validator 1.0.0 rules that fail on the FOCUS 1.2 file (see the module docstring)
RENAMED_SINCE_10 = {
    "Provider": "ProviderName",
    "Publisher": "PublisherName",
    "InvoiceIssuer": "InvoiceIssuerName",
}
NAMING_FAILURES = {f"{old}_Required" for old in RENAMED_SINCE_10}
CONDITIONAL_FAILURES = {
    "CommitmentDiscountCategory_Required",
    "CommitmentDiscountId_Required",
    "CommitmentDiscountName_Required",
    "CommitmentDiscountStatus_Required",
    "CommitmentDiscountType_Required",
    "ContractedUnitPrice_Required",
    "ListUnitPrice_Required",
    "ResourceID_Required",
    "ResourceName_Required",
    "ResourceType_Required",
    "SkuId_Required",
    "SkuPriceId_Required",
    "Tags_Required",
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_chargeback's lake (bog1 and sao1, March and April 2026), idle policy `separate`."""
    root = tmp_path_factory.mktemp("focus")
    lake = land_rows(Lake(root / "lake"))
    db = root / "w.duckdb"
    build(lake, small_fleet("separate"), db)
    return db


SHARED = "__shared__"
# --- a lake with shared infrastructure energy ---------------------------------------------------
# test_chargeback's rows, but two meters see IT load no node reported (a switch, a storage shelf)
# at PUE 1.5: bog1 at M2 40 Wh of IT -> 60 Wh facility, sao1 at S1 10 Wh -> 15 Wh; and bog1 has
# one minute without a meter, D1 (18:01 local, 0.25 USD/kWh): payments' 20 Wh of IT x design
# PUE 1.6 = 32 Wh of design-PUE energy.
SHARED_IT_WH = {(M2, "bog1"): 40.0, (S1, "sao1"): 10.0}
D1 = M2.replace(minute=1)
DESIGN_ROW = e(D1, "checkout-api", "payments", 10, 20.0, 32.0, 6.4, 0.0)


def land_shared(lake: Lake) -> Lake:
    lander = EmbeddedLander(lake)
    for record in [*ROWS, DESIGN_ROW]:
        lander.add_output(ENERGY_MINUTES, record, 0)
    for at, site in [(S1, "sao1"), (M1, "bog1"), (M2, "bog1"), (M3, "bog1"), (M4, "bog1")]:
        total = sum(r.facility_energy_wh for r in ROWS if r.window_start == at)
        meter = site_minute(at, site, total, 0.5 if at == M1 else 0.0)
        extra = SHARED_IT_WH.get((at, site), 0.0)
        assert meter.it_energy_wh is not None and meter.facility_energy_wh is not None
        meter = msgspec.structs.replace(
            meter,
            it_energy_wh=meter.it_energy_wh + extra,
            facility_energy_wh=meter.facility_energy_wh + extra * 1.5,
        )
        lander.add_output(SITE_MINUTES, meter, 0)
    design = factories.site_minute(
        D1, "bog1", node_it_energy_wh=20.0, pue=1.6, pue_source="design"
    )  # no meter reading: facility and IT energy null
    lander.add_output(SITE_MINUTES, design, 0)
    lander.close()
    return lake


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return land_shared(Lake(tmp_path_factory.mktemp("focus-shared") / "lake"))


def shared_focus(lake: Lake, root: Path, shared_policy: str) -> tuple[Path, list[dict[str, str]]]:
    """The warehouse built from `lake` with idle policy separate and `shared_policy`, and its
    March FOCUS rows."""
    db = root / f"w-{shared_policy}.duckdb"
    build(lake, small_fleet("separate", shared_policy=shared_policy), db)
    out = root / f"focus-{shared_policy}.csv"
    export_chargeback(db, "2026-03", "focus", out)
    return db, read_csv(out)


@pytest.fixture(scope="module")
def focus_csv(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("focus-out") / "focus-2026-03.csv"
    assert export_chargeback(warehouse, "2026-03", "focus", out) == 5
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def mart(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_focus_rows_carry_every_mandatory_column_and_the_chargeback_totals(
    warehouse: Path, focus_csv: Path
) -> None:
    rows = read_csv(focus_csv)
    header = list(rows[0])
    assert header == list(FOCUS_COLUMNS)
    assert set(header) >= FOCUS_12_MANDATORY
    assert all(not h.startswith("x_") or h[2:3].isupper() for h in header)
    # one row per team x site, ordered by site and team: bog1's four rows, then sao1's idle row
    assert [(r["RegionId"], r["SubAccountId"]) for r in rows] == [
        ("bog1", IDLE),
        ("bog1", "identity"),
        ("bog1", "payments"),
        ("bog1", "search"),
        ("sao1", IDLE),
    ]
    totals = {
        (site, team): total
        for site, team, total in mart(
            warehouse,
            "select site_id, team, cast(round(total_usd, 6) as decimal(18, 6))"
            " from fct_chargeback_monthly where local_month = date '2026-03-01'",
        )
    }
    for r in rows:
        total = totals[r["RegionId"], r["SubAccountId"]]
        for column in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
            assert Decimal(r[column]) == total, column
        assert r["BillingCurrency"] == "USD"
        assert r["ChargeCategory"] == "Usage"
        assert r["ChargeClass"] == ""
        assert r["ServiceCategory"] == "Compute"
        assert r["ServiceName"] == f"Micro data center {r['RegionId']}"
        assert r["InvoiceIssuerName"] == r["ProviderName"] == r["PublisherName"] == FOCUS_OPERATOR
        assert r["PricingUnit"] == r["ConsumedUnit"] == "kWh"
        assert r["PricingQuantity"] == r["ConsumedQuantity"] == r["x_FacilityEnergyKwh"]
        assert r["x_IdlePolicy"] == "separate"
        assert r["x_LocalMonth"] == "2026-03"
        parts = ("x_EnergyCostUsd", "x_CarbonCostUsd", "x_CapexShareUsd", "x_OpexShareUsd")
        assert sum(Decimal(r[p]) for p in parts) == pytest.approx(Decimal(r["BilledCost"]))
    by_team = {(r["RegionId"], r["SubAccountId"]): r for r in rows}
    pay = by_team["bog1", "payments"]
    # test_chargeback: energy 0.08925 + carbon 0.0086 + capex 0.675 + opex 1.35 = 2.12285 USD
    assert pay["BilledCost"] == "2.122850"
    assert (pay["BillingAccountId"], pay["BillingAccountName"]) == (
        "CC-1010",
        "Cost center CC-1010",
    )
    assert (pay["SubAccountName"], pay["SubAccountType"]) == ("payments", "Team")
    assert (pay["RegionName"], pay["x_Requests"]) == ("Bogotá", "40")
    # payments in March: IT 0.300 kWh, facility 0.450 kWh, 0.080 kg operational, 0.006 embodied
    assert pay["x_ItEnergyKwh"] == "0.300000"
    assert pay["x_FacilityEnergyKwh"] == "0.450000"
    assert pay["x_OperationalKgCO2e"] == "0.080000"
    assert pay["x_EmbodiedKgCO2e"] == "0.006000"
    assert pay["x_IdleFacilityEnergyKwh"] == "0.000000"
    assert "team payments" in pay["ChargeDescription"]
    idle = by_team["bog1", IDLE]
    # the idle row has no cost center: it is billed to UNALLOCATED; 5.6292 USD in test_chargeback
    assert idle["BillingAccountId"] == "UNALLOCATED"
    assert idle["SubAccountName"] == "Idle capacity"
    assert idle["BilledCost"] == "5.629200"
    assert idle["x_IdleFacilityEnergyKwh"] == idle["x_FacilityEnergyKwh"] == "1.190000"
    assert "not attributed to a team" in idle["ChargeDescription"]


def test_focus_bills_the_shared_infrastructure_to_unallocated(
    shared_lake: Lake, tmp_path: Path
) -> None:
    db, rows = shared_focus(shared_lake, tmp_path, "separate")
    assert [(r["RegionId"], r["SubAccountId"]) for r in rows] == [
        ("bog1", IDLE),
        ("bog1", SHARED),
        ("bog1", "identity"),
        ("bog1", "payments"),
        ("bog1", "search"),
        ("sao1", IDLE),
        ("sao1", SHARED),
    ]
    by_team = {(r["RegionId"], r["SubAccountId"]): r for r in rows}
    want = {
        (site, team): (shared, design, total)
        for site, team, shared, design, total in mart(
            db,
            "select site_id, team, cast(round(shared_facility_energy_kwh, 6) as decimal(18, 6)),"
            " cast(round(design_pue_facility_energy_kwh, 6) as decimal(18, 6)),"
            " cast(round(total_usd, 6) as decimal(18, 6))"
            " from fct_chargeback_monthly where local_month = date '2026-03-01'",
        )
    }
    for key, r in by_team.items():
        shared, design, total = want[key]
        assert Decimal(r["x_SharedFacilityEnergyKwh"]) == shared, key
        assert Decimal(r["x_DesignPueFacilityEnergyKwh"]) == design, key
        assert Decimal(r["BilledCost"]) == total, key
        assert (r["x_IdlePolicy"], r["x_SharedPolicy"]) == ("separate", "separate")
    bog = by_team["bog1", SHARED]
    # 40 Wh of IT no node reported x PUE 1.5 = 60 Wh, all of it the shared row's
    assert bog["x_SharedFacilityEnergyKwh"] == bog["x_FacilityEnergyKwh"] == "0.060000"
    assert bog["PricingQuantity"] == bog["ConsumedQuantity"] == "0.060000"
    assert bog["x_ItEnergyKwh"] == "0.040000"
    assert bog["x_IdleFacilityEnergyKwh"] == bog["x_DesignPueFacilityEnergyKwh"] == "0.000000"
    assert bog["x_Requests"] == "0"
    assert by_team["sao1", SHARED]["x_SharedFacilityEnergyKwh"] == "0.015000"
    # energy 0.060 kWh x 0.25 = 0.015; carbon 60 Wh x 200 g/kWh = 12 g x 0.1 USD/kg = 0.0012;
    # capex + opex: March has 4 bog1 minutes with data (1 + 2 USD each), shared by facility
    # energy: 2.0 kWh of test_chargeback + 0.060 shared + 0.032 design-PUE = 2.092 kWh
    assert Decimal(bog["x_EnergyCostUsd"]) == Decimal("0.015000")
    assert Decimal(bog["x_CarbonCostUsd"]) == Decimal("0.001200")
    assert float(bog["BilledCost"]) == pytest.approx(0.015 + 0.0012 + 12 * 0.060 / 2.092, abs=1e-6)
    for r in (bog, by_team["sao1", SHARED]):
        site, city = r["RegionId"], r["RegionName"]
        assert r["BillingAccountId"] == FOCUS_UNALLOCATED
        assert r["BillingAccountName"] == "Unallocated shared infrastructure"
        assert r["SubAccountName"] == "Shared infrastructure"
        assert r["SubAccountType"] == "Team"
        assert r["ChargeDescription"] == (
            f"Shared infrastructure of micro data center {site} ({city}), 2026-03: metered IT"
            " load no server reported (network, storage, power distribution) and its cooling"
            " overhead, not attributed to a team (shared policy separate): energy, carbon,"
            " capex and opex"
        )
    idle = by_team["bog1", IDLE]
    assert (idle["BillingAccountId"], idle["BillingAccountName"]) == (
        FOCUS_UNALLOCATED,
        "Unallocated idle capacity",
    )
    assert idle["SubAccountName"] == "Idle capacity"
    assert idle["x_SharedFacilityEnergyKwh"] == "0.000000"
    pay = by_team["bog1", "payments"]
    assert pay["ChargeDescription"] == (
        "Chargeback of team payments at micro data center bog1 (Bogotá), 2026-03: shares of"
        " energy, carbon, capex and opex (idle policy separate, shared policy separate)"
    )
    # the minute without a meter: payments' 20 Wh x design PUE 1.6, shown apart
    assert pay["x_DesignPueFacilityEnergyKwh"] == "0.032000"
    assert pay["x_SharedFacilityEnergyKwh"] == "0.000000"
    assert_reconciles(db, rows)


def assert_reconciles(db: Path, rows: list[dict[str, str]]) -> None:
    """Per site-month, the FOCUS rows bill the mart's total and the facility meter's energy."""
    totals = dict(
        mart(
            db,
            "select site_id, sum(total_usd) from fct_chargeback_monthly"
            " where local_month = date '2026-03-01' group by site_id",
        )
    )
    meter = dict(
        mart(
            db,
            "select site_id, expected_facility_energy_kwh from fct_meter_reconciliation_monthly"
            " where local_month = date '2026-03-01'",
        )
    )
    for site in ("bog1", "sao1"):
        mine = [r for r in rows if r["RegionId"] == site]
        billed = sum(Decimal(r["BilledCost"]) for r in mine)
        # each row is rounded to 6 places: at most half a millionth off per row
        assert float(billed) == pytest.approx(totals[site], abs=1e-6 * len(mine))
        kwh = sum(Decimal(r["ConsumedQuantity"]) for r in mine)
        assert float(kwh) == pytest.approx(meter[site], abs=1e-6 * len(mine))
    # bog1: 2.0 kWh of node rows + 0.060 shared + 0.032 design PUE; sao1: 0.1 + 0.015
    assert meter == pytest.approx({"bog1": 2.092, "sao1": 0.115})


@pytest.mark.parametrize("policy", ["weighted", "even"])
def test_focus_team_rows_carry_the_shared_energy_of_a_spreading_policy(
    shared_lake: Lake, tmp_path: Path, policy: str
) -> None:
    db, rows = shared_focus(shared_lake, tmp_path, policy)
    # no __shared__ row where teams are there to carry it; sao1 has none: it keeps its own
    assert [(r["RegionId"], r["SubAccountId"]) for r in rows] == [
        ("bog1", IDLE),
        ("bog1", "identity"),
        ("bog1", "payments"),
        ("bog1", "search"),
        ("sao1", IDLE),
        ("sao1", SHARED),
    ]
    teams = [r for r in rows if r["RegionId"] == "bog1" and r["SubAccountId"] != IDLE]
    assert all(Decimal(r["x_SharedFacilityEnergyKwh"]) > 0 for r in teams)
    assert float(sum(Decimal(r["x_SharedFacilityEnergyKwh"]) for r in teams)) == pytest.approx(
        0.060, abs=1e-5
    )
    if policy == "even":
        assert {r["x_SharedFacilityEnergyKwh"] for r in teams} == {"0.020000"}
    for r in teams:
        assert r["x_SharedPolicy"] == policy
        assert f"(idle policy separate, shared policy {policy})" in r["ChargeDescription"]
        assert r["BillingAccountName"].startswith("Cost center ")
    idle = next(r for r in rows if r["SubAccountId"] == IDLE and r["RegionId"] == "bog1")
    assert idle["x_SharedFacilityEnergyKwh"] == "0.000000"  # the idle row takes no shared part
    assert f"(shared policy {policy})" in rows[-1]["ChargeDescription"]
    assert rows[-1]["BillingAccountName"] == "Unallocated shared infrastructure"
    assert_reconciles(db, rows)


def test_focus_periods_are_the_site_local_month_in_utc(focus_csv: Path, tmp_path: Path) -> None:
    rows = read_csv(focus_csv)
    periods = {
        r["RegionId"]: (
            r["BillingPeriodStart"],
            r["BillingPeriodEnd"],
            r["ChargePeriodStart"],
            r["ChargePeriodEnd"],
        )
        for r in rows
    }
    # Bogotá is UTC-5: local March = [03-01 05:00Z, 04-01 05:00Z); São Paulo UTC-3: 03:00Z
    bog = ("2026-03-01T05:00:00Z", "2026-04-01T05:00:00Z")
    sao = ("2026-03-01T03:00:00Z", "2026-04-01T03:00:00Z")
    assert periods == {"bog1": bog + bog, "sao1": sao + sao}


def test_focus_april_has_only_the_minute_after_local_midnight(
    warehouse: Path, tmp_path: Path
) -> None:
    out = tmp_path / "focus-2026-04.csv"
    # 2026-04-01T05:00Z is 00:00 in Bogotá: April's payments row and its idle row, nothing else
    assert export_chargeback(warehouse, "2026-04", "focus", out) == 2
    rows = read_csv(out)
    assert [r["SubAccountId"] for r in rows] == [IDLE, "payments"]
    assert {r["BillingPeriodStart"] for r in rows} == {"2026-04-01T05:00:00Z"}
    assert {r["BillingPeriodEnd"] for r in rows} == {"2026-05-01T05:00:00Z"}
    assert rows[1]["x_Requests"] == "5"


def test_xlsx_round_trips_with_openpyxl(warehouse: Path, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    out = tmp_path / "cb.xlsx"
    assert export_chargeback(warehouse, "2026-03", "xlsx", out) == 5
    assert not list(tmp_path.glob(".*.tmp"))
    ws = load_workbook(out).active
    assert ws.title == "chargeback"
    assert ws.freeze_panes == "E2"  # header row and month, month_start, site_id, team
    values = list(ws.iter_rows(values_only=True))
    names = [name for name, _ in CHARGEBACK_COLUMNS]
    assert list(values[0]) == names
    assert all(ws.cell(row=1, column=i).font.b for i in range(1, len(names) + 1))
    got = [dict(zip(names, row, strict=True)) for row in values[1:]]
    assert [(r["site_id"], r["team"]) for r in got] == [
        ("bog1", IDLE),
        ("bog1", "identity"),
        ("bog1", "payments"),
        ("bog1", "search"),
        ("sao1", IDLE),
    ]
    pay = got[2]
    assert pay["month"] == "2026-03"
    assert pay["month_start"].date() == date(2026, 3, 1)  # a date cell, not text
    assert pay["requests"] == 40 and isinstance(pay["requests"], int)
    assert isinstance(pay["total_usd"], float)
    assert pay["total_usd"] == pytest.approx(2.12285, abs=1e-9)
    assert got[0]["cost_per_1k_requests"] is None  # idle: no requests, an empty cell
    column = {name: i for i, name in enumerate(names, start=1)}
    row3 = {name: ws.cell(row=4, column=i) for name, i in column.items()}  # payments
    assert row3["total_usd"].number_format == "0.000000"
    assert row3["requests"].number_format == "0"
    assert row3["month_start"].number_format == "yyyy-mm-dd"
    assert row3["total_usd"].data_type == "n"


def test_roi_export_columns_and_values(warehouse: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from openpyxl import load_workbook

    names = [name for name, _ in ROI_COLUMNS]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        mart_columns = [d[0] for d in con.execute("select * from fct_roi_site limit 0").description]
        want = con.execute(
            "select site_id, investment_usd, pilot_microdc_usd, requests from fct_roi_site"
            " order by site_id"
        ).fetchall()
    assert sorted(names) == sorted(mart_columns)  # every column of the mart, none invented
    csv_out = tmp_path / "roi.csv"
    assert export_roi(warehouse, "csv", csv_out) == 2
    rows = read_csv(csv_out)
    assert list(rows[0]) == names
    assert [r["site_id"] for r in rows] == ["bog1", "sao1"]
    bog = rows[0]
    # bog1: site capex 2,678,400 + its node n01 1,339,200 (the other nodes cost 0)
    assert bog["investment_usd"] == f"{SITE_CAPEX + NODE_CAPEX:.6f}" == "4017600.000000"
    for (site, investment, pilot, requests), row in zip(want, rows, strict=True):
        assert row["site_id"] == site
        assert Decimal(row["investment_usd"]) == Decimal(str(investment)).quantize(Decimal("1e-6"))
        assert Decimal(row["pilot_microdc_usd"]) == pytest.approx(
            Decimal(str(pilot)), abs=Decimal("1e-6")
        )
        assert int(row["requests"]) == requests
    # bog1's requests: 40 + 70 in March, 5 in April (all of them, the pilot spans both months)
    assert bog["requests"] == "115"
    assert all(len(v.split(".")[1]) == 6 for k, v in bog.items() if "." in v and k != "site_id")
    parquet = tmp_path / "roi.parquet"
    assert export_roi(warehouse, "parquet", parquet) == 2
    table = pq.read_table(parquet)
    assert table.column_names == names
    assert str(table.schema.field("roi_12m_pct").type) == "decimal128(18, 6)"
    assert str(table.schema.field("requests").type) == "int64"
    xlsx = tmp_path / "roi.xlsx"
    assert export_roi(warehouse, "xlsx", xlsx) == 2
    ws = load_workbook(xlsx).active
    assert (ws.title, ws.freeze_panes) == ("roi", "B2")
    values = list(ws.iter_rows(values_only=True))
    assert list(values[0]) == names
    assert values[1][names.index("investment_usd")] == pytest.approx(4_017_600.0)
    with pytest.raises(ConfigError, match="expected one of csv, parquet, xlsx"):
        export_roi(warehouse, "focus", csv_out)  # type: ignore[arg-type]


# --- focus-validator ----------------------------------------------------------------------------


def validator_python() -> tuple[str, Path]:
    """The interpreter that has focus_validator, and the folder holding the package.

    MICRODC_FOCUS_VALIDATOR_PYTHON names it; else the repository's `.venv-focus` (`make
    focus-env`, which `make test` runs); else this interpreter if it has the package; else the
    tests skip - except under CI, where they fail.
    """
    local = Path(__file__).resolve().parents[3] / ".venv-focus" / "bin" / "python"
    python = os.environ.get("MICRODC_FOCUS_VALIDATOR_PYTHON") or (
        str(local) if local.exists() else sys.executable
    )
    probe = "import focus_validator, os; print(os.path.dirname(focus_validator.__file__))"
    try:
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        pytest.fail(f"MICRODC_FOCUS_VALIDATOR_PYTHON={python}: {exc}")
    if done.returncode != 0:
        if "MICRODC_FOCUS_VALIDATOR_PYTHON" in os.environ or os.environ.get("CI"):
            pytest.fail(
                f"{python} cannot import focus_validator (run `make focus-env`): "
                f"{done.stderr[-1000:]}"
            )
        pytest.skip(
            "focus-validator is not installed: it cannot live in the project's environment"
            " (see the module docstring); set MICRODC_FOCUS_VALIDATOR_PYTHON"
        )
    return python, Path(done.stdout.strip())


def run_validator(
    data: Path, tmp_path: Path, overrides: frozenset[str] = frozenset()
) -> dict[str, str]:
    """focus-validator's CLI on `data` -> {rule id: passed | failed | skipped | errored}."""
    python, package = validator_python()
    report = tmp_path / f"{data.stem}.xml"
    command = [
        python,
        "-m",
        "focus_validator.main",
        "--data-file",
        str(data),
        "--validate-version",
        "1.0",
        "--output-type",
        "unittest",
        "--output-destination",
        str(report),
    ]
    if overrides:
        override_file = tmp_path / f"{data.stem}-overrides.yaml"
        override_file.write_text("overrides:\n" + "".join(f"  - {r}\n" for r in sorted(overrides)))
        command += ["--override-file", str(override_file)]
    # it reads its currency list from the relative path focus_validator/utils/currency_codes.csv
    done = subprocess.run(
        command, cwd=package.parent, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    statuses: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        rule = case.attrib["name"].split(" :: ")[0]
        status = "passed"
        for tag, name in (("failure", "failed"), ("skipped", "skipped"), ("error", "errored")):
            if case.find(tag) is not None:
                status = name
        statuses[rule] = status
    return statuses


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_focus_validator_on_the_focus_12_file(focus_csv: Path, tmp_path: Path) -> None:
    statuses = run_validator(focus_csv, tmp_path)
    assert len(statuses) == 133  # its whole 1.0 rule set ran
    failed = {rule for rule, status in statuses.items() if status == "failed"}
    assert failed == NAMING_FAILURES | CONDITIONAL_FAILURES
    assert {
        rule for rule, status in statuses.items() if status not in ("passed", "failed")
    } == set()
    for rule in (
        "BilledCost_IsDecimal",
        "BilledCost_NotNull",
        "EffectiveCost_IsDecimal",
        "ListCost_NotNull",
        "ContractedCost_IsDecimal",
        "BillingCurrency_IsCurrencyCode",
        "BillingPeriodStart_IsDateTime",
        "ChargePeriodEnd_IsDateTime",
        "ChargeFrequency_Enum",
        "PricingCategory_Enum_1.0",
        "ServiceCategory_Enum",
        "SubAccountId_IsString",
        "RegionName_Required",
    ):
        assert statuses[rule] == "passed", rule


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_focus_validator_on_the_shared_infrastructure_rows(
    shared_lake: Lake, tmp_path: Path
) -> None:
    # the __shared__ rows and the design-PUE energy break no rule the team rows keep
    _, rows = shared_focus(shared_lake, tmp_path, "separate")
    assert sum(r["SubAccountId"] == SHARED for r in rows) == 2
    statuses = run_validator(tmp_path / "focus-separate.csv", tmp_path)
    assert {rule for rule, status in statuses.items() if status == "failed"} == (
        NAMING_FAILURES | CONDITIONAL_FAILURES
    )
    assert {rule for rule, status in statuses.items() if status not in ("passed", "failed")} == (
        set()
    )


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_focus_validator_on_a_validator_compatible_copy(focus_csv: Path, tmp_path: Path) -> None:
    # rename the three columns FOCUS 1.0 renamed back to the names the validator knows, and tell
    # it (its own --override-file) to skip the rules listed in the module docstring
    rows = read_csv(focus_csv)
    back = {new: old for old, new in RENAMED_SINCE_10.items()}
    copy = tmp_path / "focus-validator-names.csv"
    with copy.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[back.get(name, name) for name in rows[0]])
        writer.writeheader()
        for r in rows:
            writer.writerow({back.get(k, k): v for k, v in r.items()})
    skipped = frozenset(CONDITIONAL_FAILURES)
    statuses = run_validator(copy, tmp_path, skipped)
    assert {rule for rule, status in statuses.items() if status == "failed"} == set()
    assert {rule for rule, status in statuses.items() if status == "skipped"} == skipped
    assert {rule for rule, status in statuses.items() if status == "errored"} == set()
    for old in RENAMED_SINCE_10:
        for check in ("Required", "IsString", "NotNull"):
            assert statuses[f"{old}_{check}"] == "passed"


def test_export_rejects_an_unknown_format(warehouse: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected one of csv, parquet, xlsx, focus"):
        export_chargeback(warehouse, "2026-03", "json", tmp_path / "x")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_focus_validator_sees_broken_values(focus_csv: Path, tmp_path: Path) -> None:
    # a negative control: the rules above pass because the values are right, not vacuously
    rows = read_csv(focus_csv)
    rows[0]["ChargePeriodStart"] = "2026-03-01T00:00:00-05:00"  # local time, not UTC
    rows[1]["BillingCurrency"] = "usd"
    broken = tmp_path / "focus-broken.csv"
    with broken.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    statuses = run_validator(broken, tmp_path)
    failed = {rule for rule, status in statuses.items() if status == "failed"}
    assert failed - NAMING_FAILURES - CONDITIONAL_FAILURES == {
        "ChargePeriodStart_IsDateTime",
        "BillingCurrency_IsCurrencyCode",
    }
