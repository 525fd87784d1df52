"""Counters -> mean rates: advancing, wrapping, reset, stale and implausible readings."""

from __future__ import annotations

import pytest

from pipeline.collect.counters import CounterRates, Outcome
from pipeline.collect.readings import Quantity, Reading

RAPL = "prometheus:http://node-7:9100/metrics#package-0"
#: intel-rapl:0 max_energy_range_uj on a Xeon: 262,143.328850 J
WRAP_J = 262_143.328850


def energy(
    value_j: float, at_s: float, *, source: str = RAPL, wrap: float | None = WRAP_J
) -> Reading:
    return Reading(Quantity.ENERGY_J, value_j, int(at_s * 1000), source, wrap_at=wrap)


def rates() -> CounterRates:
    return CounterRates({Quantity.ENERGY_J: 10_000.0})  # a node draws at most 10 kW


def test_the_first_reading_primes_and_the_next_gives_the_mean_power() -> None:
    c = rates()
    first = c.update(energy(1_000.0, 0))
    assert first.outcome is Outcome.PRIMED and first.per_s is None
    # 3,000 J over 15 s = 200 W
    second = c.update(energy(4_000.0, 15))
    assert (second.outcome, second.per_s, second.interval_s) == (Outcome.RATE, 200.0, 15.0)
    assert (second.start_ms, second.end_ms) == (0, 15_000)


def test_a_wrapped_counter_gives_the_power_across_the_wrap() -> None:
    c = rates()
    c.update(energy(WRAP_J - 1_000.0, 0))
    # 1,000 J to the top, then 2,000 J after it: 3,000 J over 10 s = 300 W
    r = c.update(energy(2_000.0, 10))
    assert r.outcome is Outcome.WRAPPED and r.per_s == pytest.approx(300.0)
    again = c.update(energy(3_000.0, 20))  # and it goes on from the wrapped value
    assert again.outcome is Outcome.RATE and again.per_s == pytest.approx(100.0)


def test_a_counter_that_goes_down_without_a_modulus_was_reset_and_leaves_a_gap() -> None:
    c = rates()
    c.update(energy(50_000.0, 0, wrap=None))
    reset = c.update(energy(10.0, 10, wrap=None))  # a PDU's energy reset, a reboot
    assert reset.outcome is Outcome.RESET and reset.per_s is None
    after = c.update(energy(1_010.0, 20, wrap=None))  # counting again from the reset value
    assert after.outcome is Outcome.RATE and after.per_s == pytest.approx(100.0)


def test_a_value_above_the_modulus_before_going_down_is_a_reset_not_a_wrap() -> None:
    c = rates()
    c.update(energy(WRAP_J + 5.0, 0))  # cannot be below a modulus it already exceeds
    assert c.update(energy(1.0, 10)).outcome is Outcome.RESET


def test_an_implausible_jump_is_dropped_not_counted() -> None:
    c = rates()
    c.update(energy(0.0, 0))
    # 1e9 J in 10 s = 100 MW on one node: garbage or an unnoticed reset
    jump = c.update(energy(1e9, 10, wrap=None))
    assert jump.outcome is Outcome.IMPLAUSIBLE and jump.per_s is None
    assert c.update(energy(1e9 + 1_500.0, 20, wrap=None)).per_s == pytest.approx(150.0)


def test_a_reading_not_newer_than_the_last_is_stale() -> None:
    c = rates()
    c.update(energy(100.0, 10))
    assert c.update(energy(150.0, 10)).outcome is Outcome.STALE
    assert c.update(energy(150.0, 5)).outcome is Outcome.STALE
    assert c.update(energy(300.0, 12)).per_s == pytest.approx(100.0)  # from the reading at 10 s


def test_counters_of_different_sources_are_apart_and_can_be_forgotten() -> None:
    c = rates()
    other = "prometheus:http://node-7:9100/metrics#package-1"
    c.update(energy(0.0, 0))
    c.update(energy(0.0, 0, source=other))
    assert c.update(energy(500.0, 10, source=other)).per_s == pytest.approx(50.0)
    c.forget(other)
    assert c.update(energy(900.0, 20, source=other)).outcome is Outcome.PRIMED
    assert c.update(energy(1_000.0, 10)).per_s == pytest.approx(100.0)
