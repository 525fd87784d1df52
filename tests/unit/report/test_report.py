"""`microdc report`: the page made from a hand-made warehouse, its errors and its atomic write.

Figures are read back from the page itself: each travels as JSON in a
`<script type="application/json" data-chart="...">` element.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.report import ReportResult, WarehouseError, build_report
from tests.unit.report.handmade import build_warehouse

GENERATED = datetime(2026, 3, 3, 8, 30, tzinfo=UTC)
_SPEC = re.compile(r'<script type="application/json" data-chart="([^"]+)">(.*?)</script>', re.S)
#: chart id -> traces: bog1 has two services, mex1 one; sao1 has no data and no chart
EXPECTED = {
    "chart-energy-latency-bog1": 3,  # energy bars + p95 auth + p95 checkout-api
    "chart-energy-latency-mex1": 2,
    "chart-pue": 2,  # one bar trace per site with data
    "chart-carbon": 2,
    "chart-slo": 4,  # availability and latency, budget and burn panels
    "chart-chargeback": 8,  # 4 cost parts x (teams, kept separate: idle and shared) panels
    "chart-roi": 15,
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def built(warehouse: Path) -> tuple[ReportResult, str]:
    out = warehouse.parent / "out" / "report.html"
    result = build_report(warehouse, out, title="Pilot <review>", generated_at=GENERATED)
    return result, out.read_text(encoding="utf-8")


def figures(page: str) -> dict[str, dict[str, Any]]:
    return {m[1]: json.loads(m[2]) for m in _SPEC.finditer(page)}


def trace(figure: dict[str, Any], name: str, index: int = 0) -> dict[str, Any]:
    found = [t for t in figure["data"] if t.get("name") == name]
    return found[index]


def test_every_chart_is_in_the_page_with_its_traces(built: tuple[ReportResult, str]) -> None:
    result, page = built
    specs = figures(page)
    assert {k: len(v["data"]) for k, v in specs.items()} == EXPECTED
    assert result.charts == len(EXPECTED)
    for chart_id in EXPECTED:
        assert page.count(f'<div id="{chart_id}" class="plot"') == 1
    for chart_id, spec in specs.items():
        title = spec["layout"]["title"]["text"]
        assert re.search(r"Wh|ms|gCO2e|USD|%|ratio", title), (chart_id, title)


def test_energy_latency_and_carbon_are_sums_over_sums_per_site_and_hour(
    built: tuple[ReportResult, str],
) -> None:
    specs = figures(built[1])
    bog1 = specs["chart-energy-latency-bog1"]
    energy = trace(bog1, "energy per request, Wh")
    assert energy["x"] == ["2026-03-02T15:00:00", "2026-03-02T16:00:00"]
    # 15:00: (3.0 + 1.5) Wh / (10 + 30) requests, idle excluded; 16:00: 3.0 / 20
    assert energy["y"] == pytest.approx([0.1125, 0.15])
    assert energy["yaxis"] == "y"
    # quantile_cont of 10, 20, 30, 40 = 38.5; of 100, 200 = 195; 16:00 logged no requests
    checkout = trace(bog1, "p95 checkout-api")
    assert checkout["y"][0] == pytest.approx(38.5) and checkout["y"][1] is None
    assert trace(bog1, "p95 auth")["y"] == pytest.approx([195.0])
    assert {t["yaxis"] for t in bog1["data"][1:]} == {"y2"}
    assert bog1["layout"]["yaxis2"]["type"] == "log"
    assert trace(specs["chart-energy-latency-mex1"], "energy per request, Wh")["y"] == [0.4]
    carbon = specs["chart-carbon"]
    # bog1 15:00: (4 + 1 + 1 + 1) g / 40; 16:00: 2 g / 20; mex1: (3 + 1) g / 5
    assert trace(carbon, "Bogotá (bog1)")["y"] == pytest.approx([0.175, 0.1])
    assert trace(carbon, "Ciudad de México (mex1)")["y"] == pytest.approx([0.8])


def test_pue_and_slo_charts_show_the_marts(built: tuple[ReportResult, str]) -> None:
    specs = figures(built[1])
    pue = specs["chart-pue"]
    # (100 x 1.5 + 50 x 1.2) / 150 = 1.4, not the mean 1.35; Bogotá's local day is 2 March
    assert trace(pue, "Bogotá (bog1)")["y"] == pytest.approx([1.4])
    assert trace(pue, "Bogotá (bog1)")["x"] == ["2026-03-02"]
    assert trace(pue, "Ciudad de México (mex1)")["y"] == pytest.approx([2.0])
    design = sorted(s["y0"] for s in pue["layout"]["shapes"])
    assert design == [1.42, 1.5]  # the demo fleet's design PUE of bog1 and mex1
    slo = specs["chart-slo"]
    budget, burn = trace(slo, "availability", 0), trace(slo, "availability", 1)
    assert budget["y"] == ["checkout-api · bog1"]  # the __all__ row is in the table only
    assert budget["x"] == pytest.approx([98.0]) and burn["x"] == pytest.approx([14.5])
    assert trace(slo, "latency", 1)["x"] == pytest.approx([0.5])


def test_chargeback_and_roi_reconcile_with_their_marts(
    built: tuple[ReportResult, str], warehouse: Path
) -> None:
    specs = figures(built[1])
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        totals = dict(
            con.execute(
                "select team, sum(total_usd) from fct_chargeback_monthly group by team"
            ).fetchall()
        )
        kept = dict(
            con.execute(
                "select site_id || ' ' || trim(team, '_'), total_usd from fct_chargeback_monthly"
                " where team in ('__idle__', '__shared__')"
            ).fetchall()
        )
        (shared_kwh,) = con.execute(
            "select sum(facility_energy_kwh) from fct_chargeback_monthly where team = '__shared__'"
        ).fetchone() or (None,)
        roi = con.execute(
            "select site_id, microdc_usd_per_month, cloud_usd_per_month, gco2e_per_request, "
            "cloud_capacity_usd_per_month, capacity_roi_12m_pct from fct_roi_site order by site_id"
        ).fetchall()
    finally:
        con.close()
    charge = specs["chart-chargeback"]
    parts = [t for t in charge["data"] if t["xaxis"] == "x"]
    assert [t["name"] for t in parts] == ["energy", "carbon", "capex share", "opex share"]
    stacked = {team: sum(t["y"][i] for t in parts) for i, team in enumerate(parts[0]["x"])}
    assert stacked == pytest.approx(
        {k: v for k, v in totals.items() if k not in ("__idle__", "__shared__")}
    )
    kept_parts = [t for t in charge["data"] if t["xaxis"] == "x2"]
    # mex1 landed no __idle__ energy and its meter saw nothing beyond its node
    assert kept_parts[0]["x"] == ["bog1 idle", "bog1 shared"]
    for i, key in enumerate(kept_parts[0]["x"]):
        assert sum(t["y"][i] for t in kept_parts) == pytest.approx(kept[key])
    # the shared line of the table: 6 Wh = 0.006 kWh, with its USD total
    assert shared_kwh == pytest.approx(0.006)
    table = built[1].replace(' class=""', "")
    row = re.search(r"<tr><td>Shared infrastructure \(__shared__\)</td>(.*?)</tr>", table)
    assert row is not None, "the chargeback table has no shared line"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row[1])
    assert cells[2] == cells[3] == "0.01"  # facility kWh, all of it shared (2 decimals)
    assert cells[-2] == f"{kept['bog1 shared']:,.2f}"  # total USD
    assert cells[0] == "–"  # no cost center
    assert "shared policy separate" in built[1]
    assert "idle policy separate; shared policy separate;" in built[1]  # the header's settings
    assert "shared kWh by site: bog1 0.01, mex1 0.00." in built[1]  # the table's note
    roi_chart = specs["chart-roi"]
    assert trace(roi_chart, "micro-DC")["x"] == [r[0] for r in roi]
    assert trace(roi_chart, "micro-DC")["y"] == pytest.approx([r[1] for r in roi])
    assert trace(roi_chart, "cloud baseline")["y"] == pytest.approx([r[2] for r in roi])
    same_cores = trace(roi_chart, "cloud, the same cores rented")["y"]
    assert same_cores == pytest.approx([r[4] for r in roi])
    assert all(v > 0 for v in same_cores)
    capacity_roi = trace(roi_chart, "ROI at 12 months vs the same cores")["y"]
    assert capacity_roi == pytest.approx([r[5] for r in roi])
    carbon = [t for t in roi_chart["data"] if t["name"] == "micro-DC"][-1]
    assert carbon["y"] == pytest.approx([r[3] for r in roi])
    # a micro-DC far dearer than its cloud baseline: the cost panels go logarithmic
    assert roi_chart["layout"]["yaxis"]["type"] == "log"


def test_header_tables_and_no_network(built: tuple[ReportResult, str], warehouse: Path) -> None:
    result, page = built
    assert result.size_bytes == len(page.encode("utf-8")) == result.path.stat().st_size
    assert "<title>Pilot &lt;review&gt;</title>" in page  # escaped
    assert "2026-03-02 15:00 to 2026-03-02 17:00 UTC" in page
    assert "Bogotá (bog1), CO" in page and "São Paulo (sao1), BR" in page
    assert "2026-03-03 08:30:00 UTC" in page
    assert str(warehouse.resolve()) in page
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()) == 1
    outside = page.replace(get_plotlyjs(), "")
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link|@import|url\(", outside)
    assert "http://" not in outside and "https://" not in outside
    # summary tables: the SLO row of bog1 and the chargeback total row
    assert "<td>checkout-api</td><td>bog1</td>" in page.replace(' class=""', "")
    assert '<tr class="total"><td class="">total</td>' in page


def test_a_weighted_shared_policy_puts_the_shared_energy_in_the_team_rows(
    warehouse: Path, tmp_path: Path
) -> None:
    import msgspec

    from pipeline.fleet import load_fleet
    from pipeline.lake import Lake
    from pipeline.models.build import build

    # the same lake, shared policy weighted: bog1's 6 Wh go to its teams, no __shared__ line
    db = tmp_path / "weighted.duckdb"
    fleet = msgspec.structs.replace(load_fleet(), shared_policy="weighted")
    build(Lake(warehouse.parent / "lake"), fleet, db)
    out = tmp_path / "report.html"
    build_report(db, out, generated_at=GENERATED)
    page = out.read_text(encoding="utf-8")
    assert "idle policy separate; shared policy weighted;" in page
    assert "(__shared__)</td>" not in page
    kept = [t for t in figures(page)["chart-chargeback"]["data"] if t["xaxis"] == "x2"]
    assert kept[0]["x"] == ["bog1 idle"]
    with duckdb.connect(str(db), read_only=True) as con:
        teams = con.execute(
            "select sum(shared_facility_energy_kwh) from fct_chargeback_monthly"
            " where team not in ('__idle__', '__shared__')"
        ).fetchone()
    assert teams is not None and teams[0] == pytest.approx(0.006)
    assert "shared kWh by site: bog1 0.01, mex1 0.00." in page


def test_a_missing_table_names_the_file_and_the_table(warehouse: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.duckdb"
    shutil.copyfile(warehouse, broken)
    con = duckdb.connect(str(broken))
    con.execute("drop table fct_roi_site")
    con.close()
    out = tmp_path / "report.html"
    with pytest.raises(WarehouseError) as caught:
        build_report(broken, out)
    assert str(caught.value).startswith(f"{broken}: fct_roi_site: no such table")
    assert caught.value.table == "fct_roi_site"
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "not duckdb", "no tables", "no data"])
def test_unusable_warehouses_are_clean_errors(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    if kind == "not duckdb":
        db.write_text("not a database")
    elif kind == "no tables":
        duckdb.connect(str(db)).close()
    elif kind == "no data":
        from pipeline.fleet import load_fleet
        from pipeline.lake import Lake
        from pipeline.models.build import build

        build(Lake(tmp_path / "lake"), load_fleet(), db)
    expected = {
        "missing": "no warehouse here",
        "not duckdb": "cannot open the warehouse",
        "no tables": "empty warehouse",
        "no data": "fct_energy_per_request_hourly: no requests",
    }[kind]
    with pytest.raises(PipelineError, match=re.escape(f"{db}: {expected}")):
        build_report(db, tmp_path / "report.html")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".html") == []


def test_the_write_is_atomic(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report.html"
    out.write_text("the previous report")
    # a failed build leaves the previous report alone
    with pytest.raises(PipelineError):
        build_report(tmp_path / "missing.duckdb", out)
    assert out.read_text() == "the previous report"
    # a failure while renaming into place too, and no temp file is left behind
    real_replace = Path.replace

    def failing_replace(self: Path, target: Any) -> Path:
        if Path(target) == out:
            raise OSError(28, "No space left on device")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(PipelineError, match="cannot write the report: No space left"):
        build_report(warehouse, out)
    assert out.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    monkeypatch.undo()
    result = build_report(warehouse, out)
    assert result.path == out and out.stat().st_size == result.size_bytes > 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_the_cli_writes_the_report_and_says_where(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "report.html"
    result = CliRunner().invoke(
        app, ["report", "--db", str(warehouse), "--out", str(out), "--title", "Pilot"]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "") and "bytes" in result.output
    assert "<title>Pilot</title>" in out.read_text(encoding="utf-8")


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_the_cli_reports_a_bad_warehouse_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", "--db", str(tmp_path / "none.duckdb"),
         "--out", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {tmp_path / 'none.duckdb'}: no warehouse here (build it with "
                     "`microdc models build` or `microdc demo`)"]  # fmt: skip
