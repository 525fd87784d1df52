"""`microdc demo`: the whole pipeline on the embedded default, no Kafka needed.

simulate → stream core → Parquet lake → DuckDB models → quality checks → exports → HTML report,
then one summary row per site read back from the warehouse (the numbers finance would see).

The demo fleet is the built-in fleet file (three sites, six services, five teams) run with
`nodes_per_site` servers per site (default 4: three general-purpose and one GPU server) and
the request rates scaled by `rps_scale`; `nodes_per_site=None` runs every node of the file.
Sites, services, tariffs, baselines and teams are unchanged. The default span, two days, runs
in under a minute on two cores (`bench/bench_demo.py`); `--days 14` runs two weeks in a few
minutes. What bounds it is the stream core's per-minute work (every node x service x minute
and site x service x minute is closed in Python), not the number of requests.

Landing runs in a second process while simulation and the stream core run in this one; the
quality checks (Great Expectations) run in a second process while the exports and the report
are written.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from pipeline.errors import ConfigError
from pipeline.fleet.model import Fleet

DEMO_START = datetime(2026, 3, 2, tzinfo=UTC)
DEFAULT_DAYS = 2.0
DEFAULT_NODES_PER_SITE = 4
DEFAULT_RPS_SCALE = 0.005


@dataclass(frozen=True)
class DemoOptions:
    """What to run. `days` may be fractional (0.25 = six hours)."""

    #: The same base folder every command defaults to: out/lake, out/warehouse.duckdb, ...
    out: Path = Path("out")
    days: float = DEFAULT_DAYS
    seed: int = 7
    fleet: Path | None = None
    nodes_per_site: int | None = DEFAULT_NODES_PER_SITE
    rps_scale: float = DEFAULT_RPS_SCALE
    ip_secret: str | None = None
    quality: bool = True
    report: bool = True

    @property
    def minutes(self) -> int:
        return round(self.days * 1440)

    def check(self) -> None:
        if not 1 <= self.minutes <= 366 * 1440:
            raise ConfigError(f"--days {self.days:g}: expected a span from one minute to 366 days")
        if self.nodes_per_site is not None and self.nodes_per_site < 1:
            raise ConfigError(f"--nodes-per-site {self.nodes_per_site}: expected 1 or more")
        if self.rps_scale <= 0:
            raise ConfigError(f"--rps-scale {self.rps_scale:g}: expected a positive number")


@dataclass(frozen=True)
class SiteRow:
    """One site over the whole run, read back from the warehouse marts."""

    site_id: str
    requests: int
    facility_kwh: float
    pue: float | None
    wh_per_request: float | None
    gco2e_per_request: float | None
    p95_latency_ms: float | None
    chargeback_usd: float
    #: Renting the site's cores in the cloud over the same days, plus the same egress.
    cloud_usd: float | None
    #: The cloud price of only the CPU time the requests used, plus the same egress.
    cloud_used_usd: float | None
    #: 12-month ROI and payback against renting the same cores.
    roi_12m_pct: float | None
    payback_months: float | None
    #: The chargeback against the facility meter (fct_meter_reconciliation_monthly): the
    #: meter's facility kWh, design-PUE kWh of unmetered minutes, what the node rows carry
    #: (node IT x PUE), the shared infrastructure kWh, minutes whose meter IT is below the nodes.
    meter_kwh: float = 0.0
    design_pue_kwh: float = 0.0
    node_rows_kwh: float = 0.0
    shared_kwh: float = 0.0
    meter_below_nodes_minutes: int = 0


@dataclass
class DemoResult:
    """What the demo wrote, how long each step took, and the per-site summary."""

    out: Path
    sites: list[SiteRow] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    quality: Any = None  # pipeline.quality.QualityResult

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def demo_fleet(fleet: Fleet, nodes_per_site: int | None) -> Fleet:
    """`fleet` with at most `nodes_per_site` servers per site: the first general-purpose ones in
    file order plus one GPU server where the site has any (its GPU services need one)."""
    if nodes_per_site is None:
        return fleet
    keep: list[Any] = []
    for nodes in fleet.nodes_by_site.values():
        gpu = [n for n in nodes if n.has_gpu][:1]
        general = [n for n in nodes if not n.has_gpu][: max(nodes_per_site - len(gpu), 0)]
        chosen = {n.node_id for n in general + gpu} if nodes_per_site > 1 else {nodes[0].node_id}
        keep.extend(n for n in nodes if n.node_id in chosen)
    return msgspec.structs.replace(fleet, nodes=keep)


Step = Callable[[str, int | None], Callable[[int], None]]


def run_demo(options: DemoOptions, *, step: Step | None = None) -> DemoResult:
    """Run every stage into `options.out` (its previous lake and warehouse are replaced).

    `step(label, total)` is called as each stage starts and returns an `advance(n)` callable
    (the CLI draws progress bars with it).
    """
    from pipeline.fleet import load_fleet
    from pipeline.simulate import SimConfig

    options.check()
    begin = step or (lambda _label, _total: lambda _n: None)
    out = options.out.resolve()  # absolute: the quality checks run in a second process
    result = DemoResult(out)
    fleet = demo_fleet(load_fleet(options.fleet), options.nodes_per_site)
    config = SimConfig(
        start=DEMO_START, minutes=options.minutes, seed=options.seed, rps_scale=options.rps_scale
    )
    _claim(out)
    for stale in ("lake", "exports"):
        shutil.rmtree(out / stale, ignore_errors=True)

    with contextlib.ExitStack() as stack:
        # The quality checks run in a second process; it imports Great Expectations (~6 s)
        # while this one simulates, so the checks can start as soon as the warehouse exists.
        pool = None
        if options.quality:
            pool = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            )
            pool.submit(_warm_up)
        _simulate_land_build(options, fleet, config, result, begin)
        db = out / "warehouse.duckdb"

        started = time.perf_counter()
        checks = pool.submit(_run_checks, str(db), str(out / "quality-docs")) if pool else None
        finish = begin("exports and report" + (" (quality checks alongside)" * bool(checks)), None)
        result.paths.update(_exports(db, out / "exports"))
        finish(1)
        if options.report:
            from pipeline.report import build_report

            report = build_report(db, out / "report.html", title="microdc-pipeline demo")
            result.paths["HTML report"] = report.path.resolve()
            finish(1)
        if checks is not None:
            result.quality = checks.result()
            result.paths["Data Docs (quality)"] = result.quality.docs_index.resolve()
        result.seconds["quality, exports, report"] = time.perf_counter() - started
    result.sites = site_summary(db)
    return result


#: Written into the demo's folder: what it may replace on the next run.
DEMO_MARK = ".microdc-demo"


def _claim(out: Path) -> None:
    """Make `out` the demo's, refusing a lake the demo did not write (say, one `microdc land`
    filled under the same default `out/lake`): the demo replaces its lake on every run."""
    mark = out / DEMO_MARK
    if (out / "lake").exists() and not mark.exists():
        raise ConfigError(
            f"{out / 'lake'} holds a lake `microdc demo` did not write (no {mark}); the demo "
            "replaces its lake: pass --out to another folder, or remove that one"
        )
    out.mkdir(parents=True, exist_ok=True)
    mark.write_text(
        "written by `microdc demo`: its next run replaces lake/, warehouse.duckdb, exports/,\n"
        "report.html and quality-docs/ here\n",
        encoding="utf-8",
    )


def _simulate_land_build(
    options: DemoOptions, fleet: Fleet, config: Any, result: DemoResult, begin: Step
) -> None:
    """Simulate → stream core → lake (landing in a second process), then the models."""
    from pipeline.embedded.landing import simulate_and_land
    from pipeline.lake import IpPolicy, Lake
    from pipeline.models.build import build

    started = time.perf_counter()
    lake = Lake(result.out / "lake")
    ip_policy = IpPolicy(options.ip_secret.encode() if options.ip_secret else None)
    advance = begin("simulate → stream core → lake", config.minutes)
    run = simulate_and_land(
        fleet, config, lake, ip_policy=ip_policy, advance=lambda _n: advance(1), parallel=True
    )
    result.seconds["simulate, stream, land"] = time.perf_counter() - started
    result.counts.update(events=run.emitted, lake_rows=run.landed.rows, lake_files=run.landed.files)
    result.paths["Parquet lake"] = Path(lake.root)

    started = time.perf_counter()
    db = result.out / "warehouse.duckdb"
    models_advance = begin("DuckDB models", None)
    built = build(lake, fleet, db, progress=lambda _m, _i, _n: models_advance(1))
    result.seconds["models"] = time.perf_counter() - started
    result.counts["models"] = len(built.models)
    result.paths["DuckDB warehouse"] = db.resolve()


def _warm_up() -> None:
    """Import Great Expectations (seconds) in the checks' process while this one simulates."""
    from pipeline.quality.gx import import_gx

    import_gx()


def _run_checks(db: str, docs: str) -> Any:
    from pipeline.quality import run_checks

    return run_checks(db, docs)


def _exports(db: Path, folder: Path) -> dict[str, Path]:
    """Chargeback per month of the run (CSV, FOCUS 1.2, Excel) and the ROI table (CSV)."""
    from pipeline.models.analyses import analysis_sql
    from pipeline.models.export import export_chargeback, export_roi

    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db), read_only=True) as con:
        months = [
            m.strftime("%Y-%m")
            for (m,) in con.execute(analysis_sql("chargeback_months")).fetchall()
        ]
    paths: dict[str, Path] = {}
    for month in months:
        for fmt, suffix in (("csv", "csv"), ("focus", "focus.csv"), ("xlsx", "xlsx")):
            path = folder / f"chargeback-{month}.{suffix}"
            export_chargeback(db, month, fmt, path)  # type: ignore[arg-type]
            paths[f"chargeback {month} ({fmt})"] = path.resolve()
    roi = folder / "roi.csv"
    export_roi(db, "csv", roi)
    paths["ROI vs cloud (csv)"] = roi.resolve()
    return paths


def site_summary(db: Path) -> list[SiteRow]:
    """Per site over the run: requests, the facility kWh charged (the meter's, plus design-PUE
    energy where no meter counts), PUE (node-weighted, sum/sum), facility Wh and gCO2e (SCI:
    operational + embodied) per request with idle and shared infrastructure included, p95
    latency, chargeback total, the cloud cost over the same days (the site's cores rented, and
    only the CPU the requests used), the 12-month ROI and payback against renting the same cores
    (fct_roi_site.capacity_*), and the chargeback against the facility meter
    (fct_meter_reconciliation_monthly)."""
    from pipeline.models.analyses import rows_as

    with duckdb.connect(str(db), read_only=True) as con:
        return rows_as(con, "demo_site_summary", SiteRow)
