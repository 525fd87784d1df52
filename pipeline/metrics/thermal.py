"""Inlet-temperature alerts per node: a ticket above 27 °C, a page above 32 °C.

Pure event-time math for the `metrics` layer (DESIGN.md §5), fed each closed minute's maximum
inlet °C. `ThermalTracker` keeps its state in one msgspec Struct (`to_bytes()` / `from_bytes()`
for a Faust table); `inlet-ticket` and `inlet-page` are separate alerts (`metrics.alerting`).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from pipeline.contracts.outputs import AlertEvent, Severity
from pipeline.metrics.alerting import check_minute, highest, transition


class ThermalRule(NamedTuple):
    name: str
    severity: Severity
    above_c: float


THERMAL_RULES: Final = (
    ThermalRule("inlet-ticket", "ticket", 27.0),  # ASHRAE recommended upper bound
    ThermalRule("inlet-page", "page", 32.0),
)


class _ThermalState(msgspec.Struct, kw_only=True):
    node_id: str
    site_id: str
    last_minute_ms: int | None = None
    open_alerts: dict[str, int] = msgspec.field(default_factory=dict)  # rule -> fired_at_ms


class ThermalTracker:
    """Inlet-temperature alerts of one node from each closed minute's maximum inlet °C.

    A minute without telemetry changes nothing: missing data is not a recovery.
    """

    def __init__(self, node_id: str, site_id: str) -> None:
        self._state = _ThermalState(node_id=node_id, site_id=site_id)

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode(self._state)

    @classmethod
    def from_bytes(cls, data: bytes) -> ThermalTracker:
        tracker = cls.__new__(cls)
        tracker._state = msgspec.msgpack.decode(data, type=_ThermalState)
        return tracker

    @property
    def severity(self) -> Severity | None:
        return highest(r.severity for r in THERMAL_RULES if r.name in self._state.open_alerts)

    def add_minute(self, minute_ms: int, max_inlet_c: float) -> tuple[AlertEvent, ...]:
        s = self._state
        check_minute(minute_ms, s.last_minute_ms, f"thermal tracker {s.node_id}")
        s.last_minute_ms = minute_ms
        events = (self._event(rule, max_inlet_c, minute_ms) for rule in THERMAL_RULES)
        return tuple(event for event in events if event is not None)

    def _event(self, rule: ThermalRule, inlet_c: float, minute_ms: int) -> AlertEvent | None:
        s = self._state
        change = transition(s.open_alerts, rule.name, inlet_c > rule.above_c, minute_ms)
        if change is None:
            return None
        state, fired_at = change
        return AlertEvent(
            alert_id=f"thermal:{s.site_id}:{s.node_id}:{rule.name}:{fired_at}",
            kind="thermal",
            rule=rule.name,
            severity=rule.severity,
            state=state,
            at_ms=minute_ms,
            fired_at_ms=fired_at,
            value=inlet_c,
            threshold=rule.above_c,
            site_id=s.site_id,
            node_id=s.node_id,
        )
