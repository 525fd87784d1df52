"""One poll's readings of a node -> its `NodeSample`, of a site -> its `FacilitySample` (pure).

Sources are listed in order of preference (the collector file's order); each quantity comes
from the first source that gives it:

- `power_w`: a source's power gauges (summed: a reader gives one per independent supply or
  package), else the mean rate of its energy counters over the interval (summed over its
  counters, and only if every one of them gave a rate this poll: a primed, reset or wrapped-
  beyond-belief package leaves the interval a gap rather than a partial sum);
- `cpu_util`: busy / total CPU seconds over the interval, clamped to 0..1;
- `net_rx_bytes`, `net_tx_bytes`: byte counter rates x the interval;
- `inlet_temp_c`, `outlet_temp_c`: gauges.

No power from any source: no sample (the minute's coverage shows the gap). A quantity no
source gives is null. Counters of every source are always fed to `CounterRates`, so a
lower-preference source stays primed for the poll where the preferred one fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from pipeline.collect.counters import CounterRates, Rate
from pipeline.collect.readings import Quantity, Reading
from pipeline.contracts.records import FacilitySample, NodeSample
from pipeline.fleet.model import Node

#: A sample's interval is the time since the previous one, within (0, MAX_INTERVAL_S].
MAX_INTERVAL_S = 3600.0


class SampleError(ValueError):
    """The readings make no valid sample (a value outside the contract): dead-letter it."""


class NodeAssembler:
    """Builds the samples of one node, poll after poll."""

    def __init__(self, node: Node, rates: CounterRates, poll_interval_s: float) -> None:
        self.node = node
        self.rates = rates
        self.poll_interval_s = poll_interval_s
        self._last_at_ms: int | None = None

    def sample(self, polled: Sequence[Sequence[Reading]], at_ms: int) -> NodeSample | None:
        """The sample of a poll at `at_ms`: `polled` holds each source's readings, in order of
        preference (a source that failed gave none)."""
        rated = [self._rates(readings) for readings in polled]
        interval_s = self._interval_s(at_ms)
        power = next(
            (
                p
                for readings, rates in zip(polled, rated, strict=True)
                if (p := _power(readings, rates)) is not None
            ),
            None,
        )
        if power is None:
            return None
        busy = _first_rate(rated, Quantity.CPU_BUSY_S)
        total = _first_rate(rated, Quantity.CPU_TOTAL_S)
        cpu = None if busy is None or not total else min(max(busy / total, 0.0), 1.0)
        fields = {
            "observed_at": _iso(at_ms),
            "site_id": self.node.site_id,
            "rack_id": self.node.rack_id,
            "node_id": self.node.node_id,
            "interval_s": interval_s,
            "power_w": power,
            "cpu_util": cpu,
            "inlet_temp_c": _first_gauge(polled, Quantity.INLET_TEMP_C),
            "outlet_temp_c": _first_gauge(polled, Quantity.OUTLET_TEMP_C),
            "net_rx_bytes": _bytes(_first_rate(rated, Quantity.NET_RX_BYTES), interval_s),
            "net_tx_bytes": _bytes(_first_rate(rated, Quantity.NET_TX_BYTES), interval_s),
        }
        try:
            return msgspec.convert(fields, NodeSample, strict=False)
        except msgspec.ValidationError as exc:
            raise SampleError(f"node {self.node.node_id}: {exc}") from exc

    def _rates(self, readings: Sequence[Reading]) -> dict[Quantity, list[Rate]]:
        out: dict[Quantity, list[Rate]] = {}
        for reading in readings:
            if reading.is_counter:
                out.setdefault(reading.quantity, []).append(self.rates.update(reading))
        return out

    def _interval_s(self, at_ms: int) -> float:
        last, self._last_at_ms = self._last_at_ms, at_ms
        if last is None or at_ms <= last:
            return self.poll_interval_s
        return min((at_ms - last) / 1000, MAX_INTERVAL_S)


def _power(readings: Sequence[Reading], rates: dict[Quantity, list[Rate]]) -> float | None:
    gauges = [r.value for r in readings if r.quantity is Quantity.POWER_W]
    if gauges:
        return sum(gauges)
    return _sum_rates(rates.get(Quantity.ENERGY_J))


def _sum_rates(rates: list[Rate] | None) -> float | None:
    if not rates or any(r.per_s is None for r in rates):
        return None
    return sum(r.per_s for r in rates if r.per_s is not None)


def _first_rate(rated: list[dict[Quantity, list[Rate]]], quantity: Quantity) -> float | None:
    for rates in rated:
        value = _sum_rates(rates.get(quantity))
        if value is not None:
            return value
    return None


def _first_gauge(polled: Sequence[Sequence[Reading]], quantity: Quantity) -> float | None:
    for readings in polled:
        for reading in readings:
            if reading.quantity is quantity:
                return reading.value
    return None


def _bytes(per_s: float | None, interval_s: float) -> int | None:
    return None if per_s is None else round(per_s * interval_s)


def _iso(at_ms: int) -> str:
    return (
        datetime.fromtimestamp(at_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class FacilityAssembler:
    """Builds the facility samples of one site: facility and IT power are each the sum of
    every source that meters them (all of them, or the poll is a gap); on-site generation is
    metered, or 0 W when the collector file says the site has none."""

    def __init__(
        self,
        site_id: str,
        measures: Sequence[str],
        rates: CounterRates,
        poll_interval_s: float,
        *,
        renewable_metered: bool,
    ) -> None:
        self.site_id = site_id
        self.measures = list(measures)
        self.rates = rates
        self.poll_interval_s = poll_interval_s
        self.renewable_metered = renewable_metered
        self._last_at_ms: int | None = None

    def sample(self, polled: Sequence[Sequence[Reading]], at_ms: int) -> FacilitySample | None:
        """The sample of a poll: `polled` holds each source's readings, in the file's order."""
        last, self._last_at_ms = self._last_at_ms, at_ms
        if last is None or at_ms <= last:
            interval_s = self.poll_interval_s
        else:
            interval_s = min((at_ms - last) / 1000, MAX_INTERVAL_S)
        totals: dict[str, float | None] = {}
        for role, readings in zip(self.measures, polled, strict=True):
            rates: dict[Quantity, list[Rate]] = {}
            for reading in readings:
                if reading.is_counter:
                    rates.setdefault(reading.quantity, []).append(self.rates.update(reading))
            power = _power(readings, rates)
            before = totals.get(role, 0.0)
            totals[role] = None if power is None or before is None else before + power
        facility, it = totals.get("facility"), totals.get("it")
        renewable = totals.get("renewable") if self.renewable_metered else 0.0
        if facility is None or it is None or renewable is None:
            return None
        fields = {
            "observed_at": _iso(at_ms),
            "site_id": self.site_id,
            "interval_s": interval_s,
            "facility_power_w": facility,
            "it_power_w": it,
            "onsite_renewable_w": renewable,
        }
        try:
            return msgspec.convert(fields, FacilitySample, strict=False)
        except msgspec.ValidationError as exc:
            raise SampleError(f"site {self.site_id}: {exc}") from exc
