"""Carbon and efficiency math: hand-computed cases, the SCI worked example, the 2-hour grid
staleness edge, tie-breaks, renewable surplus, CUE = CEF × PUE, and PUE meter glitches."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contracts.records import GridIntensity
from pipeline.metrics.carbon import (
    HOUR_MS,
    MAX_GRID_AGE_MS,
    CarbonSplit,
    GridHistory,
    GridPoint,
    cue,
    embodied_g_per_minute,
    operational_carbon_g,
    pick_intensity,
    pue,
    renewable_share,
    sci_per_request,
    wue,
)

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary, epoch ms
MINUTE_MS = 60_000


def point(start_h: float, end_h: float, value: float, source: str = "em") -> GridPoint:
    return GridPoint(
        valid_from_ms=T0 + int(start_h * HOUR_MS),
        valid_to_ms=T0 + int(end_h * HOUR_MS),
        gco2e_per_kwh=value,
        source=source,
    )


# -- embodied --------------------------------------------------------------------------------------


def test_sci_worked_example_1000_kg_over_4_years_for_one_hour_is_28_52_g() -> None:
    # 1000 kg * 1000 g/kg * 3600 s / (4 y * 365.25 d * 86400 s) = 3.6e9 / 126_230_400 = 28.519 g
    assert abs(60 * embodied_g_per_minute(1000.0, 4.0) - 28.52) < 0.01


def test_embodied_per_minute_by_hand() -> None:
    # 500 kg over 5 years: 500 * 1000 * 60 / (5 * 31_557_600) = 3e7 / 157_788_000 = 0.190128 g
    assert math.isclose(embodied_g_per_minute(500.0, 5.0), 3e7 / 157_788_000)
    assert embodied_g_per_minute(0.0, 5.0) == 0.0
    with pytest.raises(ValueError, match="lifetime_years"):
        embodied_g_per_minute(500.0, 0.0)


# -- PUE -------------------------------------------------------------------------------------------


def test_metered_pue_is_facility_over_it() -> None:
    # 150 Wh facility / 120 Wh IT = 1.25
    assert pue(150.0, 120.0, 1.6) == (1.25, "metered")
    assert pue(120.0, 120.0, 1.6) == (1.0, "metered")  # a perfect facility is allowed


@pytest.mark.parametrize(
    ("facility_wh", "it_wh"), [(None, 120.0), (150.0, None), (None, None), (150.0, 0.0)]
)
def test_missing_meters_or_no_it_load_use_design(
    facility_wh: float | None, it_wh: float | None
) -> None:
    assert pue(facility_wh, it_wh, 1.6) == (1.6, "design")


@pytest.mark.parametrize(
    ("facility_wh", "it_wh"),
    [(100.0, 120.0), (0.0, 120.0), (150.0, -1.0), (math.nan, 120.0), (math.inf, 120.0)],
)
def test_pue_below_one_or_broken_meter_falls_back_to_design_and_says_so(
    facility_wh: float, it_wh: float
) -> None:
    # 100 / 120 = 0.83 < 1 is physically impossible: a meter glitch, not a great facility.
    assert pue(facility_wh, it_wh, 1.6) == (1.6, "invalid_meter")


# -- grid intensity --------------------------------------------------------------------------------


def test_covering_point_is_grid() -> None:
    points = [point(0, 1, 300.0), point(1, 2, 250.0)]
    assert pick_intensity(points, T0 + 30 * MINUTE_MS, 507.0) == (300.0, "grid")
    # [valid_from, valid_to): the minute starting at 1 h belongs to the second point
    assert pick_intensity(points, T0 + HOUR_MS, 507.0) == (250.0, "grid")


def test_staleness_bound_is_inclusive_at_exactly_two_hours() -> None:
    points = [point(0, 1, 300.0)]  # ended at T0 + 1 h
    at_edge = T0 + HOUR_MS + MAX_GRID_AGE_MS  # 2 h after the end
    assert MAX_GRID_AGE_MS == 2 * 3_600_000
    assert pick_intensity(points, at_edge, 507.0) == (300.0, "grid_stale")
    assert pick_intensity(points, at_edge + 1, 507.0) == (507.0, "fallback")
    assert pick_intensity(points, T0 + HOUR_MS, 507.0) == (300.0, "grid_stale")  # just ended


def test_no_points_or_only_future_points_fall_back() -> None:
    assert pick_intensity([], T0, 98.0) == (98.0, "fallback")
    forecast = [point(1, 2, 120.0)]
    assert pick_intensity(forecast, T0, 98.0) == (98.0, "fallback")


def test_tie_break_latest_start_then_highest_value() -> None:
    day = point(0, 24, 400.0, "daily")
    hour = point(1, 2, 200.0, "hourly")
    minute = T0 + 90 * MINUTE_MS
    assert pick_intensity([day, hour], minute, 507.0) == (200.0, "grid")  # later start wins
    estimate, revision = point(1, 2, 210.0, "est"), point(1, 2, 190.0, "actual")
    assert pick_intensity([revision, estimate], minute, 507.0) == (210.0, "grid")
    assert pick_intensity([estimate, revision], minute, 507.0) == (210.0, "grid")


def test_a_lifecycle_value_beats_a_direct_one_whatever_their_starts() -> None:
    """Electricity Maps' lifecycle hour and a later-starting direct half hour (UK, XM and
    WattTime publish combustion only) both cover the minute: the SCI takes the lifecycle."""
    lifecycle = point(1, 2, 171.4, "electricitymaps")
    direct = msgspec.structs.replace(point(1.5, 2, 98.1, "uk"), emission_factor_type="direct")
    minute = T0 + 100 * MINUTE_MS
    assert pick_intensity([direct, lifecycle], minute, 507.0) == (171.4, "grid")
    assert pick_intensity([direct], minute, 507.0) == (98.1, "grid")  # only direct: used


def test_stale_choice_uses_the_same_tie_break() -> None:
    # At 3 h: a ended 1 h ago (started 0 h), b ended 1.5 h ago but started later (1 h).
    a, b = point(0, 2, 300.0), point(1, 1.5, 280.0)
    assert pick_intensity([a, b], T0 + 3 * HOUR_MS, 507.0) == (280.0, "grid_stale")
    # At 3.75 h b is 2.25 h old (too old); a is 1.75 h old and still usable.
    assert pick_intensity([a, b], T0 + int(3.75 * HOUR_MS), 507.0) == (300.0, "grid_stale")


def test_grid_point_rejects_empty_interval_and_bad_value() -> None:
    with pytest.raises(ValueError, match="end after it starts"):
        point(1, 1, 300.0)
    with pytest.raises(ValueError, match="gco2e_per_kwh"):
        point(0, 1, -5.0)


def test_grid_point_from_record_is_exact_ms() -> None:
    record = GridIntensity(
        valid_from=datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        valid_to=datetime(2024, 3, 1, 13, 0, 0, 1000, tzinfo=UTC),
        zone="CO",
        carbon_intensity_gco2e_per_kwh=260.0,
        emission_factor_type="lifecycle",
        signal="average",
        source="ember",
        is_estimated=False,
    )
    p = GridPoint.from_record(record)
    # 2024-03-01T12:00Z = 1_709_294_400 s; +1 h + 1 ms
    assert (p.valid_from_ms, p.valid_to_ms) == (1_709_294_400_000, 1_709_298_000_001)
    assert (p.gco2e_per_kwh, p.source) == (260.0, "ember")


def test_history_keeps_the_last_points_sorted_and_ignores_duplicates() -> None:
    history = GridHistory(zone="CO", max_points=3)
    for h in (3, 0, 2, 1, 2):
        history.add(point(h, h + 1, 100.0 + h))
    assert [p.valid_from_ms for p in history.points] == [T0 + h * HOUR_MS for h in (1, 2, 3)]
    assert history.pick(T0 + 2 * HOUR_MS, 260.0) == (102.0, "grid")
    assert history.pick(T0 + 6 * HOUR_MS, 260.0) == (103.0, "grid_stale")  # 2 h after 4 h end
    assert history.pick(T0 + 6 * HOUR_MS + 1, 260.0) == (260.0, "fallback")


@given(st.permutations(list(range(10))))
def test_history_does_not_depend_on_arrival_order(order: list[int]) -> None:
    history = GridHistory(zone="MX", max_points=4)
    for h in order:
        history.add(point(h, h + 1, 500.0 + h))
        history.add(point(h, h + 1, 500.0 + h))  # redelivered
    assert history == GridHistory(
        zone="MX", points=[point(h, h + 1, 500.0 + h) for h in range(6, 10)], max_points=4
    )


def test_history_round_trips_through_msgspec_json() -> None:
    history = GridHistory(zone="BR", points=[point(1, 2, 90.0), point(0, 1, 98.0)])
    raw = msgspec.json.encode(history)
    back = msgspec.json.decode(raw, type=GridHistory)
    assert back == history
    assert [p.gco2e_per_kwh for p in back.points] == [98.0, 90.0]  # sorted on decode
    with pytest.raises(msgspec.ValidationError, match="end after it starts"):
        msgspec.json.decode(
            b'{"zone":"BR","points":[{"valid_from_ms":5,"valid_to_ms":5,'
            b'"gco2e_per_kwh":1.0,"source":"x"}]}',
            type=GridHistory,
        )


# -- operational carbon and SCI --------------------------------------------------------------------


def test_operational_carbon_with_partial_renewable() -> None:
    # 10 kWh facility, 4 kWh solar: grid 6 kWh; 6 * 260 + 4 * 41 = 1560 + 164 = 1724 g
    split = operational_carbon_g(10.0, 4.0, 260.0, 41.0)
    assert split == CarbonSplit(grid_kwh=6.0, renewable_kwh=4.0, operational_g=1724.0)
    assert split.intensity_effective == 172.4  # 1724 g / 10 kWh


def test_renewable_exceeding_facility_energy_is_capped() -> None:
    # 10 kWh facility, 15 kWh solar: only 10 used, grid 0; 10 * 41 = 410 g (surplus not credited)
    split = operational_carbon_g(10.0, 15.0, 260.0, 41.0)
    assert split == CarbonSplit(grid_kwh=0.0, renewable_kwh=10.0, operational_g=410.0)
    assert renewable_share(15.0, 10.0) == 1.0


def test_operational_carbon_without_renewable_is_e_times_i() -> None:
    # 2.5 kWh * 507 g/kWh = 1267.5 g
    split = operational_carbon_g(2.5, 0.0, 507.0, 41.0)
    assert split == CarbonSplit(grid_kwh=2.5, renewable_kwh=0.0, operational_g=1267.5)
    assert operational_carbon_g(0.0, 0.0, 507.0, 41.0).intensity_effective is None


def test_operational_carbon_rejects_negative_inputs() -> None:
    with pytest.raises(ValueError, match="renewable_kwh"):
        operational_carbon_g(1.0, -0.5, 507.0, 41.0)


def test_sci_per_request_by_hand() -> None:
    # E 2 kWh, I 300 g/kWh, M 28.52 g, R 1000: (600 + 28.52) / 1000 = 0.62852 g/request
    assert math.isclose(sci_per_request(2.0, 300.0, 28.52, 1000) or 0.0, 0.62852)
    assert sci_per_request(2.0, 300.0, 28.52, 0) is None


def test_sci_with_renewable_uses_the_effective_intensity() -> None:
    # 10 kWh, 4 kWh solar -> operational 1724 g; + M 100 g over 500 requests = 3.648 g/request
    split = operational_carbon_g(10.0, 4.0, 260.0, 41.0)
    assert split.intensity_effective is not None
    sci = sci_per_request(10.0, split.intensity_effective, 100.0, 500)
    assert sci is not None
    assert math.isclose(sci, (1724.0 + 100.0) / 500)


# -- CUE, WUE, renewable share ---------------------------------------------------------------------


def test_cue_and_wue_by_hand() -> None:
    # 1.2 kg over 4 IT kWh = 0.3 kg/kWh; 6 L over 4 IT kWh = 1.5 L/kWh
    assert cue(1.2, 4.0) == pytest.approx(0.3)
    assert wue(6.0, 4.0) == 1.5
    assert cue(1.2, 0.0) is None
    assert wue(None, 4.0) is None
    assert wue(6.0, 0.0) is None


positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)


@given(operational_kg=positive, facility_kwh=positive, pue_value=st.floats(1.0, 5.0))
def test_cue_equals_cef_times_pue(
    operational_kg: float, facility_kwh: float, pue_value: float
) -> None:
    it_kwh = facility_kwh / pue_value
    cef = operational_kg / facility_kwh  # kg per facility kWh
    metered_pue, source = pue(facility_kwh, it_kwh, 1.6)
    assert source == "metered"
    assert cue(operational_kg, it_kwh) == pytest.approx(cef * metered_pue, rel=1e-9)


def test_renewable_share_by_hand() -> None:
    assert renewable_share(2.5, 10.0) == 0.25
    assert renewable_share(0.0, 10.0) == 0.0
    assert renewable_share(3.0, 0.0) == 0.0  # no facility energy: nothing was supplied
    assert renewable_share(-1.0, 10.0) == 0.0


@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_renewable_share_is_a_fraction(renewable_kwh: float, facility_kwh: float) -> None:
    assert 0.0 <= renewable_share(renewable_kwh, facility_kwh) <= 1.0


def test_pick_is_deterministic_under_shuffles() -> None:
    points = [point(0, 3, 300.0), point(1, 2, 250.0), point(1, 2, 260.0), point(1, 3, 240.0)]
    results = set()
    rnd = random.Random(7)
    for _ in range(20):
        rnd.shuffle(points)
        results.add(pick_intensity(points, T0 + 90 * MINUTE_MS, 507.0))
    # latest start is 1 h (three points); highest of 250, 260, 240 is 260
    assert results == {(260.0, "grid")}
