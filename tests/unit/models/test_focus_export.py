"""`microdc export chargeback --format focus|xlsx` and `microdc export roi`, on the hand-made lake
of test_chargeback.py, and the FOCUS file through the FinOps Foundation's focus-validator.

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
import pytest

from pipeline.errors import ConfigError
from pipeline.lake import Lake
from pipeline.models.build import build
from pipeline.models.export import (
    CHARGEBACK_COLUMNS,
    FOCUS_COLUMNS,
    FOCUS_OPERATOR,
    ROI_COLUMNS,
    export_chargeback,
    export_roi,
)
from tests.unit.models.test_chargeback import (
    IDLE,
    NODE_CAPEX,
    SITE_CAPEX,
    land_rows,
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
    assert header == [name for name, _ in FOCUS_COLUMNS]
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
