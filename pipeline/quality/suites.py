"""The expectation suites of the warehouse, one per table, as plain data (no GX import here).

Suites, one per table, named `<layer>.<table>`:

- `bronze`: the request logs and node telemetry (not-null ids and times, HTTP status 100..599,
  latency >= 0, power >= 0, CPU utilisation 0..1, one row per request / per node sample);
- `silver`: the stream's energy minutes, site minutes and SLO burn rates (natural keys unique,
  energy >= 0, PUE >= 1 — `pipeline.metrics.carbon.pue` falls back to the design PUE, itself >= 1,
  for `design` and `invalid_meter` minutes, so every row's PUE is >= 1 — coverage 0..1, error
  budget remaining <= 1);
- `marts`: the fct_* tables at their grain (unique grain, ratios in range, per-request values
  >= 0), fct_chargeback_monthly only when it was built;
- `reconciliation.invariants`: the frame of `pipeline.quality.invariants`, validated with `ok` in
  {True} (one expectation per invariant, through a row condition).

An `Expectation` names what to assert; `pipeline.quality.gx` turns it into the Great
Expectations object of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipeline.fleet.model import IdlePolicy

CHARGEBACK = "fct_chargeback_monthly"
#: The chargeback's cost columns; `total_usd` is their sum.
COST_PARTS = ("energy_cost_usd", "carbon_cost_usd", "capex_share_usd", "opex_share_usd")
RECONCILIATION_SUITE = "reconciliation.invariants"

Kind = Literal["not_null", "unique", "compound_unique", "between", "in_set"]


@dataclass(frozen=True)
class Expectation:
    """One expectation: `kind` over `columns`, bounds or a value set, and an optional row
    condition `where = (column, value)` (only the rows whose `column` equals `value`)."""

    kind: Kind
    columns: tuple[str, ...]
    min_value: float | None = None
    max_value: float | None = None
    value_set: tuple[Any, ...] | None = None
    where: tuple[str, Any] | None = None


@dataclass(frozen=True)
class TableSpec:
    """One table's suite: its layer, its key (sample order, example rows) and expectations."""

    layer: str
    table: str
    key: tuple[str, ...]
    expectations: tuple[Expectation, ...]
    optional: bool = False

    @property
    def suite(self) -> str:
        return f"{self.layer}.{self.table}"


def _not_null(*columns: str) -> list[Expectation]:
    return [Expectation("not_null", (c,)) for c in columns]


def _between(
    column: str,
    min_value: float | None = None,
    max_value: float | None = None,
    where: tuple[str, Any] | None = None,
) -> Expectation:
    return Expectation("between", (column,), min_value, max_value, where=where)


def _at_least(value: float, *columns: str) -> list[Expectation]:
    return [_between(c, min_value=value) for c in columns]


def _unit(*columns: str) -> list[Expectation]:
    return [_between(c, min_value=0, max_value=1) for c in columns]


def _unique(*columns: str) -> list[Expectation]:
    if len(columns) == 1:
        return [Expectation("unique", columns)]
    return [Expectation("compound_unique", columns)]


def _in_set(
    column: str, values: Iterable[Any], where: tuple[str, Any] | None = None
) -> Expectation:
    return Expectation("in_set", (column,), value_set=tuple(values), where=where)


_PUE_SOURCES = ["metered", "design", "invalid_meter"]


def _request_log() -> list[Expectation]:
    return [
        *_not_null("request_id", "finished_at", "site_id", "node_id", "service", "status"),
        *_unique("request_id"),
        _between("status", min_value=100, max_value=599),
        *_at_least(0, "latency_ms"),
    ]


def _node_telemetry() -> list[Expectation]:
    return [
        *_not_null("node_id", "site_id", "observed_at", "interval_start", "power_w"),
        *_unique("node_id", "observed_at"),
        *_at_least(0, "power_w"),
        *_unit("cpu_util"),
    ]


def _energy_minutes() -> list[Expectation]:
    return [
        *_not_null("key", "window_start", "site_id", "node_id", "service", "it_energy_wh", "pue"),
        *_unique("key"),
        *_at_least(0, "it_energy_wh", "facility_energy_wh"),
        # invalid_meter minutes carry the design PUE (>= 1) too: the source flags the glitch.
        *_at_least(1, "pue"),
        _in_set("pue_source", _PUE_SOURCES),
        *_unit("coverage"),
    ]


def _site_minutes() -> list[Expectation]:
    return [
        *_not_null("key", "window_start", "site_id", "pue"),
        *_unique("key"),
        _between("pue", min_value=1, where=("pue_source", "metered")),
        _in_set("pue_source", _PUE_SOURCES),
        *_at_least(0, "node_it_energy_wh"),
        *_unit("coverage"),
    ]


def _slo_burn() -> list[Expectation]:
    return [
        *_not_null("key", "window_start", "service", "site_id"),
        *_unique("key"),
        _between("availability_budget_remaining", max_value=1),
        _between("latency_budget_remaining", max_value=1),
    ]


def _energy_per_request() -> list[Expectation]:
    return [
        *_unique("site_id", "service", "team", "hour_utc"),
        *_not_null("site_id", "service", "hour_utc", "requests"),
        *_at_least(1, "requests"),
        *_at_least(0, "it_wh_per_request", "facility_wh_per_request", "gco2e_per_request"),
    ]


def _site_efficiency() -> list[Expectation]:
    return [
        *_unique("site_id", "local_date"),
        *_not_null("site_id", "local_date"),
        *_at_least(1, "pue"),
        *_unit("renewable_share", "coverage"),
    ]


def _slo_daily() -> list[Expectation]:
    return [
        *_unique("service", "site_id", "date_utc"),
        *_not_null("service", "site_id", "date_utc"),
        *_unit("availability_sli", "latency_sli"),
    ]


def _chargeback() -> list[Expectation]:
    return [
        *_unique("site_id", "local_month", "team"),
        *_not_null("site_id", "local_month", "team", "total_usd"),
        *_at_least(0, "it_energy_kwh", "facility_energy_kwh", *COST_PARTS),
        *_at_least(0, "shared_facility_energy_kwh", "design_pue_facility_energy_kwh"),
        *(_in_set(column, get_args(IdlePolicy)) for column in ("idle_policy", "shared_policy")),
    ]


def _roi() -> list[Expectation]:
    return [
        *_unique("site_id"),
        *_not_null("site_id", "pilot_days", "investment_usd", "cloud_usd_per_month"),
        *_at_least(0, "pilot_days", "microdc_usd_per_month", "cloud_usd_per_month"),
        *_at_least(0, "payback_months", "egress_gb_per_month", "facility_wh_per_request"),
    ]


def _spec(
    layer: str, table: str, key: tuple[str, ...], expectations: list[Expectation], **kw: bool
) -> TableSpec:
    return TableSpec(layer, table, key, tuple(expectations), **kw)


TABLES: tuple[TableSpec, ...] = (
    _spec("bronze", "stg_request_log", ("request_id",), _request_log()),
    _spec("bronze", "stg_node_telemetry", ("node_id", "observed_at"), _node_telemetry()),
    _spec("silver", "stg_energy_minutes", ("key",), _energy_minutes()),
    _spec("silver", "stg_site_minutes", ("key",), _site_minutes()),
    _spec("silver", "stg_slo_burn", ("key",), _slo_burn()),
    _spec(
        "marts",
        "fct_energy_per_request_hourly",
        ("site_id", "service", "team", "hour_utc"),
        _energy_per_request(),
    ),
    _spec("marts", "fct_site_efficiency_daily", ("site_id", "local_date"), _site_efficiency()),
    _spec("marts", "fct_slo_daily", ("service", "site_id", "date_utc"), _slo_daily()),
    _spec("marts", CHARGEBACK, ("site_id", "local_month", "team"), _chargeback(), optional=True),
    _spec("marts", "fct_roi_site", ("site_id",), _roi(), optional=True),
)

#: The reconciliation frame's columns that identify a row in failure examples.
RECONCILIATION_KEY = ("invariant", "site_id", "month", "detail")


def reconciliation_expectations(invariants: Iterable[str]) -> list[Expectation]:
    """`ok` is never null, and is True on every row of each invariant (one expectation each)."""
    return [
        *_not_null("ok"),
        *(_in_set("ok", [True], where=("invariant", name)) for name in dict.fromkeys(invariants)),
    ]
