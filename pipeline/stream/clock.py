"""Event-time clock of one partition (watermark = max event time seen - allowed lateness), and
the applied-offset log that makes replays after a restart idempotent."""

from __future__ import annotations

import msgspec

from pipeline.metrics.energy import minute_of


class Clock(msgspec.Struct, kw_only=True):
    """Tracks the watermark and which minutes are closed. Serializable with the stage state.

    `closed_before_ms`: every minute starting before it is closed. It only moves forward, when the
    watermark passes a minute's end. Before the first record it is None (nothing closed).
    """

    lateness_ms: int
    max_event_ms: int | None = None
    closed_before_ms: int | None = None

    def is_closed(self, minute_ms: int) -> bool:
        return self.closed_before_ms is not None and minute_ms < self.closed_before_ms

    def observe(self, event_ms: int) -> bool:
        """Take an event time into account; True when more minutes closed because of it."""
        if self.max_event_ms is None:
            self.max_event_ms = event_ms
            self.closed_before_ms = minute_of(event_ms - self.lateness_ms)
            return False
        if event_ms <= self.max_event_ms:
            return False
        self.max_event_ms = event_ms
        closed = minute_of(event_ms - self.lateness_ms)
        assert self.closed_before_ms is not None
        if closed > self.closed_before_ms:
            self.closed_before_ms = closed
            return True
        return False


def already_applied(offsets: dict[str, int], source: str, offset: int) -> bool:
    """True if `offset` of `source` was applied before (a replay after a restart); else record it.

    A stage's snapshot carries `offsets`, so a worker restored from an older snapshot than the
    committed consumer position, or replaying from an older one, applies each record once.
    """
    last = offsets.get(source)
    if last is not None and offset <= last:
        return True
    offsets[source] = offset
    return False
