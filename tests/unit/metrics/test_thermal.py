"""Inlet-temperature tickets and pages of one node, checked by hand."""

from __future__ import annotations

from pipeline.metrics.alerting import MINUTE_MS
from pipeline.metrics.thermal import ThermalTracker

T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z, on an hour boundary


def at(i: int) -> int:
    """Epoch ms of minute `i` after T0."""
    return T0 + i * MINUTE_MS


def test_thermal_tickets_above_27_and_pages_above_32() -> None:
    tracker = ThermalTracker("bog-n01", "bog")
    temps = [25.0, 27.0, 28.0, 29.0, 33.0, 32.0, 31.0, 27.0, 26.0, 35.0]
    events = [
        (i, e.rule, e.state) for i, c in enumerate(temps) for e in tracker.add_minute(at(i), c)
    ]
    assert events == [
        (2, "inlet-ticket", "firing"),  # 27.0 is within the recommended range, 28 is not
        (4, "inlet-page", "firing"),  # the ticket stays open
        (5, "inlet-page", "resolved"),  # 32.0 is at the bound, not above
        (7, "inlet-ticket", "resolved"),
        (9, "inlet-ticket", "firing"),
        (9, "inlet-page", "firing"),
    ]
    assert tracker.severity == "page"
    restored = ThermalTracker.from_bytes(tracker.to_bytes())
    resolved = restored.add_minute(at(10), 20.0)
    assert {e.alert_id for e in resolved} == {
        f"thermal:bog:bog-n01:inlet-ticket:{at(9)}",
        f"thermal:bog:bog-n01:inlet-page:{at(9)}",
    }
    assert restored.severity is None
