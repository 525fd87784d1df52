"""Records the stream stages emit. Each carries a deterministic natural `key`, so a consumer can
drop re-emissions after a failover (they carry identical values)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

#: Alert vocabulary (`mdc.alerts`): the burn windows and SLIs of SLO rules, and what an alert is.
Window = Literal["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
Sli = Literal["availability", "latency"]
Severity = Literal["page", "ticket"]
AlertState = Literal["firing", "resolved"]
AlertKind = Literal["slo", "energy-budget", "thermal"]


class NodeMinute(msgspec.Struct, frozen=True, kw_only=True, tag="row"):
    """Stage 1 → `mdc.node-minutes`: one node × service row of a closed minute, IT level only.

    `service == "__idle__"` holds the node's idle energy (and any dynamic energy nobody was busy
    for). Node-level fields (`node_energy_wh`, `coverage`, `max_inlet_c`) repeat on every row.
    """

    key: str
    window_start: datetime
    site_id: str
    rack_id: str
    node_id: str
    service: str
    team: str
    requests: int
    errors_5xx: int
    slow: int
    busy_ms: float
    bytes_in: int
    bytes_out: int
    it_energy_wh: float
    node_energy_wh: float
    coverage: float
    embodied_gco2e: float
    max_inlet_c: float | None
    latency: dict[str, Any] | None
    partition: int


class PartitionMark(msgspec.Struct, frozen=True, kw_only=True, tag="mark"):
    """Stage 1 → `mdc.node-minutes`: minutes before `closed_before` are closed on `partition`."""

    partition: int
    partitions: int
    closed_before: datetime


StageOne = NodeMinute | PartitionMark


class EnergyMinute(msgspec.Struct, frozen=True, kw_only=True):
    """`mdc.energy-minutes`: node × service × minute with facility energy, carbon and latency."""

    key: str
    window_start: datetime
    site_id: str
    node_id: str
    service: str
    team: str
    requests: int
    errors_5xx: int
    slow: int
    busy_ms: float
    bytes_in: int
    bytes_out: int
    it_energy_wh: float
    facility_energy_wh: float
    pue: float
    pue_source: str
    coverage: float
    grid_intensity_gco2e_per_kwh: float
    intensity_source: str
    renewable_share: float
    operational_gco2e: float
    embodied_gco2e: float
    it_wh_per_request: float | None
    facility_wh_per_request: float | None
    sci_gco2e_per_request: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class SiteMinute(msgspec.Struct, frozen=True, kw_only=True):
    """`mdc.site-minutes`: site efficiency and carbon for one closed minute."""

    key: str
    window_start: datetime
    site_id: str
    facility_energy_wh: float | None
    it_energy_wh: float | None
    node_it_energy_wh: float
    pue: float
    pue_source: str
    renewable_energy_wh: float
    renewable_share: float
    water_l: float | None
    wue_l_per_kwh: float | None
    cue_kg_per_kwh: float | None
    grid_intensity_gco2e_per_kwh: float
    intensity_source: str
    operational_gco2e: float
    embodied_gco2e: float
    requests: int
    nodes_reporting: int
    coverage: float
    outdoor_temp_c: float | None


class SloBurn(msgspec.Struct, frozen=True, kw_only=True):
    """`mdc.slo-burn`: burn rates of a service (at one site, or `__all__`) after a minute."""

    key: str
    window_start: datetime
    service: str
    site_id: str
    requests: int
    bad_availability: int
    bad_latency: int
    availability_burn: dict[str, float]
    latency_burn: dict[str, float]
    availability_budget_remaining: float
    latency_budget_remaining: float


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`mdc.alerts`: a rule started (`firing`) or stopped (`resolved`) holding at minute `at_ms`.

    `value` is what was compared with `threshold`: the lower of the two burns for SLO rules,
    the month's burn for energy budgets, the inlet °C for thermal rules.
    """

    alert_id: str
    kind: AlertKind
    rule: str
    severity: Severity
    state: AlertState
    at_ms: int
    fired_at_ms: int
    value: float
    threshold: float
    service: str | None = None
    team: str | None = None
    site_id: str | None = None
    node_id: str | None = None
    sli: Sli | None = None
    long_window: Window | None = None
    short_window: Window | None = None
    burn_long: float | None = None
    burn_short: float | None = None


class LateEvent(msgspec.Struct, frozen=True, kw_only=True):
    """`mdc.late-events`: a record (or part of a sample) whose minute had already closed."""

    key: str
    source_topic: str
    partition: int
    offset: int
    record_key: str | None
    event_at: datetime
    closed_before: datetime
    reason: str
    late_energy_wh: float | None
    value: str


#: Why a record is a dead letter: it is not JSON (`malformed_json`), breaks its contract
#: (`invalid`), names what the fleet does not know (`unknown_reference`), is outside the fleet's
#: plausibility limits (`implausible_value`, `implausible_time`), or made the core raise
#: (`internal_error`: a bug, caught per record so the worker goes on).
ErrorKind = Literal[
    "malformed_json",
    "invalid",
    "unknown_reference",
    "implausible_value",
    "implausible_time",
    "internal_error",
]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """`mdc.dead-letters`: a record that failed to decode or validate, byte for byte."""

    key: str
    source_topic: str
    partition: int
    offset: int
    record_key: bytes | None
    value: bytes
    error_kind: ErrorKind
    error_detail: str
