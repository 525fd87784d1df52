"""The model runner and the energy, efficiency and SLO marts, on hand-made lakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.contracts.outputs import EnergyMinute, SiteMinute, SloBurn
from pipeline.contracts.topics import ENERGY_MINUTES, REQUEST_LOG, SITE_MINUTES, SLO_BURN
from pipeline.embedded.landing import EmbeddedLander
from pipeline.errors import PipelineError
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build, load_models
from tests.support import factories
from tests.support.factories import energy_minute

T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def energy(minute: int, service: str, **kw: Any) -> EnergyMinute:
    team = "payments" if service != "__idle__" else "__idle__"
    return energy_minute(T + timedelta(minutes=minute), "bog1-r1-n01", service, team, **kw)


def site_minute(at: datetime, **kw: Any) -> SiteMinute:
    return factories.site_minute(at, "bog1", **kw)


def request(i: int, latency_ms: float, *, minute: int = 0) -> bytes:
    at = T + timedelta(minutes=minute, seconds=i)
    return factories.request_log(
        at, f"r{i}", "bog1-r1-n01", "checkout", "payments", latency_ms=latency_ms
    )


def build_lake(tmp: Path, *, energy_rows=(), site_rows=(), burn_rows=(), requests=()) -> Any:
    lake = Lake(tmp / "lake")
    lander = EmbeddedLander(lake)
    for spec, rows in (
        (ENERGY_MINUTES, energy_rows),
        (SITE_MINUTES, site_rows),
        (SLO_BURN, burn_rows),
    ):
        for row in rows:
            lander.add_output(spec, row, 0)
    for value in requests:
        lander.add(REQUEST_LOG, b"bog1-r1-n01", value, 0)
    lander.close()
    db = tmp / "w.duckdb"
    build(lake, load_fleet(), db)
    return duckdb.connect(str(db), read_only=True)


def test_energy_per_request_hourly_sums_before_dividing_and_drops_reemissions(
    tmp_path: Path,
) -> None:
    rows = [
        # 15:00: 10 requests, 2 Wh IT, 3 Wh facility, 4 g operational + 1 g embodied
        energy(
            0,
            "checkout",
            requests=10,
            it_energy_wh=2.0,
            facility_energy_wh=3.0,
            operational_gco2e=4.0,
            embodied_gco2e=1.0,
        ),
        # 15:01: 30 requests, 6 Wh IT, 9 Wh facility, 12 g + 3 g
        energy(
            1,
            "checkout",
            requests=30,
            it_energy_wh=6.0,
            facility_energy_wh=9.0,
            operational_gco2e=12.0,
            embodied_gco2e=3.0,
        ),
        # the 15:01 minute emitted again after a failover: same key, same values
        energy(
            1,
            "checkout",
            requests=30,
            it_energy_wh=6.0,
            facility_energy_wh=9.0,
            operational_gco2e=12.0,
            embodied_gco2e=3.0,
        ),
        # idle energy is not the service's
        energy(0, "__idle__", it_energy_wh=50.0, facility_energy_wh=75.0),
        # 16:00: another hour
        energy(60, "checkout", requests=5, it_energy_wh=1.0, facility_energy_wh=1.5),
    ]
    latencies = [10.0, 20.0, 30.0, 40.0]
    con = build_lake(
        tmp_path, energy_rows=rows, requests=[request(i, v) for i, v in enumerate(latencies)]
    )
    got = con.execute(
        "select hour_utc, requests, it_energy_wh, it_wh_per_request, facility_wh_per_request, "
        "gco2e_per_request, latency_p50_ms, latency_p95_ms "
        "from fct_energy_per_request_hourly order by hour_utc"
    ).fetchall()
    assert len(got) == 2
    hour, requests, it_wh, it_per, fac_per, co2_per, p50, p95 = got[0]
    assert hour.astimezone(UTC) == T
    # 10 + 30 requests (the re-emission counted once); 8 Wh IT / 40 = 0.2; 12 / 40 = 0.3;
    # (4 + 1 + 12 + 3) g / 40 = 0.5 g per request
    assert (requests, it_wh) == (40, 8.0)
    assert it_per == pytest.approx(0.2) and fac_per == pytest.approx(0.3)
    assert co2_per == pytest.approx(0.5)
    # quantile_cont over 10, 20, 30, 40: p50 = 25; p95 = 30 + 0.85 * 10 = 38.5
    assert p50 == pytest.approx(25.0) and p95 == pytest.approx(38.5)
    assert got[1][1] == 5 and got[1][6] is None  # no request logs landed for 16:00


def test_site_efficiency_is_daily_in_local_time_and_re_derived_from_sums(tmp_path: Path) -> None:
    # Bogotá is UTC-5: 2026-03-02T03:00Z is still 1 March there; 05:00Z is 2 March.
    early = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    late = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    rows = [
        site_minute(
            early,
            node_it_energy_wh=100.0,
            pue=1.5,
            operational_gco2e=30.0,
            renewable_energy_wh=15.0,
            coverage=1.0,
        ),
        site_minute(
            early + timedelta(minutes=1),
            node_it_energy_wh=50.0,
            pue=1.2,
            pue_source="design",
            operational_gco2e=12.0,
            coverage=0.5,
        ),
        site_minute(late, node_it_energy_wh=10.0, pue=2.0, water_l=0.5),
    ]
    con = build_lake(tmp_path, site_rows=rows)
    got = con.execute(
        "select local_date, it_energy_kwh, pue, design_pue_minutes, cue_kg_per_kwh, "
        "renewable_share, wue_l_per_kwh, coverage from fct_site_efficiency_daily order by 1"
    ).fetchall()
    assert [str(r[0]) for r in got] == ["2026-03-01", "2026-03-02"]
    day1 = got[0]
    # IT 150 Wh; facility 100 * 1.5 + 50 * 1.2 = 210 Wh -> PUE 1.4 (not the mean 1.35)
    assert day1[1] == pytest.approx(0.150) and day1[2] == pytest.approx(1.4)
    assert day1[3] == 1
    # CUE: 0.042 kg / 0.150 kWh = 0.28; renewable: 15 / 210
    assert day1[4] == pytest.approx(0.28) and day1[5] == pytest.approx(15 / 210)
    assert day1[6] is None and day1[7] == pytest.approx(0.75)
    assert got[1][6] == pytest.approx(0.5 / 0.010)  # WUE: 0.5 L / 0.01 kWh


def test_slo_daily_takes_day_totals_end_of_day_budget_and_worst_burn(tmp_path: Path) -> None:
    def burn(minute: int, requests: int, bad: int, budget: float, worst: float) -> SloBurn:
        return factories.slo_burn(
            T + timedelta(minutes=minute),
            "checkout",
            "bog1",
            requests=requests,
            bad_availability=bad,
            availability_burn={"5m": worst, "1h": worst / 2},
            latency_burn={"5m": 0.0},
            availability_budget_remaining=budget,
        )

    con = build_lake(
        tmp_path,
        burn_rows=[
            burn(0, 100, 2, 0.99, 3.0),
            burn(1, 300, 0, 0.98, 14.5),
            burn(2, 100, 0, 0.97, 1.0),
        ],
    )
    got = con.execute(
        "select requests, bad_availability, availability_sli, availability_budget_remaining, "
        "worst_availability_burn, worst_latency_burn from fct_slo_daily"
    ).fetchall()
    # 500 requests, 2 bad: SLI 0.996; the budget of the day's last minute; the worst burn 14.5
    assert got == [(500, 2, pytest.approx(0.996), 0.97, 14.5, 0.0)]


def test_a_fresh_lake_builds_empty_documented_tables_and_a_rebuild_is_idempotent(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    db = tmp_path / "w.duckdb"
    first = build(lake, load_fleet(), db)
    again = build(lake, load_fleet(), db)
    assert [m.name for m, _, _ in first.models] == [m.name for m, _, _ in again.models]
    assert all(rows == 0 for _, rows, _ in again.models)
    con = duckdb.connect(str(db), read_only=True)
    comment = con.execute(
        "select comment from duckdb_tables() where table_name = 'fct_energy_per_request_hourly'"
    ).fetchone()
    assert comment is not None and comment[0].startswith("Grain: one row per site")
    column = con.execute(
        "select comment from duckdb_columns() where table_name = 'fct_site_efficiency_daily' "
        "and column_name = 'pue'"
    ).fetchone()
    assert column == ("facility / IT energy of the day",)
    assert con.execute("select count(*) from dim_site").fetchone() == (3,)
    tariff = con.execute(
        "select start_minute, end_minute, usd_per_kwh from dim_tariff where site_id = 'bog1' "
        "order by 1"
    ).fetchall()
    assert tariff[0] == (0, 360, 0.14) and tariff[-1][1] == 1440


def test_models_are_ordered_by_reference_and_cycles_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "sql"
    (root / "staging").mkdir(parents=True)
    (root / "marts").mkdir()
    (root / "staging" / "stg_b.sql").write_text("select * from {{ ref('stg_a') }}")
    (root / "staging" / "stg_a.sql").write_text("-- Grain: x\nselect 1 as x")
    (root / "marts" / "fct_c.sql").write_text("select * from {{ ref('stg_b') }}")
    assert [m.name for m in load_models(root)] == ["stg_a", "stg_b", "fct_c"]
    (root / "staging" / "stg_a.sql").write_text("select * from {{ ref('fct_c') }}")
    with pytest.raises(PipelineError, match="cycle"):
        load_models(root)


def test_config_materialized_makes_a_table_and_a_view_is_the_default(tmp_path: Path) -> None:
    root = tmp_path / "sql"
    (root / "intermediate").mkdir(parents=True)
    (root / "marts").mkdir()
    (root / "intermediate" / "int_a.sql").write_text(
        "-- Grain: one row.\n-- @column x: a number\n{{ config(materialized='table') }}\n"
        "select 1 as x"
    )
    (root / "intermediate" / "int_b.sql").write_text("-- @column x: a number\nselect 2 as x")
    (root / "marts" / "fct_c.sql").write_text(
        "-- @column x: a number\n{{ config(materialized='view') }}\n"
        "select x from {{ ref('int_a') }}"
    )
    models = {m.name: m for m in load_models(root)}
    assert {n: m.materialized for n, m in models.items()} == {
        "int_a": "table",
        "int_b": "view",
        "fct_c": "view",
    }
    assert models["int_a"].description == "Grain: one row."
    db = tmp_path / "w.duckdb"
    build(Lake(tmp_path / "lake"), load_fleet(), db, models_dir=root)
    with duckdb.connect(str(db), read_only=True) as con:
        kinds = dict(
            con.execute(
                "select table_name, 'table' from duckdb_tables() where table_name like '%_%'"
                " union all select view_name, 'view' from duckdb_views() where not internal"
            ).fetchall()
        )
    assert (kinds["int_a"], kinds["int_b"], kinds["fct_c"]) == ("table", "view", "view")


def test_a_broken_model_names_its_file_and_leaves_the_warehouse_as_it_was(
    tmp_path: Path,
) -> None:
    root = tmp_path / "sql"
    (root / "marts").mkdir(parents=True)
    (root / "marts" / "fct_ok.sql").write_text("-- @column x: a number\nselect 1 as x")
    db = tmp_path / "w.duckdb"
    build(Lake(tmp_path / "lake"), load_fleet(), db, models_dir=root)
    (root / "marts" / "fct_bad.sql").write_text("select no_such_column from dim_site")
    with pytest.raises(PipelineError, match=r"fct_bad\.sql"):
        build(Lake(tmp_path / "lake"), load_fleet(), db, models_dir=root)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select x from fct_ok").fetchall() == [(1,)]
    assert not con.execute("select * from duckdb_tables() where table_name = 'fct_bad'").fetchall()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "sql", "w.duckdb"]


def test_every_column_of_the_warehouse_is_documented(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    build(Lake(tmp_path / "lake"), load_fleet(), db)
    con = duckdb.connect(str(db), read_only=True)
    undocumented = con.execute(
        """
        select table_name || '.' || column_name from duckdb_columns()
        where regexp_matches(table_name, '^(stg|int|fct|dim)_') and comment is null
        order by 1
        """
    ).fetchall()
    assert undocumented == [], "add them to sql/columns.yml or an @column line"
    tables = con.execute(
        """
        select table_name from duckdb_tables() where regexp_matches(table_name, '^(fct|dim)_')
        and comment is null
        union all
        select view_name from duckdb_views() where regexp_matches(view_name, '^(stg|int)_')
        and comment is null
        """
    ).fetchall()
    assert tables == []
