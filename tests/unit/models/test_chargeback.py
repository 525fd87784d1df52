"""fct_chargeback_monthly (and int_energy_costed_minutes) on a hand-made lake, every expected
number worked out by hand in the comments: local-time tariffs, local months, idle policies and
per site-month reconciliation with the metered energy and the site's costs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from pipeline.contracts.outputs import EnergyMinute, SiteMinute
from pipeline.contracts.topics import ENERGY_MINUTES, SITE_MINUTES
from pipeline.embedded.landing import EmbeddedLander
from pipeline.fleet import load_fleet
from pipeline.fleet.model import Fleet, Opex, TariffPeriod
from pipeline.lake import Lake
from pipeline.models.build import build
from tests.support import factories
from tests.support.factories import energy_minute

replace = msgspec.structs.replace

# bog1 is America/Bogota, UTC-5 all year. Demo tariff (local): 00:00 0.14, 06:00 0.19,
# 18:00 0.25, 22:00 0.19 USD/kWh. sao1 is America/Sao_Paulo, UTC-3 (no DST since 2019):
# 07:00-18:00 costs 0.15.
M1 = datetime(2026, 3, 10, 22, 59, tzinfo=UTC)  # 17:59 Bogotá -> 0.19
M2 = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)  # 18:00 Bogotá -> 0.25
M3 = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)  # 2026-03-31 21:00 Bogotá: still March, 0.25
M4 = datetime(2026, 4, 1, 5, 0, tzinfo=UTC)  # 2026-04-01 00:00 Bogotá: April, 0.14
S1 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 09:00 São Paulo -> 0.15

CARBON_PRICE = 100.0  # USD per tonne = 0.1 USD per kg
# Both sites cost 44_640 USD capex and 89_280 USD opex a month: a 31-day month has 44_640 minutes,
# so in March each minute with data carries 1 USD capex and 2 USD opex.
SITE_CAPEX = 2_678_400.0  # / (10 years x 12) = 22_320 USD a month
NODE_CAPEX = 1_339_200.0  # / (5 years x 12) = 22_320 USD a month; the site's other nodes cost 0
OPEX = 89_280.0

BOG = "bog1-r1-n01"
SAO = "sao1-r1-n01"


energy = energy_minute


def site_minute(at: datetime, site: str, facility_wh: float, share: float) -> SiteMinute:
    return factories.site_minute(
        at,
        site,
        facility_energy_wh=facility_wh,
        it_energy_wh=facility_wh / 1.5,
        node_it_energy_wh=facility_wh / 1.5,
        pue=1.5,
        renewable_energy_wh=facility_wh * share,
        renewable_share=share,
    )


def e(at: datetime, service: str, team: str, req: int, it: float, fac: float, op: float,
      emb: float, share: float = 0.0, node: str = BOG) -> EnergyMinute:  # fmt: skip
    return energy(
        at, node, service, team, requests=req, it_energy_wh=it, facility_energy_wh=fac,
        operational_gco2e=op, embodied_gco2e=emb, renewable_share=share,
    )  # fmt: skip


IDLE = "__idle__"
ROWS = [
    # minute, service, team, requests, IT Wh, facility Wh, operational g, embodied g, renewable
    e(S1, IDLE, IDLE, 0, 70.0, 100.0, 10.0, 1.0, node=SAO),  # sao1: only idle energy
    e(M1, "checkout-api", "payments", 10, 100.0, 150.0, 20.0, 2.0, share=0.5),
    e(M1, IDLE, IDLE, 0, 200.0, 300.0, 40.0, 4.0, share=0.5),
    e(M2, "checkout-api", "payments", 20, 150.0, 225.0, 45.0, 3.0),
    e(M2, "fraud-score", "payments", 10, 50.0, 75.0, 15.0, 1.0),
    e(M2, "catalog-search", "search", 20, 100.0, 150.0, 30.0, 2.0),
    e(M2, "auth", "identity", 0, 40.0, 60.0, 10.0, 1.0),  # a team with zero requests
    e(M2, IDLE, IDLE, 0, 400.0, 600.0, 120.0, 8.0),
    e(M3, "catalog-search", "search", 50, 100.0, 150.0, 30.0, 2.0),
    e(M3, IDLE, IDLE, 0, 190.0, 290.0, 58.0, 2.0),
    e(M4, "checkout-api", "payments", 5, 20.0, 30.0, 6.0, 1.0),
    e(M4, IDLE, IDLE, 0, 80.0, 120.0, 24.0, 2.0),
]

# --- bog1, March (local): minutes M1, M2, M3 -------------------------------------------------
# energy cost = facility kWh x (1 - renewable share) x tariff
#   payments: 0.150 x 0.5 x 0.19 + (0.225 + 0.075) x 0.25 = 0.01425 + 0.075 = 0.08925
#   search:   0.150 x 0.25 + 0.150 x 0.25                  = 0.075
#   identity: 0.060 x 0.25                                 = 0.015
#   idle:     0.300 x 0.5 x 0.19 + 0.600 x 0.25 + 0.290 x 0.25 = 0.0285 + 0.15 + 0.0725 = 0.251
MARCH = {
    # team: (requests, IT kWh, facility kWh, energy USD, operational kg, embodied kg)
    "payments": (40, 0.300, 0.450, 0.08925, 0.080, 0.006),
    "search": (70, 0.200, 0.300, 0.075, 0.060, 0.004),
    "identity": (0, 0.040, 0.060, 0.015, 0.010, 0.001),
    IDLE: (0, 0.790, 1.190, 0.251, 0.218, 0.014),
}
MARCH_FACILITY = 0.45 + 0.30 + 0.06 + 1.19  # = 2.0 kWh metered
MARCH_CAPEX = 44_640 * 3 / 44_640  # 3 minutes of a 31-day month = 3 USD
MARCH_OPEX = 89_280 * 3 / 44_640  # = 6 USD
MARCH_ENERGY = 0.08925 + 0.075 + 0.015 + 0.251  # = 0.43025 USD
MARCH_CARBON = (0.080 + 0.060 + 0.010 + 0.218 + 0.006 + 0.004 + 0.001 + 0.014) * 0.1  # 0.0393
# --- bog1, April: minute M4 (00:00 local, 0.14 USD/kWh) -------------------------------------
APRIL_FACILITY = 0.030 + 0.120  # = 0.15 kWh
APRIL_CAPEX = 44_640 * 1 / 43_200  # 1 minute of a 30-day month (43_200 minutes)
APRIL_OPEX = 89_280 * 1 / 43_200
APRIL_ENERGY = 0.15 * 0.14  # = 0.021 USD
APRIL_CARBON = (0.006 + 0.024 + 0.001 + 0.002) * 0.1  # = 0.0033 USD
# --- sao1, March: minute S1, idle only -------------------------------------------------------
SAO_FACILITY = 0.1
SAO_ENERGY = 0.1 * 0.15  # = 0.015 USD
SAO_CARBON = (0.010 + 0.001) * 0.1  # = 0.0011 USD
SAO_CAPEX, SAO_OPEX = 1.0, 2.0  # 1 minute of March

RECONCILED = {
    # (site, month): (facility kWh, energy + carbon + capex + opex USD)
    ("bog1", "2026-03-01"): (
        MARCH_FACILITY,
        MARCH_ENERGY + MARCH_CARBON + MARCH_CAPEX + MARCH_OPEX,  # = 9.46955
    ),
    ("bog1", "2026-04-01"): (
        APRIL_FACILITY,
        APRIL_ENERGY + APRIL_CARBON + APRIL_CAPEX + APRIL_OPEX,
    ),
    ("sao1", "2026-03-01"): (SAO_FACILITY, SAO_ENERGY + SAO_CARBON + SAO_CAPEX + SAO_OPEX),
}
PRORATED = {  # (site, month): (capex, opex) USD of the minutes present
    ("bog1", "2026-03-01"): (MARCH_CAPEX, MARCH_OPEX),
    ("bog1", "2026-04-01"): (APRIL_CAPEX, APRIL_OPEX),
    ("sao1", "2026-03-01"): (SAO_CAPEX, SAO_OPEX),
}


def small_fleet(idle_policy: str = "separate", **kw: Any) -> Fleet:
    demo = load_fleet()
    sites = [
        replace(
            s,
            capex_usd=SITE_CAPEX,
            lifetime_years=10.0,
            opex_usd_per_month=Opex(staff_usd=OPEX, network_usd=0.0, colocation_usd=0.0),
        )
        for s in demo.sites
        if s.site_id in ("bog1", "sao1")
    ]
    nodes = [
        replace(n, capex_usd=NODE_CAPEX if n.node_id in (BOG, SAO) else 0.0, lifetime_years=5.0)
        for n in demo.nodes
        if n.site_id in ("bog1", "sao1")
    ]
    return replace(
        demo,
        sites=sites,
        nodes=nodes,
        idle_policy=idle_policy,
        carbon_price_usd_per_tonne=CARBON_PRICE,
        **kw,
    )


def land_rows(lake: Lake) -> Lake:
    """ROWS and their site minutes (bog1 and sao1, March and April 2026) landed in `lake`."""
    lander = EmbeddedLander(lake)
    for record in ROWS:
        lander.add_output(ENERGY_MINUTES, record, 0)
    for at, site in [(S1, "sao1"), (M1, "bog1"), (M2, "bog1"), (M3, "bog1"), (M4, "bog1")]:
        total = sum(r.facility_energy_wh for r in ROWS if r.window_start == at)
        share = 0.5 if at == M1 else 0.0
        lander.add_output(SITE_MINUTES, site_minute(at, site, total, share), 0)
    lander.close()
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return land_rows(Lake(tmp_path_factory.mktemp("chargeback") / "lake"))


@pytest.fixture(scope="module")
def warehouse(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """warehouse(policy) -> a read-only connection to a warehouse built with that idle policy."""
    built: dict[str, Path] = {}
    connections: list[duckdb.DuckDBPyConnection] = []

    def get(policy: str) -> duckdb.DuckDBPyConnection:
        if policy not in built:
            built[policy] = tmp_path_factory.mktemp(f"w-{policy}") / "w.duckdb"
            build(lake, small_fleet(policy), built[policy])
        con = duckdb.connect(str(built[policy]), read_only=True)
        connections.append(con)
        return con

    yield get
    for con in connections:
        con.close()


def rows(con: duckdb.DuckDBPyConnection, where: str = "true") -> dict[tuple[str, str, str], Any]:
    cur = con.execute(f"select * from fct_chargeback_monthly where {where} order by all")
    names = [d[0] for d in cur.description]
    out = {}
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        out[(row["site_id"], row["local_month"].isoformat(), row["team"])] = row
    return out


def test_the_tariff_follows_local_time_across_a_boundary(warehouse: Any) -> None:
    con = warehouse("separate")
    got = con.execute(
        "select window_start, local_minute_of_day, usd_per_kwh, grid_energy_kwh, energy_cost_usd"
        " from int_energy_costed_minutes where service = 'checkout-api' and local_month ="
        " date '2026-03-01' order by window_start"
    ).fetchall()
    # 22:59Z = 17:59 Bogotá (minute 1079) -> 0.19; 23:00Z = 18:00 (minute 1080) -> 0.25
    assert [(r[1], r[2]) for r in got] == [(1079, 0.19), (1080, 0.25)]
    # M1: 0.150 kWh x (1 - 0.5) = 0.075 grid kWh x 0.19 = 0.01425 USD
    # M2: 0.225 kWh x (1 - 0)   = 0.225 grid kWh x 0.25 = 0.05625 USD
    assert got[0][3:] == pytest.approx((0.075, 0.01425))
    assert got[1][3:] == pytest.approx((0.225, 0.05625))


def test_a_minute_belongs_to_the_local_month(warehouse: Any) -> None:
    got = rows(warehouse("separate"), "site_id = 'bog1'")
    # 2026-04-01T02:00Z is 2026-03-31 21:00 in Bogotá: its 50 search requests are March's
    assert got["bog1", "2026-03-01", "search"]["requests"] == 20 + 50
    assert ("bog1", "2026-04-01", "search") not in got
    # 05:00Z is midnight in Bogotá: April, priced at the 00:00 tariff (0.14)
    april = got["bog1", "2026-04-01", "payments"]
    assert april["requests"] == 5
    assert april["energy_cost_usd"] == pytest.approx(0.030 * 0.14)  # 0.0042
    # minutes of the local months: March 31 x 1440, April 30 x 1440
    assert got["bog1", "2026-03-01", "payments"]["minutes_in_month"] == 44_640
    assert april["minutes_in_month"] == 43_200
    assert got["bog1", "2026-03-01", "payments"]["minutes_present"] == 3
    assert april["minutes_present"] == 1


def test_separate_keeps_idle_on_its_own_row(warehouse: Any) -> None:
    got = rows(warehouse("separate"), "site_id = 'bog1' and local_month = date '2026-03-01'")
    assert set(got) == {("bog1", "2026-03-01", t) for t in MARCH}
    for team, (req, it, fac, cost, op, emb) in MARCH.items():
        row = got["bog1", "2026-03-01", team]
        assert row["idle_policy"] == "separate"
        assert row["requests"] == req
        assert (row["it_energy_kwh"], row["facility_energy_kwh"]) == pytest.approx((it, fac))
        assert row["energy_cost_usd"] == pytest.approx(cost)
        assert (row["operational_kgco2e"], row["embodied_kgco2e"]) == pytest.approx((op, emb))
    pay = got["bog1", "2026-03-01", "payments"]
    # carbon: (0.080 + 0.006) kg = 0.000086 t x 100 USD/t = 0.0086 USD
    assert pay["carbon_cost_usd"] == pytest.approx(0.0086)
    # capex 3 USD and opex 6 USD shared by facility energy: 0.45 / 2.0 = 0.225
    assert pay["capex_share_usd"] == pytest.approx(3 * 0.225)  # 0.675
    assert pay["opex_share_usd"] == pytest.approx(6 * 0.225)  # 1.35
    # total 0.08925 + 0.0086 + 0.675 + 1.35 = 2.12285; per 1k requests: / 40 x 1000 = 53.07125
    assert pay["total_usd"] == pytest.approx(2.12285)
    assert pay["cost_per_1k_requests"] == pytest.approx(53.07125)
    assert pay["cost_center"] == "CC-1010"
    idle = got["bog1", "2026-03-01", IDLE]
    # idle: 1.19 / 2.0 = 0.595 of capex and opex; carbon (0.218 + 0.014) x 0.1 = 0.0232
    # total 0.251 + 0.0232 + 3 x 0.595 + 6 x 0.595 = 0.251 + 0.0232 + 1.785 + 3.57 = 5.6292
    assert idle["idle_facility_energy_kwh"] == pytest.approx(1.19)
    assert idle["total_usd"] == pytest.approx(5.6292)
    assert idle["cost_center"] is None
    assert idle["cost_per_1k_requests"] is None


def test_a_team_with_zero_requests_is_charged_without_a_unit_cost(warehouse: Any) -> None:
    row = rows(warehouse("separate"))["bog1", "2026-03-01", "identity"]
    # energy 0.015 + carbon 0.011 kg x 0.1 = 0.0011 + capex 3 x 0.03 + opex 6 x 0.03
    # = 0.015 + 0.0011 + 0.09 + 0.18 = 0.2861
    assert row["requests"] == 0
    assert row["total_usd"] == pytest.approx(0.2861)
    assert row["cost_per_1k_requests"] is None


def test_weighted_spreads_idle_by_attributed_energy(warehouse: Any) -> None:
    got = rows(warehouse("weighted"), "site_id = 'bog1' and local_month = date '2026-03-01'")
    assert set(got) == {("bog1", "2026-03-01", t) for t in ("payments", "search", "identity")}
    pay = got["bog1", "2026-03-01", "payments"]
    # attributed facility 0.45 + 0.30 + 0.06 = 0.81 kWh; payments' weight 0.45 / 0.81 = 5/9
    assert pay["idle_policy"] == "weighted"
    assert pay["idle_facility_energy_kwh"] == pytest.approx(1.19 * 5 / 9)
    assert pay["facility_energy_kwh"] == pytest.approx(0.45 + 1.19 * 5 / 9)  # = 10/9 kWh
    assert pay["it_energy_kwh"] == pytest.approx(0.30 + 0.79 * 5 / 9)
    assert pay["energy_cost_usd"] == pytest.approx(0.08925 + 0.251 * 5 / 9)
    assert pay["operational_kgco2e"] == pytest.approx(0.080 + 0.218 * 5 / 9)
    assert pay["embodied_kgco2e"] == pytest.approx(0.006 + 0.014 * 5 / 9)
    # its facility share of the site-month is (10/9) / 2.0 = 5/9 as well
    assert pay["capex_share_usd"] == pytest.approx(3 * 5 / 9)
    assert pay["opex_share_usd"] == pytest.approx(6 * 5 / 9)
    # identity (no requests) still carries 0.06 / 0.81 = 2/27 of the idle energy
    ident = got["bog1", "2026-03-01", "identity"]
    assert ident["facility_energy_kwh"] == pytest.approx(0.06 + 1.19 * 2 / 27)


def test_even_spreads_idle_evenly_over_teams_with_rows(warehouse: Any) -> None:
    got = rows(warehouse("even"), "site_id = 'bog1' and local_month = date '2026-03-01'")
    assert set(got) == {("bog1", "2026-03-01", t) for t in ("payments", "search", "identity")}
    ident = got["bog1", "2026-03-01", "identity"]
    # three teams with rows (identity has zero requests and counts): each takes 1/3 of idle
    assert ident["idle_policy"] == "even"
    assert ident["idle_facility_energy_kwh"] == pytest.approx(1.19 / 3)
    fac = 0.06 + 1.19 / 3  # = 0.456667 kWh
    assert ident["facility_energy_kwh"] == pytest.approx(fac)
    assert ident["energy_cost_usd"] == pytest.approx(0.015 + 0.251 / 3)
    carbon = (0.010 + 0.218 / 3 + 0.001 + 0.014 / 3) * 0.1
    assert ident["carbon_cost_usd"] == pytest.approx(carbon)
    assert ident["capex_share_usd"] == pytest.approx(3 * fac / 2.0)
    assert ident["opex_share_usd"] == pytest.approx(6 * fac / 2.0)
    total = 0.015 + 0.251 / 3 + carbon + 9 * fac / 2.0
    assert ident["total_usd"] == pytest.approx(total)
    # April has only payments: it takes all of the idle energy
    april = rows(warehouse("even"), "local_month = date '2026-04-01'")
    assert list(april) == [("bog1", "2026-04-01", "payments")]
    assert april["bog1", "2026-04-01", "payments"]["facility_energy_kwh"] == pytest.approx(0.15)


@pytest.mark.parametrize("policy", ["separate", "weighted", "even"])
def test_each_site_month_reconciles(warehouse: Any, policy: str) -> None:
    con = warehouse(policy)
    got = con.execute(
        "select site_id, strftime(local_month, '%Y-%m-%d'), sum(facility_energy_kwh),"
        " sum(total_usd), sum(energy_cost_usd + carbon_cost_usd + capex_share_usd"
        " + opex_share_usd), sum(capex_share_usd), sum(opex_share_usd)"
        " from fct_chargeback_monthly group by all order by all"
    ).fetchall()
    assert [(r[0], r[1]) for r in got] == sorted(RECONCILED)
    for site, month, facility, total, parts, capex, opex in got:
        want_facility, want_total = RECONCILED[site, month]
        assert facility == pytest.approx(want_facility, rel=1e-12)
        assert total == pytest.approx(want_total, rel=1e-12)
        assert total == pytest.approx(parts, rel=1e-12)
        assert (capex, opex) == pytest.approx(PRORATED[site, month], rel=1e-12)
    # sao1 March has only idle energy: every policy keeps the __idle__ row (nobody to carry it)
    sao = rows(con, "site_id = 'sao1'")
    assert list(sao) == [("sao1", "2026-03-01", IDLE)]
    assert sao["sao1", "2026-03-01", IDLE]["opex_share_usd"] == pytest.approx(SAO_OPEX)
    # and the energy sums equal the metered energy of stg_energy_minutes
    metered = con.execute(
        "select sum(facility_energy_wh) / 1000 from stg_energy_minutes"
    ).fetchone()
    assert metered is not None
    assert sum(r[2] for r in got) == pytest.approx(metered[0], rel=1e-12)


def test_a_period_before_the_first_tariff_start_wraps_from_the_day_before(
    lake: Lake, tmp_path: Path
) -> None:
    fleet = small_fleet()
    bog = replace(
        fleet.sites[0],
        tariff=[
            TariffPeriod(start="06:00", usd_per_kwh=0.20),
            TariffPeriod(start="22:00", usd_per_kwh=0.10),
        ],
    )
    db = tmp_path / "w.duckdb"
    build(lake, replace(fleet, sites=[bog, *fleet.sites[1:]]), db)
    with duckdb.connect(str(db), read_only=True) as con:
        got = con.execute(
            "select local_minute_of_day, usd_per_kwh from int_energy_costed_minutes"
            " where site_id = 'bog1' and service = '__idle__' order by window_start"
        ).fetchall()
    # 17:59 and 18:00 -> 0.20 (06:00-22:00); 21:00 -> 0.20; 00:00 -> the 22:00 period, 0.10
    assert got == [(1079, 0.20), (1080, 0.20), (1260, 0.20), (0, 0.10)]


def test_export_writes_a_stable_csv_and_parquet(lake: Lake, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from pipeline.errors import ConfigError
    from pipeline.models.export import CHARGEBACK_COLUMNS, export_chargeback

    db = tmp_path / "w.duckdb"
    build(lake, small_fleet("separate"), db)
    csv = tmp_path / "cb.csv"
    assert export_chargeback(db, "2026-03", "csv", csv) == 5  # bog1 x 4 teams + sao1 idle
    lines = csv.read_text().splitlines()
    assert lines[0].split(",") == [name for name, _ in CHARGEBACK_COLUMNS]
    first = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert (first["month"], first["month_start"], first["team"]) == (
        "2026-03",
        "2026-03-01",
        IDLE,
    )
    assert first["total_usd"] == "5.629200"  # 0.251 + 0.0232 + 1.785 + 3.57, at 6 places
    parquet = tmp_path / "cb.parquet"
    assert export_chargeback(db, "2026-04", "parquet", parquet) == 2
    table = pq.read_table(parquet)
    assert table.column_names == [name for name, _ in CHARGEBACK_COLUMNS]
    assert str(table.schema.field("total_usd").type) == "decimal128(18, 6)"
    with pytest.raises(ConfigError, match="YYYY-MM"):
        export_chargeback(db, "2026-3", "csv", csv)
