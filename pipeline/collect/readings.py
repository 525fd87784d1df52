"""What a source reader returns: readings of named quantities, gauges or cumulative counters.

A reader knows its protocol (Redfish, Prometheus, SNMP, IPMI) and nothing about contracts; it
returns `Reading`s, one per quantity it found. Counters stay counters here (joules, CPU
seconds, bytes, kWh as the device counts them): `counters.CounterRates` turns two readings into
a mean rate, so a reset or a wrap is handled in one place for every source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Quantity(StrEnum):
    """The quantities the collectors read, with their units in the names."""

    #: Power now (or averaged by the device over its own interval), W.
    POWER_W = "power_w"
    #: Cumulative energy, J (RAPL `energy_uj` / 1e6, Redfish `EnergykWh` x 3.6e6, PDU kWh).
    ENERGY_J = "energy_j"
    #: Cumulative CPU seconds, busy (all modes but idle and iowait) and in total.
    CPU_BUSY_S = "cpu_busy_s"
    CPU_TOTAL_S = "cpu_total_s"
    #: Cumulative network bytes received / sent (all non-loopback interfaces).
    NET_RX_BYTES = "net_rx_bytes"
    NET_TX_BYTES = "net_tx_bytes"
    #: Temperatures, degrees Celsius.
    INLET_TEMP_C = "inlet_temp_c"
    OUTLET_TEMP_C = "outlet_temp_c"


#: Quantities that are cumulative counters (the others are gauges).
COUNTERS = frozenset(
    {
        Quantity.ENERGY_J,
        Quantity.CPU_BUSY_S,
        Quantity.CPU_TOTAL_S,
        Quantity.NET_RX_BYTES,
        Quantity.NET_TX_BYTES,
    }
)


@dataclass(frozen=True)
class Reading:
    """One value of one quantity from one source.

    `at_ms` is when the value was true: the source's own timestamp when it gives one (a
    Prometheus sample's, a Redfish reading's), else when the reader received it. `wrap_at` is
    a counter's modulus when the device states one (RAPL's `max_energy_range_uj`): a counter
    that goes down by less than it wrapped; one that goes down without it was reset.
    """

    quantity: Quantity
    value: float
    at_ms: int
    #: Where it came from, for logs and dead letters, e.g. "redfish:https://bmc-7/.../1U"
    source: str
    wrap_at: float | None = None

    @property
    def is_counter(self) -> bool:
        return self.quantity in COUNTERS
