"""Energy-budget burn in the team's local month and its tickets, checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.errors import ConfigError
from pipeline.metrics.alerting import MINUTE_MS
from pipeline.metrics.budget import EnergyBudgetTracker, energy_budget_burn

T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z, on an hour boundary


def at(i: int) -> int:
    """Epoch ms of minute `i` after T0."""
    return T0 + i * MINUTE_MS


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def test_energy_burn_uses_the_local_month_in_bogota() -> None:
    # 2024-03-01T02:00Z is 21:00 on 29 February in Bogotá (UTC-5, no DST): February 2024 began
    # at 2024-02-01T05:00Z and lasts 29 * 24 = 696 h, of which 28 * 24 + 21 = 693 h elapsed.
    instant = ms("2024-03-01T02:00:00+00:00")
    assert energy_budget_burn(500, 1000, instant, "America/Bogota") == pytest.approx(
        0.5 / (693 / 696)
    )
    # In UTC the same instant is 2 h into March (744 h): 0.5 / (2 / 744) = 186.
    assert energy_budget_burn(500, 1000, instant, "UTC") == pytest.approx(186.0)
    assert energy_budget_burn(500, 1000, instant, None) == pytest.approx(186.0)
    # Noon of 1 March in Bogotá is 12 h into 744: 1 % used / (1/62) = 0.62.
    noon = ms("2024-03-01T12:00:00-05:00")
    assert energy_budget_burn(10, 1000, noon, "America/Bogota") == pytest.approx(0.62)
    # The boundary instant closes February: all of it elapsed.
    midnight = ms("2024-03-01T00:00:00-05:00")
    assert energy_budget_burn(348, 696, midnight, "America/Bogota") == pytest.approx(0.5)


def test_energy_burn_month_length_is_exact_across_dst() -> None:
    # New York, March 2024: clocks spring forward on the 10th, so the month has 743 h.
    # Local midnight of the 11th (04:00Z) is 10 * 24 - 1 = 239 h in.
    instant = ms("2024-03-11T00:00:00-04:00")
    assert energy_budget_burn(100, 743, instant, "America/New_York") == pytest.approx(
        (100 / 743) / (239 / 743)
    )


def test_energy_config_errors_say_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        energy_budget_burn(1, 1, T0, "Mars/Olympus")
    with pytest.raises(ConfigError, match="must be > 0"):
        EnergyBudgetTracker("data", 0.0)


def test_energy_tracker_fires_and_resolves_on_transitions() -> None:
    # March 2024 in UTC: 44 640 minutes; 744 kWh budget = 1 kWh per hour.
    tracker = EnergyBudgetTracker("data", 744.0)
    first = tracker.add_minute(at(0), 0.04)  # 0.04 / 744 over 1 / 44 640 = 0.04 * 60 = 2.4
    second = tracker.add_minute(at(1), 0.0)  # 2.4 / 2 = 1.2: still above, no event
    third = tracker.add_minute(at(2), 0.0)  # 2.4 / 3 = 0.8: resolved
    assert first.burn == pytest.approx(2.4) and first.month == "2024-03"
    assert second.burn == pytest.approx(1.2) and second.alerts == ()
    assert third.burn == pytest.approx(0.8)
    fired, resolved = first.alerts[0], third.alerts[0]
    assert (fired.state, resolved.state) == ("firing", "resolved")
    assert fired.alert_id == resolved.alert_id == f"energy-budget:data:2024-03:{at(0)}"
    assert fired.severity == "ticket" and fired.team == "data"
    restored = EnergyBudgetTracker.from_bytes(tracker.to_bytes())
    again = restored.add_minute(at(3), 0.1)  # 0.14 * 60 / 4 = 2.1: a new alert
    assert [a.alert_id for a in again.alerts] == [f"energy-budget:data:2024-03:{at(3)}"]


def test_energy_tracker_resolves_at_the_local_month_boundary() -> None:
    # Bogotá, February 2024 (696 h) with a 696 kWh budget: 800 kWh is 800/696 of it.
    tracker = EnergyBudgetTracker("data", 696.0, "America/Bogota")
    late_feb = ms("2024-03-01T04:58:00+00:00")  # 23:58 local on the 29th
    assert tracker.add_minute(late_feb, 800.0).alerts[0].state == "firing"
    assert tracker.add_minute(late_feb + MINUTE_MS, 0.0).alerts == ()
    march = tracker.add_minute(late_feb + 2 * MINUTE_MS, 0.01)  # 00:00 local, 1 March
    assert march.month == "2024-03" and march.kwh_used == pytest.approx(0.01)
    assert [(a.state, a.at_ms, a.alert_id) for a in march.alerts] == [
        ("resolved", late_feb + 2 * MINUTE_MS, f"energy-budget:data:2024-02:{late_feb}")
    ]
    assert march.alerts[0].value == pytest.approx(800 / 696)
    assert march.burn == pytest.approx(0.01 * 44_640 / 696)  # 0.64: no new alert
