"""`microdc quality check`: Great Expectations 1.x suites over a built DuckDB warehouse.

GX's SQL path against DuckDB fails every expectation (NOTES.md), so each table is fetched with a
read-only DuckDB connection into a pandas frame and validated through GX's pandas data source
(one whole-dataframe batch definition per table, one suite, one validation definition and one
checkpoint whose `UpdateDataDocsAction` writes the Data Docs HTML).

Suites, one per table, named `<layer>.<table>`:

- `bronze`: the request logs and node telemetry (not-null ids and times, HTTP status 100..599,
  latency >= 0, power >= 0, CPU utilisation 0..1, one row per request / per node sample);
- `silver`: the stream's energy minutes, site minutes and SLO burn rates (natural keys unique,
  energy >= 0, PUE >= 1 — `pipeline.metrics.carbon.pue` falls back to the design PUE, itself >= 1,
  for `design` and `invalid_meter` minutes, so every row's PUE is >= 1 — coverage 0..1, error
  budget remaining <= 1);
- `marts`: the fct_* tables at their grain (unique grain, ratios in range, per-request values
  >= 0), fct_chargeback_monthly only when it was built;
- `reconciliation.invariants`: invariants computed in DuckDB SQL into a small frame of
  (invariant, site_id, month, expected, actual, ok, detail) rows, validated with `ok` in {True}
  (one expectation per invariant, through a row condition):
  per node-minute, the stream's energy (all services plus `__idle__`) equals the bronze
  recomputation (int_node_energy_minutes_from_bronze) within 1e-5 Wh; per site and site-local
  month, the chargeback's facility kWh equal the facility meter's (silver site minutes: the
  metered facility energy, plus node IT x design PUE over the minutes without a usable meter),
  its energy cost equals that energy's grid share at the local tariff of each minute (what the
  utility bills), and its `total_usd` equals energy + carbon + capex + opex shares. Minutes whose
  meter IT reading is below the node sum are listed in the notes.

Tables larger than `sample_rows` are validated on a deterministic sample, their first rows
ordered by the table's key, and the summary says so. The reconciliations always run on all rows
(in DuckDB).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import duckdb

from pipeline.errors import ConfigError
from pipeline.fleet.model import IdlePolicy

if TYPE_CHECKING:
    from rich.console import Console

SAMPLE_ROWS = 200_000
#: Per node-minute stream vs bronze energy (the stream sums integer micro-Wh, SQL sums floats).
CONSERVATION_TOLERANCE_WH = 1e-5
#: Chargeback reconciliations: |expected - actual| <= ABS + REL * |expected|.
RECONCILE_ABS_TOLERANCE = 1e-6
RECONCILE_REL_TOLERANCE = 1e-9
CHARGEBACK = "fct_chargeback_monthly"
_COST_PARTS = ("energy_cost_usd", "carbon_cost_usd", "capex_share_usd", "opex_share_usd")
_EXAMPLES = 3


# -- results ---------------------------------------------------------------------------------------


@dataclass
class ExpectationOutcome:
    """One expectation of one suite: what it asserted, whether it held, and why not."""

    expectation: str
    success: bool
    detail: str = ""  # why it failed: counts, or the error GX raised
    examples: str = ""  # a few unexpected rows (with their key columns)

    @property
    def line(self) -> str:
        return self.detail + (f", e.g. {self.examples}" if self.examples else "")


@dataclass
class SuiteOutcome:
    """One suite (one table, or the reconciliation frame) and its expectations' outcomes."""

    suite: str
    table: str
    rows_validated: int
    rows_total: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    error: str | None = None  # the suite could not run (table missing, fetch failed)

    @property
    def sampled(self) -> bool:
        return self.rows_validated < self.rows_total

    @property
    def passed(self) -> int:
        return sum(o.success for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.success for o in self.outcomes) + (self.error is not None)

    @property
    def success(self) -> bool:
        return self.failed == 0

    def failures(self) -> list[str]:
        lines = [f"{self.suite}: {self.error}"] if self.error is not None else []
        lines += [
            f"{self.suite}: {o.expectation}: {o.line}" for o in self.outcomes if not o.success
        ]
        return lines


@dataclass
class QualityResult:
    db: Path
    docs_dir: Path
    gx_version: str
    suites: list[SuiteOutcome]
    notes: list[str]
    seconds: float

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    @property
    def docs_index(self) -> Path:
        return self.docs_dir / "index.html"

    @property
    def expectations(self) -> int:
        return sum(len(s.outcomes) for s in self.suites)

    def failures(self) -> list[str]:
        """One readable line per failed expectation (or suite that could not run)."""
        return [line for s in self.suites for line in s.failures()]

    def suite(self, name: str) -> SuiteOutcome:
        for s in self.suites:
            if s.suite == name:
                return s
        raise KeyError(name)


# -- suites ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TableSpec:
    layer: str
    table: str
    key: tuple[str, ...]
    expectations: Callable[[Any], list[Any]]  # gx.expectations module -> expectations
    optional: bool = False

    @property
    def suite(self) -> str:
        return f"{self.layer}.{self.table}"


def _column(name: str) -> Any:
    """A GX row-condition column (`_column("x") == 1`: GX 1.9+ conditions, not pandas strings)."""
    from great_expectations.expectations.row_conditions import Column

    return Column(name)


def _not_null(gxe: Any, *columns: str) -> list[Any]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _at_least(gxe: Any, value: float, *columns: str) -> list[Any]:
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=value) for c in columns]


def _unit(gxe: Any, *columns: str) -> list[Any]:
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in columns]


def _unique(gxe: Any, *columns: str) -> list[Any]:
    if len(columns) == 1:
        return [gxe.ExpectColumnValuesToBeUnique(column=columns[0])]
    return [gxe.ExpectCompoundColumnsToBeUnique(column_list=list(columns))]


_PUE_SOURCES = ["metered", "design", "invalid_meter"]


def _request_log(gxe: Any) -> list[Any]:
    return [
        *_not_null(gxe, "request_id", "finished_at", "site_id", "node_id", "service", "status"),
        *_unique(gxe, "request_id"),
        gxe.ExpectColumnValuesToBeBetween(column="status", min_value=100, max_value=599),
        *_at_least(gxe, 0, "latency_ms"),
    ]


def _node_telemetry(gxe: Any) -> list[Any]:
    return [
        *_not_null(gxe, "node_id", "site_id", "observed_at", "interval_start", "power_w"),
        *_unique(gxe, "node_id", "observed_at"),
        *_at_least(gxe, 0, "power_w"),
        *_unit(gxe, "cpu_util"),
    ]


def _energy_minutes(gxe: Any) -> list[Any]:
    return [
        *_not_null(
            gxe, "key", "window_start", "site_id", "node_id", "service", "it_energy_wh", "pue"
        ),
        *_unique(gxe, "key"),
        *_at_least(gxe, 0, "it_energy_wh", "facility_energy_wh"),
        # invalid_meter minutes carry the design PUE (>= 1) too: the source flags the glitch.
        *_at_least(gxe, 1, "pue"),
        gxe.ExpectColumnValuesToBeInSet(column="pue_source", value_set=_PUE_SOURCES),
        *_unit(gxe, "coverage"),
    ]


def _site_minutes(gxe: Any) -> list[Any]:
    return [
        *_not_null(gxe, "key", "window_start", "site_id", "pue"),
        *_unique(gxe, "key"),
        gxe.ExpectColumnValuesToBeBetween(
            column="pue",
            min_value=1,
            row_condition=_column("pue_source") == "metered",
        ),
        gxe.ExpectColumnValuesToBeInSet(column="pue_source", value_set=_PUE_SOURCES),
        *_at_least(gxe, 0, "node_it_energy_wh"),
        *_unit(gxe, "coverage"),
    ]


def _slo_burn(gxe: Any) -> list[Any]:
    return [
        *_not_null(gxe, "key", "window_start", "service", "site_id"),
        *_unique(gxe, "key"),
        gxe.ExpectColumnValuesToBeBetween(column="availability_budget_remaining", max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="latency_budget_remaining", max_value=1),
    ]


def _energy_per_request(gxe: Any) -> list[Any]:
    return [
        *_unique(gxe, "site_id", "service", "team", "hour_utc"),
        *_not_null(gxe, "site_id", "service", "hour_utc", "requests"),
        *_at_least(gxe, 1, "requests"),
        *_at_least(gxe, 0, "it_wh_per_request", "facility_wh_per_request", "gco2e_per_request"),
    ]


def _site_efficiency(gxe: Any) -> list[Any]:
    return [
        *_unique(gxe, "site_id", "local_date"),
        *_not_null(gxe, "site_id", "local_date"),
        *_at_least(gxe, 1, "pue"),
        *_unit(gxe, "renewable_share", "coverage"),
    ]


def _slo_daily(gxe: Any) -> list[Any]:
    return [
        *_unique(gxe, "service", "site_id", "date_utc"),
        *_not_null(gxe, "service", "site_id", "date_utc"),
        *_unit(gxe, "availability_sli", "latency_sli"),
    ]


def _chargeback(gxe: Any) -> list[Any]:
    return [
        *_unique(gxe, "site_id", "local_month", "team"),
        *_not_null(gxe, "site_id", "local_month", "team", "total_usd"),
        *_at_least(gxe, 0, "it_energy_kwh", "facility_energy_kwh", *_COST_PARTS),
        *_at_least(gxe, 0, "shared_facility_energy_kwh", "design_pue_facility_energy_kwh"),
        *(
            gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(get_args(IdlePolicy)))
            for column in ("idle_policy", "shared_policy")
        ),
    ]


def _roi(gxe: Any) -> list[Any]:
    return [
        *_unique(gxe, "site_id"),
        *_not_null(gxe, "site_id", "pilot_days", "investment_usd", "cloud_usd_per_month"),
        *_at_least(gxe, 0, "pilot_days", "microdc_usd_per_month", "cloud_usd_per_month"),
        *_at_least(gxe, 0, "payback_months", "egress_gb_per_month", "facility_wh_per_request"),
    ]


TABLES: tuple[_TableSpec, ...] = (
    _TableSpec("bronze", "stg_request_log", ("request_id",), _request_log),
    _TableSpec("bronze", "stg_node_telemetry", ("node_id", "observed_at"), _node_telemetry),
    _TableSpec("silver", "stg_energy_minutes", ("key",), _energy_minutes),
    _TableSpec("silver", "stg_site_minutes", ("key",), _site_minutes),
    _TableSpec("silver", "stg_slo_burn", ("key",), _slo_burn),
    _TableSpec(
        "marts",
        "fct_energy_per_request_hourly",
        ("site_id", "service", "team", "hour_utc"),
        _energy_per_request,
    ),
    _TableSpec("marts", "fct_site_efficiency_daily", ("site_id", "local_date"), _site_efficiency),
    _TableSpec("marts", "fct_slo_daily", ("service", "site_id", "date_utc"), _slo_daily),
    _TableSpec("marts", CHARGEBACK, ("site_id", "local_month", "team"), _chargeback, optional=True),
    _TableSpec("marts", "fct_roi_site", ("site_id",), _roi, optional=True),
)
RECONCILIATION_SUITE = "reconciliation.invariants"


# -- reconciliations (DuckDB SQL) ------------------------------------------------------------------

_LOCAL_MONTH = "cast(date_trunc('month', timezone(d.timezone, {ts})) as date)"

_CONSERVATION_SQL = f"""
with stream as (
    select node_id, site_id, window_start, sum(it_energy_wh) as wh
    from stg_energy_minutes
    group by all
),
joined as (
    select
        s.site_id,
        {_LOCAL_MONTH.format(ts="s.window_start")} as month,
        b.it_energy_wh as expected,
        s.wh as actual
    from stream as s
    join int_node_energy_minutes_from_bronze as b using (node_id, window_start)
    join dim_site as d on d.site_id = s.site_id
)
select
    site_id,
    month,
    sum(expected) as expected,
    sum(actual) as actual,
    count(*) as compared,
    count(*) filter (where not abs(actual - expected) <= {CONSERVATION_TOLERANCE_WH}) as mismatched,
    max(abs(actual - expected)) as worst
from joined
group by all
order by site_id, month
"""

# What the chargeback must add up to, from the facility meter itself (silver site minutes), not
# from the attributed rows it is built from: per site and site-local month, the meter's facility
# kWh over the minutes it metered (`pue_source = 'metered'`), plus node IT x design PUE over the
# minutes without a usable meter; and the energy cost of that energy, grid share only, at the
# local tariff of each minute (what the utility bills). The calendar and the tariff of a
# site-minute come from int_site_minute_prices, the one home of both; sites missing from
# dim_site are dropped there, as in the mart.
_METER_SQL = """
with minutes as (
    select
        m.site_id,
        p.local_month as month,
        m.pue_source = 'metered' as metered,
        case
            when m.pue_source = 'metered' then m.metered_facility_energy_wh
            else m.node_it_energy_wh * m.pue
        end / 1000 as kwh,
        least(greatest(coalesce(m.renewable_share, 0), 0), 1) as renewable_share,
        p.usd_per_kwh
    from stg_site_minutes as m
    join int_site_minute_prices as p using (site_id, window_start)
)
select
    site_id,
    month,
    coalesce(sum(kwh) filter (where metered), 0) as meter_kwh,
    coalesce(sum(kwh) filter (where not metered), 0) as design_kwh,
    count(*) filter (where not metered) as design_minutes,
    sum(kwh * (1 - renewable_share) * usd_per_kwh) as cost_usd
from minutes
group by all
"""

_CHARGEBACK_METER_SQL = f"""
with meter as ({_METER_SQL}),
mart as (
    select
        site_id,
        local_month as month,
        sum(facility_energy_kwh) as kwh,
        sum(energy_cost_usd) as cost_usd
    from {CHARGEBACK}
    group by all
)
select
    site_id,
    month,
    meter.meter_kwh,
    meter.design_kwh,
    meter.design_minutes,
    meter.meter_kwh + meter.design_kwh as expected_kwh,
    mart.kwh as actual_kwh,
    meter.cost_usd as expected_usd,
    mart.cost_usd as actual_usd
from meter
full join mart using (site_id, month)
order by site_id, month
"""

# A valid meter whose IT reading is below the node sum (meter drift, a node outside the meter):
# the chargeback follows the meter's facility energy there; the minutes are reported.
_METER_BELOW_NODES_SQL = """
select
    m.site_id,
    p.local_month as month,
    count(*) as minutes,
    sum(m.nodes_over_meter_it_wh) / 1000 as kwh
from int_site_meter_minutes as m
join int_site_minute_prices as p using (site_id, window_start)
where m.meter_status = 'meter_below_nodes'
group by all
order by all
"""

_CHARGEBACK_TOTAL_SQL = f"""
select
    site_id,
    local_month as month,
    sum({" + ".join(_COST_PARTS)}) as expected,
    sum(total_usd) as actual,
    count(*) as rows,
    count(*) filter (
        where not abs(total_usd - ({" + ".join(_COST_PARTS)}))
            <= {RECONCILE_ABS_TOLERANCE}
            + {RECONCILE_REL_TOLERANCE} * abs({" + ".join(_COST_PARTS)})
    ) as mismatched
from {CHARGEBACK}
group by all
order by site_id, month
"""


@dataclass
class _Row:
    invariant: str
    site_id: str | None
    month: str | None
    expected: float | None
    actual: float | None
    tolerance: float | None
    ok: bool
    detail: str

    @classmethod
    def failed(cls, invariant: str, detail: str) -> _Row:
        """An invariant that could not be computed at all."""
        return cls(invariant, None, None, None, None, None, False, detail)


def _close(expected: float | None, actual: float | None) -> tuple[bool, float]:
    tol = RECONCILE_ABS_TOLERANCE + RECONCILE_REL_TOLERANCE * abs(expected or 0.0)
    if expected is None or actual is None or not math.isfinite(expected - actual):
        return False, tol
    return abs(expected - actual) <= tol, tol


def _month(value: Any) -> str | None:
    return None if value is None else str(value)[:7]


def _reconcile(con: duckdb.DuckDBPyConnection, tables: set[str], notes: list[str]) -> list[_Row]:
    rows: list[_Row] = []
    name = "node_minute_energy_conservation"
    try:
        for site, month, expected, actual, compared, mismatched, worst in con.execute(
            _CONSERVATION_SQL
        ).fetchall():
            rows.append(
                _Row(
                    name,
                    site,
                    _month(month),
                    expected,
                    actual,
                    CONSERVATION_TOLERANCE_WH,
                    mismatched == 0,
                    f"{compared:,} node-minutes compared, {mismatched:,} off by more than "
                    f"{CONSERVATION_TOLERANCE_WH:g} Wh (worst {worst:.3g} Wh)",
                )
            )
        if not rows:
            notes.append(f"{name}: no node-minute is in both the stream and the bronze telemetry")
    except duckdb.Error as exc:
        rows.append(_Row.failed(name, f"cannot compute: {exc}"))

    if CHARGEBACK not in tables:
        notes.append(f"{CHARGEBACK}: not built; its suite and reconciliations were skipped")
        return rows
    columns = {
        c
        for (c,) in con.execute(
            "select column_name from duckdb_columns() where table_name = ?", [CHARGEBACK]
        ).fetchall()
    }
    needed = {"site_id", "local_month", "facility_energy_kwh", "total_usd", *_COST_PARTS}
    if missing := sorted(needed - columns):
        rows.append(
            _Row.failed(
                "chargeback", f"{CHARGEBACK} lacks column(s) {', '.join(missing)}: cannot reconcile"
            )
        )
        return rows
    try:
        rows.extend(_meter_rows(con, notes))
    except duckdb.Error as exc:
        rows.append(_Row.failed("chargeback_facility_kwh_equals_meter", f"cannot compute: {exc}"))
    for site, month, expected, actual, n, mismatched in con.execute(
        _CHARGEBACK_TOTAL_SQL
    ).fetchall():
        ok, tol = _close(expected, actual)
        rows.append(
            _Row(
                "chargeback_total_equals_parts",
                site,
                _month(month),
                expected,
                actual,
                tol,
                ok and mismatched == 0,
                f"sum of parts {_num(expected)} USD, total_usd {_num(actual)} USD, "
                f"{mismatched} of {n} rows off",
            )
        )
    return rows


def _meter_rows(con: duckdb.DuckDBPyConnection, notes: list[str]) -> list[_Row]:
    """The chargeback against the facility meter, per site and local month; the minutes whose
    meter IT reading is below the node sum become notes."""
    out: list[_Row] = []
    for (
        site,
        month,
        meter_kwh,
        design_kwh,
        design_minutes,
        expected,
        actual,
        expected_usd,
        actual_usd,
    ) in con.execute(_CHARGEBACK_METER_SQL).fetchall():
        ok, tol = _close(expected, actual)
        design = (
            f" + design PUE {_num(design_kwh)} kWh over {design_minutes:,} unmetered minutes"
            if design_minutes
            else ""
        )
        out.append(
            _Row(
                "chargeback_facility_kwh_equals_meter",
                site,
                _month(month),
                expected,
                actual,
                tol,
                ok,
                f"{site} {_month(month)}: facility meter {_num(meter_kwh)} kWh{design}, "
                f"chargeback rows {_num(actual)} kWh",
            )
        )
        ok, tol = _close(expected_usd, actual_usd)
        out.append(
            _Row(
                "chargeback_energy_cost_equals_meter",
                site,
                _month(month),
                expected_usd,
                actual_usd,
                tol,
                ok,
                f"{site} {_month(month)}: the meter's grid kWh at the local tariffs "
                f"{_num(expected_usd)} USD, chargeback energy cost {_num(actual_usd)} USD",
            )
        )
    for site, month, minutes, kwh in con.execute(_METER_BELOW_NODES_SQL).fetchall():
        notes.append(
            f"{site} {_month(month)}: {minutes:,} minute(s) whose facility meter's IT reading is "
            f"below the node sum by {_num(kwh)} kWh (meter drift, or a node outside the meter); "
            "charged at the meter's facility energy, no shared energy (int_site_meter_minutes)"
        )
    return out


def _reconciliation_frame(rows: list[_Row]) -> Any:
    """The rows as a pandas frame (through Arrow: typed columns even when there are no rows)."""
    import pyarrow as pa

    text, number = pa.string(), pa.float64()
    schema = pa.schema(
        [
            ("invariant", text),
            ("site_id", text),
            ("month", text),
            ("expected", number),
            ("actual", number),
            ("tolerance", number),
            ("ok", pa.bool_()),
            ("detail", text),
        ]
    )
    return pa.Table.from_pylist([vars(r) for r in rows], schema=schema).to_pandas()


def _num(value: float | None) -> str:
    return "null" if value is None else f"{value:,.6f}"


# -- GX --------------------------------------------------------------------------------------------


def _import_gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        import great_expectations as gx
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError(f"great_expectations is not installed: {exc}") from exc
    return gx


class _Gx:
    """An ephemeral GX context writing Data Docs into `docs_dir`."""

    def __init__(self, docs_dir: Path) -> None:
        gx = _import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.gxe = gx.expectations
        self.version = str(gx.__version__)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        site = {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir.resolve()),
            },
        }
        sites = self.context.list_data_docs_sites()
        for name in list(sites):
            self.context.delete_data_docs_site(name)
        self.context.add_data_docs_site("local_site", site)
        self.source = self.context.data_sources.add_pandas("warehouse")

    def validate(
        self,
        suite_name: str,
        asset: str,
        frame: Any,  # pandas.DataFrame (pandas ships no type stubs here)
        expectations: list[Any],
        index: Sequence[str],
    ) -> list[ExpectationOutcome]:
        gx = self.gx
        batch = self.source.add_dataframe_asset(name=asset).add_batch_definition_whole_dataframe(
            f"{asset}_whole"
        )
        suite = self.context.suites.add(gx.ExpectationSuite(name=suite_name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"{suite_name}_checkpoint",
                validation_definitions=[definition],
                actions=[],  # Data Docs are built once, after the last suite (build_docs)
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": _EXAMPLES,
                    "unexpected_index_column_names": [c for c in index if c in frame.columns],
                },
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = checkpoint.run(batch_parameters={"dataframe": frame})
        outcomes: list[ExpectationOutcome] = []
        for validation in result.run_results.values():
            for r in validation.results:
                outcome = ExpectationOutcome(_describe(r.expectation_config), bool(r.success))
                if not outcome.success:
                    outcome.detail, outcome.examples = _failure_detail(r)
                outcomes.append(outcome)
        return outcomes

    def build_docs(self) -> None:
        """Render every stored validation result into the Data Docs site, once."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.context.build_data_docs()


def _describe(config: Any) -> str:
    kwargs = dict(config.kwargs)
    name = str(config.type).removeprefix("expect_")
    what = kwargs.get("column") or ", ".join(kwargs.get("column_list") or [])
    bounds = []
    if kwargs.get("min_value") is not None:
        bounds.append(f">= {kwargs['min_value']:g}")
    if kwargs.get("max_value") is not None:
        bounds.append(f"<= {kwargs['max_value']:g}")
    if kwargs.get("value_set") is not None:
        bounds.append("in {" + ", ".join(map(str, kwargs["value_set"])) + "}")
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict) and condition.get("type") == "comparison":
        column = (condition.get("column") or {}).get("name")
        condition = f"{column} {condition.get('operator')} {condition.get('parameter')!r}"
    text = " ".join([what, " and ".join(bounds)] if bounds else [what])
    if condition:
        text += f" where {condition}"
    return f"{name}({text})"


def _failure_detail(r: Any) -> tuple[str, str]:
    info = r.exception_info or {}
    messages = []
    if info.get("raised_exception"):
        messages.append(str(info.get("exception_message")))
    else:
        for value in info.values():
            if isinstance(value, dict) and value.get("raised_exception"):
                messages.append(str(value.get("exception_message")))
    if messages:
        return "error: " + "; ".join(dict.fromkeys(messages)), ""
    res = r.result or {}
    count, total = res.get("unexpected_count"), res.get("element_count")
    parts = []
    if count is not None:
        parts.append(
            f"{count:,} of {total:,} rows unexpected" if total else f"{count:,} unexpected"
        )
    if res.get("observed_value") is not None:
        parts.append(f"observed {res['observed_value']}")
    examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
    return ", ".join(parts) or "failed", "; ".join(_example(e) for e in examples[:_EXAMPLES])


def _example(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return _plain(value)


def _plain(value: Any) -> str:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):  # pandas Timestamps too; DuckDB DATEs arrive as midnight
        if value.tzinfo is None and value.time() == dt_time(0):
            return value.date().isoformat()
        return value.isoformat()
    return str(value)


# -- fetching --------------------------------------------------------------------------------------


def _fetch(con: duckdb.DuckDBPyConnection, spec: _TableSpec, sample_rows: int) -> tuple[Any, int]:
    count = con.execute(f"select count(*) from {spec.table}").fetchone()
    total = int(count[0]) if count else 0
    order = ", ".join(spec.key)
    frame = con.execute(
        f"select * from {spec.table} order by {order} limit {int(sample_rows)}"
    ).df()
    return frame, total


# -- entry point -----------------------------------------------------------------------------------


def run_checks(
    db_path: Path | str,
    docs_dir: Path | str | None = None,
    *,
    sample_rows: int = SAMPLE_ROWS,
    progress: Callable[[str], None] | None = None,
) -> QualityResult:
    """Validate every suite against the warehouse at `db_path` and write Data Docs to `docs_dir`
    (default `<db dir>/quality-docs/`)."""
    started = time.perf_counter()
    db = Path(db_path)
    if not db.is_file():
        raise ConfigError(f"{db}: no warehouse (build one: microdc models build, or microdc demo)")
    docs = Path(docs_dir) if docs_dir is not None else db.parent / "quality-docs"
    docs.mkdir(parents=True, exist_ok=True)
    gx = _Gx(docs)
    suites: list[SuiteOutcome] = []
    notes: list[str] = []
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set enable_progress_bar = false")  # our own progress, not DuckDB's
        tables = {
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() union all "
                "select view_name from duckdb_views() where not internal"
            ).fetchall()
        }
        for spec in TABLES:
            if spec.table not in tables:
                if not spec.optional:
                    suites.append(
                        SuiteOutcome(
                            spec.suite, spec.table, 0, 0, error="table missing from the warehouse"
                        )
                    )
                continue
            if progress is not None:
                progress(spec.suite)
            try:
                frame, total = _fetch(con, spec, sample_rows)
            except duckdb.Error as exc:
                suites.append(
                    SuiteOutcome(spec.suite, spec.table, 0, 0, error=f"cannot read: {exc}")
                )
                continue
            outcome = SuiteOutcome(spec.suite, spec.table, len(frame), total)
            outcome.outcomes = gx.validate(
                spec.suite, spec.table, frame, spec.expectations(gx.gxe), spec.key
            )
            if outcome.sampled:
                notes.append(
                    f"{spec.table}: validated a sample, the first {len(frame):,} of {total:,} rows "
                    f"ordered by ({', '.join(spec.key)})"
                )
            suites.append(outcome)
        if progress is not None:
            progress(RECONCILIATION_SUITE)
        rows = _reconcile(con, tables, notes)
    finally:
        con.close()
    frame = _reconciliation_frame(rows)
    recon = SuiteOutcome(RECONCILIATION_SUITE, "(DuckDB SQL)", len(frame), len(frame))
    recon.outcomes = gx.validate(
        RECONCILIATION_SUITE,
        "reconciliation",
        frame,
        [
            gx.gxe.ExpectColumnValuesToNotBeNull(column="ok"),
            *(
                gx.gxe.ExpectColumnValuesToBeInSet(
                    column="ok",
                    value_set=[True],
                    row_condition=_column("invariant") == name,
                )
                for name in dict.fromkeys(r.invariant for r in rows)
            ),
        ],
        ("invariant", "site_id", "month", "detail"),
    )
    suites.append(recon)
    gx.build_docs()
    return QualityResult(db, docs, gx.version, suites, notes, time.perf_counter() - started)


def print_summary(result: QualityResult, console: Console) -> None:
    """A rich table: suite, rows, expectations, passed, failed, first failure."""
    from rich.table import Table

    verdict = "[green]passed[/]" if result.success else "[red]FAILED[/]"
    table = Table(
        title=f"data quality of {result.db} (Great Expectations {result.gx_version}): {verdict}"
    )
    table.add_column("suite", min_width=18, overflow="fold")
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("expect.", justify="right", no_wrap=True)
    table.add_column("passed", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("first failure", overflow="fold")
    for s in result.suites:
        rows = f"{s.rows_validated:,}" + (f" of {s.rows_total:,} (sample)" if s.sampled else "")
        failed = [o for o in s.outcomes if not o.success]
        first = s.error or (f"{failed[0].expectation}: {failed[0].detail}" if failed else "")
        table.add_row(
            s.suite,
            rows,
            str(len(s.outcomes)),
            str(s.passed),
            f"[red]{s.failed}[/]" if s.failed else "0",
            first,
        )
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"Data Docs: {result.docs_index.resolve()}", highlight=False, soft_wrap=True)
