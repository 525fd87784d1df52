"""Cumulative counters -> mean rates over the interval between two readings.

Every source's counters (RAPL joules, Kepler joules, CPU seconds, interface bytes, a PDU's kWh,
Redfish `EnergykWh`) go through `CounterRates`, so resets and wraparound are handled once:

- the first reading of a counter primes it (no rate yet: one interval of gap, never a guess);
- a reading not newer than the last is ignored (a source that did not refresh);
- a counter that went down by less than its stated modulus (`Reading.wrap_at`) wrapped:
  the delta is `value + wrap_at - last`;
- one that went down otherwise was reset (a reboot, a PDU's "reset energy"): it re-primes and
  the interval is a gap;
- a rate above the quantity's physical limit (`max_rate`) is garbage or an unnoticed reset: it
  re-primes and the interval is a gap, never a huge energy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pipeline.collect.readings import Quantity, Reading


class Outcome(StrEnum):
    RATE = "rate"
    PRIMED = "primed"
    STALE = "stale"
    WRAPPED = "wrapped"
    RESET = "reset"
    IMPLAUSIBLE = "implausible"


@dataclass(frozen=True)
class Rate:
    """The mean rate of a counter over `(start_ms, end_ms]` (None: no rate for it, `outcome`
    says why). A wrapped counter still gives a rate (`outcome` WRAPPED)."""

    quantity: Quantity
    source: str
    outcome: Outcome
    start_ms: int
    end_ms: int
    per_s: float | None

    @property
    def interval_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


class CounterRates:
    """The last reading of every (source, quantity) counter, and the rates they make."""

    def __init__(self, max_rate: Mapping[Quantity, float]) -> None:
        #: Per quantity, the largest plausible rate per second (e.g. ENERGY_J: a node's max W).
        self.max_rate = dict(max_rate)
        self._last: dict[tuple[str, Quantity], Reading] = {}

    def update(self, reading: Reading) -> Rate:
        """Take a new counter reading; the rate since the previous one of the same counter."""
        key = (reading.source, reading.quantity)
        last = self._last.get(key)
        if last is None:
            self._last[key] = reading
            return self._none(reading, reading.at_ms, Outcome.PRIMED)
        if reading.at_ms <= last.at_ms:
            return self._none(reading, last.at_ms, Outcome.STALE)
        self._last[key] = reading
        delta = reading.value - last.value
        outcome = Outcome.RATE
        if delta < 0:
            wrap = reading.wrap_at
            if wrap is None or wrap <= 0 or last.value > wrap:
                return self._none(reading, last.at_ms, Outcome.RESET)
            delta += wrap
            outcome = Outcome.WRAPPED
        per_s = delta / ((reading.at_ms - last.at_ms) / 1000)
        limit = self.max_rate.get(reading.quantity)
        if limit is not None and per_s > limit:
            return self._none(reading, last.at_ms, Outcome.IMPLAUSIBLE)
        return Rate(reading.quantity, reading.source, outcome, last.at_ms, reading.at_ms, per_s)

    def forget(self, source: str) -> None:
        """Drop every counter of `source` (it was reconfigured or removed)."""
        for key in [k for k in self._last if k[0] == source]:
            del self._last[key]

    @staticmethod
    def _none(reading: Reading, start_ms: int, outcome: Outcome) -> Rate:
        return Rate(reading.quantity, reading.source, outcome, start_ms, reading.at_ms, None)
