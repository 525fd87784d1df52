"""SLO burn rates and error budgets (Google SRE Workbook ch. 5), minute by minute.

Pure event-time math for the `metrics` layer (DESIGN.md §5): a driver feeds closed minutes in
increasing order; nothing here reads a clock, a topic or a file. The tracker keeps its whole
state in one msgspec Struct, so `to_bytes()` / `from_bytes()` let a Faust table hold it.

Every rule is its own alert: `page-1h`, `page-6h`, `ticket-1d`, `ticket-3d` per SLI (both windows
must exceed the threshold). Escalation from ticket to page is therefore a page alert firing while
the ticket stays open; de-escalation is the page resolving. An alert fires once when its rule
starts to hold and resolves once, with the same `alert_id`, when it stops (`metrics.alerting`).
The id ends with the minute it fired at, so firing again later is a new alert.
`SliStatus.severity` is the highest severity that holds at the minute. Energy-budget and thermal
alerts live in `metrics.budget` and `metrics.thermal`; the `AlertEvent` record in
`contracts.outputs`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from pipeline.contracts.outputs import AlertEvent, Severity, Sli, Window
from pipeline.fleet.model import Slo
from pipeline.metrics.alerting import (
    MINUTE_MS,
    TrackerInputError,
    check_minute,
    highest,
    transition,
)

__all__ = [
    "ALL_SITES",
    "BUFFER_MINUTES",
    "BURN_RULES",
    "HOUR_MS",
    "MINUTE_MS",
    "SLIS",
    "WINDOW_MINUTES",
    "BurnRule",
    "BurnWindows",
    "MinuteCounts",
    "Sli",
    "SliStatus",
    "SloTracker",
    "SloUpdate",
    "TrackerInputError",
    "Window",
]

HOUR_MS: Final = 60 * MINUTE_MS
BUFFER_MINUTES: Final = 4320  # the longest burn window, 3 days
ALL_SITES: Final = "__all__"  # site_id of a service's fleet-wide tracker

WINDOW_MINUTES: Final[dict[Window, int]] = {
    "5m": 5,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "6h": 360,
    "1d": 1440,
    "3d": 4320,
}
SLIS: Final[tuple[Sli, ...]] = ("availability", "latency")
_SPANS: Final = tuple(WINDOW_MINUTES.values())
_LONGEST: Final = len(_SPANS) - 1
# Rows of every ring and sum below: requests, bad for availability, bad for latency.
_TOTAL: Final = 0
_ROW_OF: Final[dict[Sli, int]] = {"availability": 1, "latency": 2}


class BurnRule(NamedTuple):
    name: str
    severity: Severity
    long_window: Window
    short_window: Window
    threshold: float


BURN_RULES: Final = (
    BurnRule("page-1h", "page", "1h", "5m", 14.4),  # 2 % of a 30-day budget in 1 h
    BurnRule("page-6h", "page", "6h", "30m", 6.0),  # 5 % in 6 h
    BurnRule("ticket-1d", "ticket", "1d", "2h", 3.0),  # 10 % in 1 d
    BurnRule("ticket-3d", "ticket", "3d", "6h", 1.0),  # 10 % in 3 d
)


class MinuteCounts(msgspec.Struct, frozen=True):
    """Requests of one (service, site) that finished in the minute starting at `minute_ms`."""

    minute_ms: int
    total: int
    bad_availability: int  # status >= 500
    bad_latency: int  # latency_ms > the SLO threshold


class BurnWindows(msgspec.Struct, frozen=True):
    """Burn per window ending with the minute: (bad / total) / (1 - target); 0 without traffic."""

    burn_5m: float
    burn_30m: float
    burn_1h: float
    burn_2h: float
    burn_6h: float
    burn_1d: float
    burn_3d: float

    def of(self, window: Window) -> float:
        value: float = getattr(self, f"burn_{window}")
        return value


class SliStatus(msgspec.Struct, frozen=True):
    """One SLI after a minute: burns, budget left over the SLO period, rules holding."""

    burn: BurnWindows
    budget_remaining: float  # 1 - bad / ((1 - target) * total); negative when overspent
    holding: tuple[str, ...]
    severity: Severity | None


class SloUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """What `SloTracker.add_minute` returns; `alerts` include those of skipped empty minutes."""

    service: str
    site_id: str
    minute_ms: int
    availability: SliStatus
    latency: SliStatus
    alerts: tuple[AlertEvent, ...]


def _zeros(rows: int, columns: int) -> list[list[int]]:
    return [[0] * columns for _ in range(rows)]


class _SloState(msgspec.Struct, kw_only=True):
    service: str
    site_id: str
    availability_target: float
    latency_target: float
    period_hours: int
    last_minute_ms: int | None = None
    # 3 rows x BUFFER_MINUTES, slot = minute index % BUFFER_MINUTES; [] while every slot is 0.
    minutes: list[list[int]] = msgspec.field(default_factory=list)
    window_sums: list[list[int]] = msgspec.field(default_factory=lambda: _zeros(3, len(_SPANS)))
    # 3 rows x period_hours, slot = hour index % period_hours; [] while every slot is 0.
    hours: list[list[int]] = msgspec.field(default_factory=list)
    period_sums: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    last_hour: int | None = None
    open_alerts: dict[str, int] = msgspec.field(default_factory=dict)  # "<sli>:<rule>" -> fired


class SloTracker:
    """Burn rates, budget and alerts of one (service, site or ALL_SITES), minute by minute.

    Window sums are kept running: each minute adds its bucket and subtracts the one leaving each
    window, O(windows). A gap of minutes counts as empty buckets; it is walked (alerts can change
    in it) until the 3-day buffer holds only zeros, then skipped. The SLO period uses hour buckets:
    it covers the last `period_days * 24` clock hours, the current (partial) hour included.
    """

    def __init__(self, service: str, site_id: str, slo: Slo) -> None:
        self._state = _SloState(
            service=service,
            site_id=site_id,
            availability_target=slo.availability_target,
            latency_target=slo.latency_target,
            period_hours=slo.period_days * 24,
        )

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode(self._state)

    @classmethod
    def from_bytes(cls, data: bytes) -> SloTracker:
        tracker = cls.__new__(cls)
        tracker._state = msgspec.msgpack.decode(data, type=_SloState)
        return tracker

    @property
    def buffered_minutes(self) -> int:
        return len(self._state.minutes[0]) if self._state.minutes else 0

    def add_minute(self, counts: MinuteCounts) -> SloUpdate:
        """Close one minute: the next minute with traffic, or an explicit empty one."""
        row = self._checked_row(counts)
        alerts = self._walk_gap(counts.minute_ms)
        self._step(counts.minute_ms, row)
        burns, events = self._evaluate(counts.minute_ms)
        self._add_to_period(counts.minute_ms, row)
        s = self._state
        return SloUpdate(
            service=s.service,
            site_id=s.site_id,
            minute_ms=counts.minute_ms,
            availability=self._status("availability", burns["availability"]),
            latency=self._status("latency", burns["latency"]),
            alerts=(*alerts, *events),
        )

    def _checked_row(self, counts: MinuteCounts) -> tuple[int, int, int]:
        where = f"SLO tracker {self._state.service}/{self._state.site_id}"
        check_minute(counts.minute_ms, self._state.last_minute_ms, where)
        bads = (counts.bad_availability, counts.bad_latency)
        if not all(0 <= bad <= counts.total for bad in bads):
            raise TrackerInputError(
                f"{where}: minute {counts.minute_ms} has bad counts outside 0..total: {counts}"
            )
        return counts.total, counts.bad_availability, counts.bad_latency

    def _walk_gap(self, minute_ms: int) -> list[AlertEvent]:
        last = self._state.last_minute_ms
        events: list[AlertEvent] = []
        if last is None:
            return events
        gap_minute = last + MINUTE_MS
        while gap_minute < minute_ms and self._state.minutes:
            self._step(gap_minute, (0, 0, 0))
            events += self._evaluate(gap_minute)[1]
            gap_minute += MINUTE_MS
        return events

    def _step(self, minute_ms: int, row: tuple[int, int, int]) -> None:
        s = self._state
        s.last_minute_ms = minute_ms
        if not s.minutes:
            if not any(row):
                return
            s.minutes = _zeros(3, BUFFER_MINUTES)
        index = minute_ms // MINUTE_MS
        for ring, sums, value in zip(s.minutes, s.window_sums, row, strict=True):
            for w, span in enumerate(_SPANS):
                sums[w] += value - ring[(index - span) % BUFFER_MINUTES]
            ring[index % BUFFER_MINUTES] = value
        if s.window_sums[_TOTAL][_LONGEST] == 0:
            s.minutes = []  # nothing in any window: drop the buffer until traffic returns

    def _evaluate(self, minute_ms: int) -> tuple[dict[Sli, BurnWindows], list[AlertEvent]]:
        burns = {sli: self._burns(sli) for sli in SLIS}
        events: list[AlertEvent] = []
        for sli in SLIS:
            for rule in BURN_RULES:
                event = self._rule_event(sli, rule, burns[sli], minute_ms)
                if event is not None:
                    events.append(event)
        return burns, events

    def _target(self, sli: Sli) -> float:
        s = self._state
        return s.availability_target if sli == "availability" else s.latency_target

    def _burns(self, sli: Sli) -> BurnWindows:
        totals, bads = self._state.window_sums[_TOTAL], self._state.window_sums[_ROW_OF[sli]]
        allowed = 1.0 - self._target(sli)
        return BurnWindows(
            *[b / t / allowed if t else 0.0 for b, t in zip(bads, totals, strict=True)]
        )

    def _rule_event(
        self, sli: Sli, rule: BurnRule, burns: BurnWindows, minute_ms: int
    ) -> AlertEvent | None:
        burn_long, burn_short = burns.of(rule.long_window), burns.of(rule.short_window)
        holds = burn_long > rule.threshold and burn_short > rule.threshold
        s = self._state
        change = transition(s.open_alerts, f"{sli}:{rule.name}", holds, minute_ms)
        if change is None:
            return None
        state, fired_at = change
        return AlertEvent(
            alert_id=f"slo:{sli}:{s.service}:{s.site_id}:{rule.name}:{fired_at}",
            kind="slo",
            rule=rule.name,
            severity=rule.severity,
            state=state,
            at_ms=minute_ms,
            fired_at_ms=fired_at,
            value=min(burn_long, burn_short),
            threshold=rule.threshold,
            service=s.service,
            site_id=s.site_id,
            sli=sli,
            long_window=rule.long_window,
            short_window=rule.short_window,
            burn_long=burn_long,
            burn_short=burn_short,
        )

    def _add_to_period(self, minute_ms: int, row: tuple[int, int, int]) -> None:
        s = self._state
        hour = minute_ms // HOUR_MS
        self._advance_hours(hour)
        if not any(row):
            return
        if not s.hours:
            s.hours = _zeros(3, s.period_hours)
        for k, value in enumerate(row):
            s.hours[k][hour % s.period_hours] += value
            s.period_sums[k] += value

    def _advance_hours(self, hour: int) -> None:
        s = self._state
        last, s.last_hour = s.last_hour, hour
        if last is None or not s.hours:
            return
        if hour - last >= s.period_hours:
            s.hours, s.period_sums = [], [0, 0, 0]
            return
        for leaving in range(last + 1, hour + 1):
            for k, ring in enumerate(s.hours):
                s.period_sums[k] -= ring[leaving % s.period_hours]
                ring[leaving % s.period_hours] = 0
        if s.period_sums[_TOTAL] == 0:
            s.hours = []

    def _status(self, sli: Sli, burns: BurnWindows) -> SliStatus:
        s = self._state
        total, bad = s.period_sums[_TOTAL], s.period_sums[_ROW_OF[sli]]
        remaining = 1.0 - bad / ((1.0 - self._target(sli)) * total) if total else 1.0
        holding = [r for r in BURN_RULES if f"{sli}:{r.name}" in s.open_alerts]
        return SliStatus(
            burn=burns,
            budget_remaining=remaining,
            holding=tuple(r.name for r in holding),
            severity=highest(r.severity for r in holding),
        )
