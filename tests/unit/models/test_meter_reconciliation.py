"""The chargeback reconciles with the facility meter (issue 16), on a hand-made lake whose every
number is worked out below: a switch drawing a constant 100 W that no node reports, for each
shared policy x each idle policy; a minute without a meter; a minute whose meter IT reading is
below the node sum; a month boundary in local time.

Site bog1 (America/Bogota, UTC-5), demo tariff in local time: 18:00-22:00 0.25, 22:00-24:00
0.19, 00:00-06:00 0.14 USD/kWh. PUE 1.5 wherever the meter counts, design PUE 1.6 where not;
grid 200 gCO2e/kWh, no on-site renewables. The switch: 100 W x 60 s = 100/60 Wh of IT energy a
minute, x PUE 1.5 = 2.5 Wh of facility energy.

| minute (UTC)       | local            | meter                   | node IT Wh (pay/search/idle) |
|--------------------|------------------|-------------------------|------------------------------|
| A 2026-03-10 23:00 | 18:00, 0.25      | IT 121.667, fac 182.5   | 60 / 30 / 30                 |
| B 2026-03-10 23:01 | 18:01, 0.25      | none (design PUE 1.6)   | 60 / - / 30                  |
| C 2026-03-10 23:02 | 18:02, 0.25      | IT 110 < nodes 120, 165 | 60 / 30 / 30                 |
| D 2026-04-01 04:59 | Mar 31 23:59 0.19| IT 121.667, fac 182.5   | 60 / 30 / 30                 |
| E 2026-04-01 05:00 | Apr 1 00:00 0.14 | IT 91.667, fac 137.5    | 60 / - / 30                  |

Facility Wh of the rows after the meter (node IT x PUE; C scaled by 165 / 180 = 11/12):
- March (A, B, C, D): payments 90 + 96 + 82.5 + 90 = 358.5; search 45 + 41.25 + 45 = 131.25;
  idle 45 + 48 + 41.25 + 45 = 179.25; shared (A, D) 2.5 + 2.5 = 5. Sum 674 = the meter's
  182.5 + 165 + 182.5 = 530 plus design-PUE energy 144 (B: 90 Wh IT x 1.6).
- April (E): payments 90, idle 45, shared 2.5; sum 137.5 = the meter's.
Energy cost (Wh x tariff / 1000, USD):
- March: payments 268.5 x 0.25 + 90 x 0.19 = 84.225 -> 0.084225; search 86.25 x 0.25 + 45 x
  0.19 = 30.1125 -> 0.0301125; idle 134.25 x 0.25 + 45 x 0.19 = 42.1125 -> 0.0421125; shared
  2.5 x 0.25 + 2.5 x 0.19 = 1.1 -> 0.0011. Sum 0.15755 = the meter's (182.5 + 144 + 165) x 0.25
  + 182.5 x 0.19 = 122.875 + 34.675 = 157.55 Wh-USD.
- April: x 0.14: payments 0.0126, idle 0.0063, shared 0.00035.
Shared operational carbon: 2.5 Wh x 200 g/kWh = 0.5 g a minute (March 1 g, April 0.5 g).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from pipeline.contracts.topics import ENERGY_MINUTES, SITE_MINUTES
from pipeline.embedded.landing import EmbeddedLander
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build
from pipeline.quality import run_checks
from tests.support.factories import energy_minute, site_minute

A = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
B = datetime(2026, 3, 10, 23, 1, tzinfo=UTC)
C = datetime(2026, 3, 10, 23, 2, tzinfo=UTC)
D = datetime(2026, 4, 1, 4, 59, tzinfo=UTC)
E = datetime(2026, 4, 1, 5, 0, tzinfo=UTC)
NODE = "bog1-r1-n01"
IDLE, SHARED = "__idle__", "__shared__"
SWITCH_IT_WH = 100.0 / 60.0  # 100 W for 60 s
POLICIES = ("separate", "weighted", "even")

MARCH, APRIL = "2026-03-01", "2026-04-01"
#: (month, team): (facility Wh, energy cost USD) before any policy (see the module docstring)
OWN = {
    (MARCH, "payments"): (358.5, 0.084225),
    (MARCH, "search"): (131.25, 0.0301125),
    (MARCH, IDLE): (179.25, 0.0421125),
    (MARCH, SHARED): (5.0, 0.0011),
    (APRIL, "payments"): (90.0, 0.0126),
    (APRIL, IDLE): (45.0, 0.0063),
    (APRIL, SHARED): (2.5, 0.00035),
}
METER = {MARCH: (530.0, 144.0, 0.15755), APRIL: (137.5, 0.0, 0.01925)}  # metered, design, USD


def _rows(at: datetime, it: dict[str, float], pue: float, source: str) -> list[Any]:
    """The stream's rows of a minute: IT x PUE each (it knows nothing of the meter's gap)."""
    teams = {"checkout-api": "payments", "catalog-search": "search", IDLE: IDLE}
    out = []
    for service, team in teams.items():
        if service not in it:
            continue
        out.append(
            energy_minute(
                at, NODE, service, team,
                it_energy_wh=it[service], facility_energy_wh=it[service] * pue,
                operational_gco2e=it[service] * pue / 1000 * 200.0,
                pue=pue, pue_source=source, requests=0 if service == IDLE else 10,
            )
        )  # fmt: skip
    return out


def _meter(at: datetime, node_it: float, it: float | None, fac: float | None, pue: float,
           source: str) -> Any:  # fmt: skip
    return site_minute(
        at, "bog1", facility_energy_wh=fac, it_energy_wh=it, node_it_energy_wh=node_it,
        pue=pue, pue_source=source,
    )  # fmt: skip


def land(lake: Lake) -> Lake:
    full = {"checkout-api": 60.0, "catalog-search": 30.0, IDLE: 30.0}
    small = {"checkout-api": 60.0, IDLE: 30.0}
    lander = EmbeddedLander(lake)
    minutes = [
        (A, full, 1.5, "metered", _meter(A, 120, 120 + SWITCH_IT_WH, 182.5, 1.5, "metered")),
        (B, small, 1.6, "design", _meter(B, 90, None, None, 1.6, "design")),
        # the meter's IT below the node sum: the stream's PUE is 165 / 110 = 1.5 all the same
        (C, full, 1.5, "metered", _meter(C, 120, 110.0, 165.0, 1.5, "metered")),
        (D, full, 1.5, "metered", _meter(D, 120, 120 + SWITCH_IT_WH, 182.5, 1.5, "metered")),
        (E, small, 1.5, "metered", _meter(E, 90, 90 + SWITCH_IT_WH, 137.5, 1.5, "metered")),
    ]
    for at, it, pue, source, meter in minutes:
        for record in _rows(at, it, pue, source):
            lander.add_output(ENERGY_MINUTES, record, 0)
        lander.add_output(SITE_MINUTES, meter, 0)
    lander.close()
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return land(Lake(tmp_path_factory.mktemp("meter") / "lake"))


@pytest.fixture(scope="module")
def warehouse(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """warehouse(idle, shared) -> a read-only connection to a warehouse built with them."""
    built: dict[tuple[str, str], Path] = {}
    connections: list[duckdb.DuckDBPyConnection] = []

    def get(idle: str, shared: str) -> duckdb.DuckDBPyConnection:
        if (idle, shared) not in built:
            db = tmp_path_factory.mktemp(f"w-{idle}-{shared}") / "w.duckdb"
            fleet = msgspec.structs.replace(load_fleet(), idle_policy=idle, shared_policy=shared)
            build(lake, fleet, db)
            built[idle, shared] = db
        con = duckdb.connect(str(built[idle, shared]), read_only=True)
        connections.append(con)
        return con

    yield get
    for con in connections:
        con.close()


def chargeback(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, Any]]:
    cur = con.execute("select * from fct_chargeback_monthly where site_id = 'bog1'")
    names = [d[0] for d in cur.description]
    out = {}
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        out[(row["local_month"].isoformat(), row["team"])] = row
    return out


def allocated(idle: str, shared: str) -> dict[tuple[str, str], dict[str, float]]:
    """The expected rows: each team's own energy, plus its part of the idle and the shared pool
    (by attributed facility energy, or evenly); a `separate` pool keeps its own row."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for month in (MARCH, APRIL):
        teams = {t: OWN[m, t] for (m, t) in OWN if m == month and t not in (IDLE, SHARED)}
        attributed = sum(wh for wh, _ in teams.values())
        for team, (wh, usd) in teams.items():
            out[month, team] = {"wh": wh, "usd": usd, "idle_wh": 0.0, "shared_wh": 0.0}
        for pool, policy in ((IDLE, idle), (SHARED, shared)):
            pool_wh, pool_usd = OWN[month, pool]
            if policy == "separate":
                out[month, pool] = {
                    "wh": pool_wh,
                    "usd": pool_usd,
                    "idle_wh": pool_wh if pool == IDLE else 0.0,
                    "shared_wh": pool_wh if pool == SHARED else 0.0,
                }
                continue
            for team, (wh, _) in teams.items():
                part = wh / attributed if policy == "weighted" else 1 / len(teams)
                row = out[month, team]
                row["wh"] += part * pool_wh
                row["usd"] += part * pool_usd
                row["idle_wh" if pool == IDLE else "shared_wh"] += part * pool_wh
    return out


@pytest.mark.parametrize("shared", POLICIES)
@pytest.mark.parametrize("idle", POLICIES)
def test_every_idle_and_shared_policy_charges_the_meter_exactly_once(
    warehouse: Any, idle: str, shared: str
) -> None:
    got = chargeback(warehouse(idle, shared))
    want = allocated(idle, shared)
    assert got.keys() == want.keys()
    for key, row in want.items():
        g = got[key]
        assert (g["idle_policy"], g["shared_policy"]) == (idle, shared)
        assert g["facility_energy_kwh"] == pytest.approx(row["wh"] / 1000, rel=1e-12), key
        assert g["energy_cost_usd"] == pytest.approx(row["usd"], rel=1e-12), key
        assert g["idle_facility_energy_kwh"] == pytest.approx(row["idle_wh"] / 1000, rel=1e-12)
        assert g["shared_facility_energy_kwh"] == pytest.approx(row["shared_wh"] / 1000, rel=1e-12)
    for month, (metered, design, usd) in METER.items():
        rows = [r for (m, _), r in got.items() if m == month]
        # the meter plus design-PUE energy, to the Wh; what the utility bills, to the cent
        assert sum(r["facility_energy_kwh"] for r in rows) == pytest.approx(
            (metered + design) / 1000, rel=1e-12
        )
        assert sum(r["design_pue_facility_energy_kwh"] for r in rows) == pytest.approx(
            design / 1000, rel=1e-12, abs=1e-15
        )
        assert round(sum(r["energy_cost_usd"] for r in rows), 2) == round(usd, 2)
        assert sum(r["energy_cost_usd"] for r in rows) == pytest.approx(usd, rel=1e-12)


def test_weighted_and_separate_by_hand(warehouse: Any) -> None:
    """One combination spelled out: idle separate, shared weighted (OpenCost #1124's trap is
    the idle row taking a part of the shared cost too, so the shared kWh count twice)."""
    got = chargeback(warehouse("separate", "weighted"))
    # March attributed facility: payments 358.5, search 131.25 = 489.75 Wh
    pay, search = got[MARCH, "payments"], got[MARCH, "search"]
    assert pay["shared_facility_energy_kwh"] * 1000 == pytest.approx(5 * 358.5 / 489.75)
    assert search["shared_facility_energy_kwh"] * 1000 == pytest.approx(5 * 131.25 / 489.75)
    assert got[MARCH, IDLE]["shared_facility_energy_kwh"] == 0  # the idle row takes none
    assert got[MARCH, IDLE]["facility_energy_kwh"] * 1000 == pytest.approx(179.25)
    assert (MARCH, SHARED) not in got
    # carbon follows: 1 g of shared operational carbon, 358.5 / 489.75 of it to payments
    base = (90 + 96 + 82.5 + 90) / 1000 * 200.0  # payments' own operational g (C scaled 11/12)
    assert pay["operational_kgco2e"] * 1000 == pytest.approx(base + 1.0 * 358.5 / 489.75)
    # April: payments is the only team, it carries all 2.5 Wh
    assert got[APRIL, "payments"]["shared_facility_energy_kwh"] * 1000 == pytest.approx(2.5)


def test_the_shared_row_carries_its_carbon_and_costs(warehouse: Any) -> None:
    got = chargeback(warehouse("separate", "separate"))
    shared = got[MARCH, SHARED]
    assert shared["cost_center"] is None and shared["requests"] == 0
    assert shared["operational_kgco2e"] == pytest.approx(0.001)  # 2 minutes x 0.5 g
    assert shared["embodied_kgco2e"] == 0
    # capex and opex are shared by facility energy: 5 / 674 of the site-month's
    total_capex = sum(r["capex_share_usd"] for (m, _), r in got.items() if m == MARCH)
    assert shared["capex_share_usd"] == pytest.approx(total_capex * 5 / 674)
    assert shared["minutes_present"] == 4 and got[APRIL, SHARED]["minutes_present"] == 1


def test_a_meter_below_the_node_sum_is_reported_not_negative(warehouse: Any) -> None:
    con = warehouse("separate", "separate")
    got = con.execute(
        "select meter_status, shared_it_energy_wh, shared_facility_energy_wh,"
        " node_facility_scale, nodes_over_meter_it_wh, billed_facility_energy_wh"
        " from int_site_meter_minutes where window_start = ?",
        [C],
    ).fetchone()
    assert got is not None
    status, shared_it, shared_fac, scale, over, billed = got
    assert status == "meter_below_nodes"
    assert (shared_it, shared_fac) == (0.0, 0.0)  # never negative
    assert scale == pytest.approx(165 / 180)
    assert over == pytest.approx(10.0)  # nodes 120 Wh, meter 110 Wh
    assert billed == pytest.approx(165.0)
    rows = con.execute(
        "select service, facility_energy_kwh * 1000 from int_energy_costed_minutes"
        " where window_start = ? order by service",
        [C],
    ).fetchall()
    assert rows == [
        ("__idle__", pytest.approx(41.25)),
        ("catalog-search", pytest.approx(41.25)),
        ("checkout-api", pytest.approx(82.5)),
    ]
    statuses = dict(
        con.execute(
            "select strftime(window_start, '%H:%M'), meter_status from int_site_meter_minutes"
            " where window_start < timestamptz '2026-03-11 00:00:00+00'"
        ).fetchall()
    )
    assert statuses == {"23:00": "metered", "23:01": "design", "23:02": "meter_below_nodes"}


def test_the_quality_check_reconciles_with_the_meter_and_names_the_drift(
    lake: Lake, tmp_path: Path
) -> None:
    db = tmp_path / "w.duckdb"
    build(
        lake,
        msgspec.structs.replace(load_fleet(), idle_policy="weighted", shared_policy="even"),
        db,
    )
    result = run_checks(db, tmp_path / "docs")
    recon = result.suite("reconciliation.invariants")
    assert recon.success, result.failures()
    assert any(
        "bog1 2026-03: 1 minute(s) whose facility meter's IT reading is below the node sum by "
        "0.010000 kWh" in note
        for note in result.notes
    ), result.notes


def test_roi_uses_the_reconciled_energy_and_total(warehouse: Any) -> None:
    con = warehouse("weighted", "weighted")
    got = con.execute(
        "select requests, facility_wh_per_request, gco2e_per_request, pilot_microdc_usd"
        " from fct_roi_site where site_id = 'bog1'"
    ).fetchone()
    assert got is not None
    requests, wh, gco2e, usd = got
    # 10 requests a team row: A 20, B 10, C 20, D 20, E 10 = 80; the meter's 674 + 137.5 Wh
    assert requests == 80
    assert wh == pytest.approx((674 + 137.5) / 80)
    # operational carbon is 200 g/kWh of the charged facility energy (no embodied carbon here)
    assert gco2e == pytest.approx((674 + 137.5) / 1000 * 200.0 / 80)
    (total,) = con.execute(
        "select sum(total_usd) from fct_chargeback_monthly where site_id = 'bog1'"
    ).fetchone() or (None,)
    assert usd == pytest.approx(total)


def test_the_exports_show_the_shared_line(lake: Lake, tmp_path: Path) -> None:
    import csv

    from pipeline.models.export import export_chargeback

    db = tmp_path / "w.duckdb"
    build(lake, load_fleet(), db)  # the demo fleet: both policies `separate`
    focus = tmp_path / "focus.csv"
    assert export_chargeback(db, "2026-03", "focus", focus) == 4  # payments, search, idle, shared
    with focus.open(newline="", encoding="utf-8") as f:
        rows = {r["SubAccountId"]: r for r in csv.DictReader(f)}
    shared = rows[SHARED]
    assert shared["BillingAccountId"] == "UNALLOCATED"
    assert shared["BillingAccountName"] == "Unallocated shared infrastructure"
    assert shared["SubAccountName"] == "Shared infrastructure"
    assert shared["ChargeDescription"].startswith(
        "Shared infrastructure of micro data center bog1 (Bogotá), 2026-03: metered IT load"
    )
    assert "shared policy separate" in shared["ChargeDescription"]
    assert shared["x_SharedFacilityEnergyKwh"] == shared["x_FacilityEnergyKwh"] == "0.005000"
    assert shared["x_SharedPolicy"] == "separate"
    assert "shared policy separate" in rows["payments"]["ChargeDescription"]
    # B's 144 Wh of design-PUE energy: payments 96, idle 48
    assert rows["payments"]["x_DesignPueFacilityEnergyKwh"] == "0.096000"
    assert rows[IDLE]["x_DesignPueFacilityEnergyKwh"] == "0.048000"
    with duckdb.connect(str(db), read_only=True) as con:
        (total,) = con.execute(
            "select sum(total_usd) from fct_chargeback_monthly"
            " where local_month = date '2026-03-01'"
        ).fetchone() or (None,)
    assert sum(float(r["BilledCost"]) for r in rows.values()) == pytest.approx(total, abs=1e-5)
    plain = tmp_path / "cb.csv"
    export_chargeback(db, "2026-03", "csv", plain)
    with plain.open(newline="", encoding="utf-8") as f:
        line = next(r for r in csv.DictReader(f) if r["team"] == SHARED)
    assert (line["shared_policy"], line["shared_facility_energy_kwh"]) == ("separate", "0.005000")
