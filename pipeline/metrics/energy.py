"""Node energy per minute: split power samples over minutes, separate idle from dynamic energy,
and attribute dynamic energy to services by busy time (Kepler-style), conserving every Wh.

Accumulators are integers (µWh, ms, µs): each sample or request is converted once, from its
own fields, and integer sums do not depend on the order they were added in. That is what makes
closed minutes identical whatever the arrival order or batch boundaries (DESIGN.md §6).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

MINUTE_MS = 60_000
UWH_PER_WH = 1_000_000
IDLE_SERVICE = "__idle__"


def minute_of(ms: int) -> int:
    """Start (epoch ms) of the minute that contains `ms`."""
    return ms - ms % MINUTE_MS


def split_sample(
    observed_ms: int, interval_s: float, power_w: float
) -> Iterator[tuple[int, int, int]]:
    """(minute start, energy µWh, covered ms) for each minute the sample's interval overlaps.

    A sample is the mean power over `(observed_at - interval_s, observed_at]`, so its energy is
    `power_w * interval_s / 3600` Wh, split across minute boundaries by overlap.
    """
    end = observed_ms
    start = end - round(interval_s * 1000)
    cursor = start
    while cursor < end:
        minute = minute_of(cursor)
        part_end = min(end, minute + MINUTE_MS)
        covered_ms = part_end - cursor
        # W * ms / 3.6e6 = Wh; µWh = W * ms / 3.6
        yield minute, round(power_w * covered_ms / 3.6), covered_ms
        cursor = part_end


@dataclass(frozen=True, slots=True)
class ServiceBusy:
    """Busy time of one service on one node in one minute (sum of request latencies)."""

    service: str
    team: str
    busy_us: int
    #: Requests that finished (their count shares the energy when nobody's busy time is known).
    requests: int = 0


@dataclass(frozen=True, slots=True)
class Attribution:
    """One row of a node-minute: a service's share of dynamic energy, or the idle remainder."""

    service: str
    team: str
    energy_wh: float
    share: float  # of the node's metered energy in the minute


def split_idle(energy_uwh: int, covered_ms: int, idle_power_w: float) -> tuple[float, float]:
    """(idle Wh, dynamic Wh): `E_idle = min(E, idle_power_w * covered_s / 3600)`, rest dynamic."""
    energy_wh = energy_uwh / UWH_PER_WH
    idle_wh = min(energy_wh, idle_power_w * covered_ms / 3_600_000)
    return idle_wh, energy_wh - idle_wh


def attribute(
    energy_uwh: int, covered_ms: int, idle_power_w: float, busy: Mapping[str, ServiceBusy]
) -> list[Attribution]:
    """Split a node-minute's energy: dynamic energy by busy-time share, the rest to `__idle__`.

    Busy time is measured at the log's resolution (nginx's `$request_time`: 1 ms), so a node
    whose requests were all faster has none: then the dynamic energy is shared by request
    count (each request the same unmeasurably short time) rather than called idle. Every
    service of `busy` gets its row (its requests are counted even when its share is 0); with
    no services at all, every Wh is idle. Services come out sorted by name and the idle row
    last; attributed + idle equals the metered energy to floating-point tolerance.
    """
    energy_wh = energy_uwh / UWH_PER_WH
    _, dynamic_wh = split_idle(energy_uwh, covered_ms, idle_power_w)
    total_busy = sum(b.busy_us for b in busy.values())
    weights = {name: (b.busy_us if total_busy > 0 else b.requests) for name, b in busy.items()}
    total = sum(weights.values())
    rows: list[Attribution] = []
    attributed = 0.0
    for name in sorted(busy):
        part = dynamic_wh * weights[name] / total if total > 0 else 0.0
        attributed += part
        rows.append(
            Attribution(name, busy[name].team, part, part / energy_wh if energy_wh else 0.0)
        )
    idle_total = energy_wh - attributed  # idle energy, plus dynamic energy nobody was busy for
    rows.append(
        Attribution(
            IDLE_SERVICE, IDLE_SERVICE, idle_total, idle_total / energy_wh if energy_wh else 0.0
        )
    )
    return rows


def coverage(covered_ms: int) -> float:
    """Share of the minute covered by samples (more than 1 when samples overlap)."""
    return covered_ms / MINUTE_MS
