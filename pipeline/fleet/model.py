"""Reference data types: sites, nodes, teams, services, tariffs and hyperscale baselines."""

from __future__ import annotations

from datetime import datetime, time
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import msgspec

Id = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Pos = Annotated[float, msgspec.Meta(gt=0.0)]
NonNeg = Annotated[float, msgspec.Meta(ge=0.0)]
Pue = Annotated[float, msgspec.Meta(ge=1.0, le=5.0)]
Target = Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]
HhMm = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]

IdlePolicy = Literal["separate", "weighted", "even"]
#: How the metered IT load no node reported (switches, storage, PDU losses) and its overhead are
#: charged: its own `__shared__` row, by the teams' attributed energy, or evenly (OpenCost's
#: shared-cost policies). Same values as the idle policy, allocated independently of it.
SharedPolicy = IdlePolicy


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reference data rejects unknown keys: a typo in a hand-edited YAML file must not pass."""


class TariffPeriod(_Spec, frozen=True):
    """From `start` (local HH:MM) until the next period's start, energy costs `usd_per_kwh`."""

    start: HhMm
    usd_per_kwh: NonNeg


class Opex(_Spec, frozen=True):
    """Monthly operating cost of a site, USD."""

    staff_usd: NonNeg
    network_usd: NonNeg
    colocation_usd: NonNeg = 0.0

    @property
    def total_usd(self) -> float:
        return self.staff_usd + self.network_usd + self.colocation_usd


class Baseline(_Spec, frozen=True):
    """The hyperscale-cloud alternative the site is compared with."""

    region: Annotated[str, msgspec.Meta(min_length=1)]
    rtt_ms: NonNeg
    pue: Pue
    grid_gco2e_per_kwh: NonNeg
    egress_usd_per_gb: NonNeg
    usd_per_core_hour: NonNeg


class Climate(_Spec, frozen=True):
    """Outdoor temperature profile; drives the simulator's cooling overhead."""

    mean_temp_c: float
    daily_swing_c: NonNeg = 8.0


class Site(_Spec, frozen=True, dict=True):
    """A micro data center."""

    site_id: Id
    city: Annotated[str, msgspec.Meta(min_length=1)]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
    timezone: Annotated[str, msgspec.Meta(min_length=1)]
    grid_zone: Id
    design_pue: Pue
    capex_usd: NonNeg
    lifetime_years: Pos
    opex_usd_per_month: Opex
    tariff: Annotated[list[TariffPeriod], msgspec.Meta(min_length=1)]
    baseline: Baseline
    climate: Climate
    solar_peak_kw: NonNeg = 0.0
    has_water_meter: bool = False

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _tariff_minutes(self) -> list[tuple[int, float]]:
        return [(_minute_of_day(p.start), p.usd_per_kwh) for p in self.tariff]

    def price_usd_per_kwh(self, at: datetime) -> float:
        """Tariff price for the local time of the aware instant `at`."""
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        price = self._tariff_minutes[0][1]
        for start, usd in self._tariff_minutes:
            if start <= minute:
                price = usd
        return price


class Node(_Spec, frozen=True):
    """A server. Power between `idle_power_w` and `max_power_w`; amortised over `lifetime_years`."""

    node_id: Id
    site_id: Id
    rack_id: Id
    cores: Annotated[int, msgspec.Meta(ge=1)]
    idle_power_w: NonNeg
    max_power_w: Pos
    capex_usd: NonNeg
    embodied_kgco2e: NonNeg
    lifetime_years: Pos
    has_gpu: bool = False


class Slo(_Spec, frozen=True):
    """Availability (status < 500) and latency (latency_ms <= threshold) objectives."""

    availability_target: Target
    latency_threshold_ms: Pos
    latency_target: Target
    period_days: Annotated[int, msgspec.Meta(ge=1, le=366)] = 30


class Load(_Spec, frozen=True):
    """Simulator hints: peak request rate per site and the shape of one request."""

    peak_rps: NonNeg
    median_latency_ms: Pos
    cpu_ms_per_request: Pos
    bytes_in: Annotated[int, msgspec.Meta(ge=0)] = 2_000
    bytes_out: Annotated[int, msgspec.Meta(ge=0)] = 20_000
    needs_gpu: bool = False


class Service(_Spec, frozen=True):
    """A service, the team that owns it, its SLOs and where it runs."""

    service: Id
    team: Id
    sites: Annotated[list[Id], msgspec.Meta(min_length=1)]
    slo: Slo
    load: Load
    routes: list[str] = msgspec.field(default_factory=list)


class Team(_Spec, frozen=True):
    """An internal team that receives chargeback."""

    team: Id
    cost_center: Annotated[str, msgspec.Meta(min_length=1)]
    energy_budget_kwh_per_month: Pos


class Plausibility(_Spec, frozen=True):
    """Limits a record must respect besides its contract, or it becomes a dead letter.

    `max_power_ratio`: a node sample drawing more than this times the node's `max_power_w` is
    `implausible_value` (a misread meter, watts sent as milliwatts). `max_future_s`: a record
    whose event time lies more than this past both its stream's latest event time and the
    driver's clock is `implausible_time`, and never moves a watermark. Grid points may carry
    forecasts, so theirs is `grid_max_future_s`.
    """

    max_power_ratio: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)] = 1.5
    max_future_s: Annotated[float, msgspec.Meta(gt=0.0, le=30 * 86_400.0)] = 3_600.0
    grid_max_future_s: Annotated[float, msgspec.Meta(gt=0.0, le=30 * 86_400.0)] = 8 * 86_400.0


class Fleet(_Spec, frozen=True, dict=True):
    """The whole reference file."""

    sites: Annotated[list[Site], msgspec.Meta(min_length=1)]
    nodes: Annotated[list[Node], msgspec.Meta(min_length=1)]
    teams: Annotated[list[Team], msgspec.Meta(min_length=1)]
    services: Annotated[list[Service], msgspec.Meta(min_length=1)]
    grid_fallback_gco2e_per_kwh: dict[str, NonNeg]
    carbon_price_usd_per_tonne: NonNeg = 0.0
    idle_policy: IdlePolicy = "separate"
    shared_policy: SharedPolicy = "separate"
    onsite_renewable_gco2e_per_kwh: NonNeg = 41.0
    currency: Literal["USD"] = "USD"
    plausibility: Plausibility = msgspec.field(default_factory=Plausibility)
    #: The collector file `microdc collect` reads when not given one (relative: to this file).
    collectors: str | None = None

    @cached_property
    def site_by_id(self) -> dict[str, Site]:
        return {s.site_id: s for s in self.sites}

    @cached_property
    def node_by_id(self) -> dict[str, Node]:
        return {n.node_id: n for n in self.nodes}

    @cached_property
    def nodes_by_site(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {s.site_id: [] for s in self.sites}
        for node in self.nodes:
            out.setdefault(node.site_id, []).append(node)
        return out

    @cached_property
    def service_by_name(self) -> dict[str, Service]:
        return {s.service: s for s in self.services}

    @cached_property
    def team_by_name(self) -> dict[str, Team]:
        return {t.team: t for t in self.teams}


def _minute_of_day(hhmm: str) -> int:
    parsed = time.fromisoformat(hhmm)
    return parsed.hour * 60 + parsed.minute
