"""`microdc demo`: every stage runs, writes what it says, and the summary is the lake's numbers."""

from __future__ import annotations

import csv

import duckdb
import pytest

from pipeline.embedded.demo import DemoOptions, DemoResult, demo_fleet, run_demo
from pipeline.errors import ConfigError
from pipeline.fleet import load_fleet


def test_demo_fleet_keeps_sites_services_and_one_gpu_server_per_site() -> None:
    full = load_fleet(None)
    small = demo_fleet(full, 4)
    assert [s.site_id for s in small.sites] == [s.site_id for s in full.sites]
    assert small.services == full.services and small.teams == full.teams
    for site, nodes in small.nodes_by_site.items():
        assert len(nodes) == 4, site
        assert sum(n.has_gpu for n in nodes) == 1, site
        assert all(n in full.nodes_by_site[site] for n in nodes)
    assert demo_fleet(full, None) is full
    assert all(len(nodes) == 1 for nodes in demo_fleet(full, 1).nodes_by_site.values())


def test_cli_defaults_are_the_demo_defaults() -> None:
    import typer

    from pipeline.cli import app
    from pipeline.embedded.demo import DEFAULT_DAYS, DEFAULT_NODES_PER_SITE, DEFAULT_RPS_SCALE

    command = typer.main.get_command(app).commands["demo"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    assert defaults["days"] == DEFAULT_DAYS
    assert defaults["nodes_per_site"] == DEFAULT_NODES_PER_SITE
    assert defaults["rps_scale"] == DEFAULT_RPS_SCALE
    assert defaults["out_dir"] == DemoOptions().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DemoOptions(days=0), "--days 0"),
        (DemoOptions(nodes_per_site=0), "--nodes-per-site 0"),
        (DemoOptions(rps_scale=-1), "--rps-scale -1"),
    ],
)
def test_bad_options_are_refused(options: DemoOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.check()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    out = tmp_path_factory.mktemp("demo")
    return run_demo(DemoOptions(out=out, days=3 / 24, rps_scale=0.02))


def test_every_stage_wrote_its_output(demo: DemoResult) -> None:
    paths = demo.paths
    assert paths["Parquet lake"].is_dir()
    assert paths["DuckDB warehouse"].is_file()
    assert paths["HTML report"].stat().st_size > 1_000_000  # plotly.js is inlined
    assert paths["Data Docs (quality)"].is_file()
    assert {"chargeback 2026-03 (csv)", "chargeback 2026-03 (focus)", "ROI vs cloud (csv)"} <= set(
        paths
    )
    assert demo.quality.success, demo.quality.failures()
    assert demo.counts["events"] > 0 and demo.counts["lake_rows"] > demo.counts["events"]
    assert set(demo.seconds) == {"simulate, stream, land", "models", "quality, exports, report"}


def test_summary_is_the_lake_summed_independently(demo: DemoResult) -> None:
    lake = demo.paths["Parquet lake"]
    with duckdb.connect() as con:
        site = con.execute(
            # facility energy as the meter metered it (node IT x design PUE where no meter
            # counts); PUE weighted by the nodes' IT energy; the shared infrastructure's carbon
            # (metered IT no node reported x PUE x the minute's mix, 41 g/kWh on-site solar)
            f"""select site_id,
                sum(case when pue_source = 'metered' then facility_energy_wh
                    else node_it_energy_wh * pue end) / 1000,
                sum(node_it_energy_wh * pue) / sum(node_it_energy_wh), sum(requests),
                sum(case when pue_source = 'metered' and it_energy_wh > node_it_energy_wh
                    then (it_energy_wh - node_it_energy_wh) * pue / 1000
                    * ((1 - renewable_share) * grid_intensity_gco2e_per_kwh
                       + renewable_share * 41.0) else 0 end),
                sum(facility_energy_wh) filter (where pue_source = 'metered') / 1000
                from read_parquet('{lake}/silver/site_minutes/**/*.parquet', hive_partitioning=1)
                group by site_id order by site_id"""
        ).fetchall()
        energy = {
            row[0]: row[1:]
            for row in con.execute(
                # a meter whose IT reading is below the node sum caps the rows at the meter
                f"""select e.site_id,
                sum(e.operational_gco2e * case when m.pue_source = 'metered'
                    and m.node_it_energy_wh > m.it_energy_wh
                    then m.facility_energy_wh / (m.node_it_energy_wh * m.pue) else 1 end
                    + e.embodied_gco2e),
                sum(e.bytes_out) / 1e9,
                (epoch(max(e.window_start) - min(e.window_start)) + 60) / 86400
                from read_parquet('{lake}/silver/energy_minutes/**/*.parquet',
                    hive_partitioning=1) as e
                left join read_parquet('{lake}/silver/site_minutes/**/*.parquet',
                    hive_partitioning=1) as m using (site_id, window_start)
                group by e.site_id"""
            ).fetchall()
        }
    fleet = demo_fleet(load_fleet(None), DemoOptions().nodes_per_site)
    assert [s.site_id for s in demo.sites] == [row[0] for row in site] == ["bog1", "mex1", "sao1"]
    for summary, row in zip(demo.sites, site, strict=True):
        site_id, kwh, pue, requests, shared_gco2e, meter_kwh = row
        assert summary.requests == requests
        assert summary.facility_kwh == pytest.approx(kwh, rel=1e-9)
        assert summary.meter_kwh == pytest.approx(meter_kwh, rel=1e-9)
        assert 0 < summary.shared_kwh < 0.05 * kwh  # network and storage: ~3 % in the demo
        assert summary.pue == pytest.approx(pue, rel=1e-9)
        assert summary.wh_per_request == pytest.approx(kwh * 1000 / requests, rel=1e-9)
        gco2e, egress_gb, pilot_days = energy[site_id]
        assert shared_gco2e > 0
        assert summary.gco2e_per_request == pytest.approx(
            (gco2e + shared_gco2e) / requests, rel=1e-6
        )
        # the same cores rented around the clock over the pilot's days, plus the same egress
        baseline = fleet.site_by_id[site_id].baseline
        cores = sum(n.cores for n in fleet.nodes_by_site[site_id])
        assert cores == 3 * 64 + 48
        assert summary.cloud_usd == pytest.approx(
            cores * baseline.usd_per_core_hour * 24 * pilot_days
            + egress_gb * baseline.egress_usd_per_gb,
            rel=1e-9,
        )
        assert summary.p95_latency_ms is not None and 0 < summary.p95_latency_ms < 10_000


def test_summary_chargeback_equals_the_exported_files(demo: DemoResult) -> None:
    with demo.paths["chargeback 2026-03 (csv)"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_site: dict[str, float] = {}
    for row in rows:
        by_site[row["site_id"]] = by_site.get(row["site_id"], 0.0) + float(row["total_usd"])
    for summary in demo.sites:
        assert summary.chargeback_usd == pytest.approx(by_site[summary.site_id], abs=1e-5)
        assert summary.chargeback_usd > 0
