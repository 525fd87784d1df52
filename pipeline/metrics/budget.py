"""Team energy budgets: month-to-date burn in the team's local month, and its ticket.

Pure event-time math for the `metrics` layer (DESIGN.md §5): burn is (kWh used / budget) over
the fraction of the local month elapsed, month lengths exact across DST. `EnergyBudgetTracker`
keeps its state in one msgspec Struct (`to_bytes()` / `from_bytes()` for a Faust table) and
raises an `energy-budget` ticket per team and month while burn > 1 (`metrics.alerting`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from pipeline.contracts.outputs import AlertEvent
from pipeline.errors import ConfigError
from pipeline.metrics.alerting import MINUTE_MS, TrackerInputError, check_minute, transition

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _to_ms(at: datetime) -> int:
    return (at.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def _zone(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(
            f"unknown time zone {tz!r}: use an IANA name such as 'America/Bogota'"
        ) from error


def _month_bounds(at_ms: int, zone: ZoneInfo) -> tuple[str, int, int]:
    """Local month label and [start, end) in epoch ms of the month holding the instant `at_ms`."""
    local = (_EPOCH + timedelta(milliseconds=at_ms)).astimezone(zone)
    year, month = local.year, local.month
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(next_year, next_month, 1, tzinfo=zone)
    return f"{year:04d}-{month:02d}", _to_ms(start), _to_ms(end)


def _burn(kwh_used: float, budget_kwh: float, at_ms: int, start_ms: int, end_ms: int) -> float:
    return (kwh_used / budget_kwh) / ((at_ms - start_ms) / (end_ms - start_ms))


def _require_budget(budget_kwh: float, where: str) -> None:
    if not budget_kwh > 0:
        raise ConfigError(f"{where}: energy budget {budget_kwh} kWh must be > 0: fix the team")


def energy_budget_burn(
    kwh_used: float, budget_kwh: float, at_ms: int, tz: str | None = "UTC"
) -> float:
    """(kWh used / budget) / fraction of the local month elapsed at `at_ms`.

    `at_ms` is the end of the usage counted; a month is (start, end] in local time, so the
    boundary instant closes the old month (fraction 1) and the fraction is never 0. Month length
    is exact: elapsed and total are real milliseconds between local midnights (DST included).
    """
    _require_budget(budget_kwh, "energy_budget_burn")
    _, start_ms, end_ms = _month_bounds(at_ms - 1, _zone(tz))
    return _burn(kwh_used, budget_kwh, at_ms, start_ms, end_ms)


class EnergyBudgetUpdate(msgspec.Struct, frozen=True, kw_only=True):
    team: str
    month: str  # local YYYY-MM
    minute_ms: int
    kwh_used: float  # month to date, this minute included
    burn: float
    alerts: tuple[AlertEvent, ...]


class _EnergyState(msgspec.Struct, kw_only=True):
    team: str
    budget_kwh: float
    tz: str
    month: str = ""
    month_start_ms: int = 0
    month_end_ms: int = 0
    kwh_used: float = 0.0
    last_minute_ms: int | None = None
    open_alerts: dict[str, int] = msgspec.field(default_factory=dict)  # month -> fired_at_ms


class EnergyBudgetTracker:
    """Month-to-date energy of one team; a ticket while burn > 1.

    It holds one local month at a time; the first minute of the next month starts it over and
    resolves an open alert at the month boundary.
    """

    RULE: Final = "energy-budget"

    def __init__(self, team: str, budget_kwh: float, tz: str | None = "UTC") -> None:
        _require_budget(budget_kwh, f"team {team}")
        self._state = _EnergyState(team=team, budget_kwh=budget_kwh, tz=_zone(tz).key)

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode(self._state)

    @classmethod
    def from_bytes(cls, data: bytes) -> EnergyBudgetTracker:
        tracker = cls.__new__(cls)
        tracker._state = msgspec.msgpack.decode(data, type=_EnergyState)
        return tracker

    def add_minute(self, minute_ms: int, kwh: float) -> EnergyBudgetUpdate:
        s = self._state
        check_minute(minute_ms, s.last_minute_ms, f"energy budget of team {s.team}")
        if not kwh >= 0:
            raise TrackerInputError(f"team {s.team}: minute {minute_ms} has {kwh} kWh, not >= 0")
        s.last_minute_ms = minute_ms
        events = self._roll_month(minute_ms)
        s.kwh_used += kwh
        at_ms = minute_ms + MINUTE_MS
        burn = _burn(s.kwh_used, s.budget_kwh, at_ms, s.month_start_ms, s.month_end_ms)
        event = self._event(burn > 1.0, minute_ms, burn)
        return EnergyBudgetUpdate(
            team=s.team,
            month=s.month,
            minute_ms=minute_ms,
            kwh_used=s.kwh_used,
            burn=burn,
            alerts=(*events, *([event] if event else [])),
        )

    def _roll_month(self, minute_ms: int) -> list[AlertEvent]:
        s = self._state
        if s.month and minute_ms < s.month_end_ms:
            return []
        events: list[AlertEvent] = []
        if s.month:
            final = s.kwh_used / s.budget_kwh
            event = self._event(False, s.month_end_ms, final)
            events += [event] if event else []
        s.month, s.month_start_ms, s.month_end_ms = _month_bounds(minute_ms, ZoneInfo(s.tz))
        s.kwh_used = 0.0
        return events

    def _event(self, holds: bool, at_ms: int, burn: float) -> AlertEvent | None:
        s = self._state
        change = transition(s.open_alerts, s.month, holds, at_ms)
        if change is None:
            return None
        state, fired_at = change
        return AlertEvent(
            alert_id=f"{self.RULE}:{s.team}:{s.month}:{fired_at}",
            kind="energy-budget",
            rule=self.RULE,
            severity="ticket",
            state=state,
            at_ms=at_ms,
            fired_at_ms=fired_at,
            value=burn,
            threshold=1.0,
            team=s.team,
        )
