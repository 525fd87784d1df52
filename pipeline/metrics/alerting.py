"""Alert transitions shared by the SLO, energy-budget and thermal trackers.

An alert is a transition: it fires once when its rule starts to hold and resolves once, with the
same `alert_id`, when it stops. Each tracker keeps `open_alerts` (rule key -> the minute it fired
at) in its state and asks `transition` whether the minute changed anything. Trackers take closed
minutes in increasing order (`check_minute`) and refuse anything else with `TrackerInputError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pipeline.contracts.outputs import AlertState, Severity
from pipeline.errors import PipelineError

MINUTE_MS: Final = 60_000


class TrackerInputError(PipelineError):
    """A tracker got a minute out of order, misaligned, or with impossible counts."""


def transition(
    open_alerts: dict[str, int], key: str, holds: bool, at_ms: int
) -> tuple[AlertState, int] | None:
    """Track which rules hold; return (state, fired_at_ms) only when `key` changes."""
    fired_at = open_alerts.get(key)
    if holds and fired_at is None:
        open_alerts[key] = at_ms
        return "firing", at_ms
    if not holds and fired_at is not None:
        del open_alerts[key]
        return "resolved", fired_at
    return None


def highest(severities: Iterable[Severity]) -> Severity | None:
    found = set(severities)
    return "page" if "page" in found else ("ticket" if found else None)


def check_minute(minute_ms: int, last_minute_ms: int | None, where: str) -> None:
    if minute_ms % MINUTE_MS:
        raise TrackerInputError(
            f"{where}: minute_ms {minute_ms} is not a multiple of {MINUTE_MS}: "
            "pass the epoch ms at which the closed minute starts"
        )
    if last_minute_ms is not None and minute_ms <= last_minute_ms:
        raise TrackerInputError(
            f"{where}: minute {minute_ms} came after minute {last_minute_ms}: "
            "feed each closed minute once, in increasing order"
        )
