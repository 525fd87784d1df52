"""Node energy: interval overlap, idle/dynamic split and busy-time attribution, by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.records import epoch_ms
from pipeline.metrics.energy import (
    IDLE_SERVICE,
    ServiceBusy,
    attribute,
    minute_of,
    split_idle,
    split_sample,
)

T12 = int(datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)


def test_sample_straddling_a_minute_boundary_is_split_by_overlap() -> None:
    # 120 W over (11:59:40, 12:00:10]: 20 s before 12:00 and 10 s after.
    # 120 W * 20 s / 3600 = 0.6667 Wh = 666,667 µWh; 120 * 10 / 3600 = 0.3333 Wh.
    parts = list(split_sample(T12 + 10_000, 30.0, 120.0))
    assert parts == [(T12 - 60_000, 666_667, 20_000), (T12, 333_333, 10_000)]


def test_sample_ending_on_a_boundary_belongs_to_the_minute_before() -> None:
    # (12:00:00, 12:01:00] is minute 12:00 only: 60 W for 60 s = 1 Wh.
    assert list(split_sample(T12 + 60_000, 60.0, 60.0)) == [(T12, 1_000_000, 60_000)]


def test_long_interval_spreads_over_several_minutes() -> None:
    # 360 W over (11:58:30, 12:01:00]: 30 s, 60 s, 60 s -> 3, 6, 6 Wh.
    parts = list(split_sample(T12 + 60_000, 150.0, 360.0))
    assert [(m - T12) // 60_000 for m, _, _ in parts] == [-2, -1, 0]
    assert [uwh for _, uwh, _ in parts] == [3_000_000, 6_000_000, 6_000_000]
    assert sum(c for _, _, c in parts) == 150_000


def test_minute_of() -> None:
    assert minute_of(T12 + 59_999) == T12
    assert minute_of(T12) == T12


def test_idle_and_dynamic_split() -> None:
    # 10 Wh in a fully covered minute, idle 300 W: idle = 300 * 60 / 3600 = 5 Wh, dynamic 5 Wh.
    assert split_idle(10_000_000, 60_000, 300.0) == (5.0, 5.0)
    # Below idle power (2 Wh < 5 Wh): everything is idle.
    assert split_idle(2_000_000, 60_000, 300.0) == (2.0, 0.0)
    # Half covered: idle budget halves to 2.5 Wh.
    assert split_idle(10_000_000, 30_000, 300.0) == (2.5, 7.5)


def test_dynamic_energy_follows_busy_time_and_idle_is_its_own_row() -> None:
    busy = {
        "a": ServiceBusy("a", "team-a", 3_000_000),  # 3 s busy
        "b": ServiceBusy("b", "team-b", 1_000_000),  # 1 s busy
    }
    rows = attribute(10_000_000, 60_000, 300.0, busy)
    # dynamic 5 Wh split 3:1 -> 3.75 and 1.25; idle 5 Wh.
    assert [(r.service, r.team) for r in rows] == [
        ("a", "team-a"),
        ("b", "team-b"),
        (IDLE_SERVICE, IDLE_SERVICE),
    ]
    assert [r.energy_wh for r in rows] == pytest.approx([3.75, 1.25, 5.0])
    assert [r.share for r in rows] == pytest.approx([0.375, 0.125, 0.5])


def test_without_requests_all_energy_is_idle() -> None:
    rows = attribute(10_000_000, 60_000, 50.0, {})
    assert [(r.service, r.energy_wh) for r in rows] == [(IDLE_SERVICE, 10.0)]


def test_no_energy_no_division_by_zero() -> None:
    rows = attribute(0, 0, 50.0, {"a": ServiceBusy("a", "t", 5)})
    assert [r.energy_wh for r in rows] == [0.0, 0.0]


@given(
    energy=st.integers(0, 10**10),
    covered=st.integers(0, 120_000),
    idle_w=st.floats(0.0, 2_000.0),
    busy=st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3), st.integers(0, 10**9), max_size=8
    ),
)
def test_conservation_attributed_plus_idle_equals_metered(
    energy: int, covered: int, idle_w: float, busy: dict[str, int]
) -> None:
    rows = attribute(energy, covered, idle_w, {k: ServiceBusy(k, "t", v) for k, v in busy.items()})
    metered = energy / 1_000_000
    assert math.isclose(sum(r.energy_wh for r in rows), metered, rel_tol=1e-9, abs_tol=1e-9)
    assert all(r.energy_wh >= -1e-9 for r in rows)
    assert rows[-1].service == IDLE_SERVICE


@given(
    observed=st.integers(T12, T12 + 10**9),
    interval=st.floats(0.001, 3600.0),
    power=st.floats(0.0, 5_000.0),
)
def test_split_parts_cover_the_interval_and_sum_to_the_energy(
    observed: int, interval: float, power: float
) -> None:
    parts = list(split_sample(observed, interval, power))
    covered = sum(c for _, _, c in parts)
    assert covered == round(interval * 1000)
    # each part is rounded to 1 µWh: total error at most half a µWh per part
    assert abs(sum(u for _, u, _ in parts) - power * covered / 3.6) <= 0.5 * len(parts) + 1e-6
    assert all(m % 60_000 == 0 for m, _, _ in parts)


def test_epoch_ms_is_exact_and_floors_microseconds() -> None:
    # 2026-03-02T15:00:01.123999Z: 1,772,463,600 s to the hour (hand-computed), + 1.123999 s.
    when = datetime(2026, 3, 2, 15, 0, 1, 123_999, tzinfo=UTC)
    assert epoch_ms(when) == 1_772_463_601_123
    assert epoch_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1


def test_requests_faster_than_the_log_resolution_share_by_count_and_are_counted() -> None:
    """Found end to end with real nginx: `$request_time` is 0.000 for sub-millisecond answers;
    a node whose requests all logged 0 ms had its dynamic energy called idle and its requests
    dropped from the energy rows. Now the energy is shared by request count, 5:1."""
    busy = {"a": ServiceBusy("a", "t", 0, requests=5), "b": ServiceBusy("b", "t", 0, requests=1)}
    rows = attribute(10_000_000, 60_000, 300.0, busy)  # dynamic 5 Wh, idle 5 Wh
    assert [(r.service, r.energy_wh) for r in rows] == [
        ("a", pytest.approx(5 * 5 / 6)),
        ("b", pytest.approx(5 / 6)),
        (IDLE_SERVICE, pytest.approx(5.0)),
    ]
    # one service measured busy, the other not: busy time decides, the other keeps its row
    busy["a"] = ServiceBusy("a", "t", 2_000, requests=5)
    rows = attribute(10_000_000, 60_000, 300.0, busy)
    assert [(r.service, r.energy_wh) for r in rows] == [
        ("a", pytest.approx(5.0)),
        ("b", 0.0),
        (IDLE_SERVICE, pytest.approx(5.0)),
    ]
