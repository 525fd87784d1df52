"""Grid provider payloads -> GridIntensity: units, time alignment, factor types, hostile values."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.collect.grid import (
    LBS_PER_MWH_TO_G_PER_KWH,
    GridError,
    Skipped,
    electricity_maps_csv,
    electricity_maps_history,
    electricity_maps_latest,
    parse_time,
    uk_carbon_intensity,
    watttime_v3,
    xm_emission_factor,
)
from pipeline.contracts.records import GridIntensity

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "grid"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {s.where: s.reason for s in skipped}


# --------------------------------------------------------------------------- Electricity Maps


def test_electricity_maps_latest() -> None:
    records, skipped = electricity_maps_latest(load("electricitymaps_latest.json"))
    assert skipped == []
    assert records == [
        GridIntensity(
            valid_from=utc(2026, 12, 4, 10),
            valid_to=utc(2026, 12, 4, 11),
            zone="DE",
            carbon_intensity_gco2e_per_kwh=302.0,
            emission_factor_type="lifecycle",
            signal="average",
            source="electricitymaps",
            is_estimated=True,
        )
    ]


def test_electricity_maps_latest_zone_override_and_bad_value() -> None:
    payload = load("electricitymaps_latest.json")
    (record,), _ = electricity_maps_latest(payload, zone_override="site-bog-1")
    assert record.zone == "site-bog-1"
    payload["carbonIntensity"] = 5000.5
    records, skipped = electricity_maps_latest(payload)
    assert records == []
    assert skipped[0].where == "latest"
    assert "carbon_intensity_gco2e_per_kwh" in skipped[0].reason


def test_electricity_maps_direct_factor_and_default() -> None:
    payload = load("electricitymaps_latest.json")
    payload["emissionFactorType"] = "direct"
    assert electricity_maps_latest(payload)[0][0].emission_factor_type == "direct"
    del payload["emissionFactorType"]  # the API's default is lifecycle
    assert electricity_maps_latest(payload)[0][0].emission_factor_type == "lifecycle"


def test_electricity_maps_history_alignment_and_hostile_items() -> None:
    records, skipped = electricity_maps_history(load("electricitymaps_history.json"))
    assert [(r.valid_from, r.valid_to) for r in records] == [
        (utc(2026, 12, 3, 22), utc(2026, 12, 3, 23)),
        # "2026-12-04T00:00:00+01:00" is 23:00 UTC the day before
        (utc(2026, 12, 3, 23), utc(2026, 12, 4, 0)),
        (utc(2026, 12, 4, 6), utc(2026, 12, 4, 7)),
    ]
    assert [r.carbon_intensity_gco2e_per_kwh for r in records] == [410.0, 398.5, 365.0]
    # isEstimated null with an estimation method named: estimated
    assert [r.is_estimated for r in records] == [False, False, True]
    assert all(r.valid_from.tzinfo is UTC for r in records)
    why = reasons(skipped)
    assert set(why) == {f"data[{i}]" for i in (2, 3, 4, 5, 6, 7)}
    assert "no carbonIntensity" in why["data[2]"]
    assert ">= 0" in why["data[3]"]  # negative
    assert "<= 5000" in why["data[4]"]  # above the contract's bound
    assert "naive" in why["data[5]"]
    assert "time missing" in why["data[6]"]
    assert "emission_factor_type" in why["data[7]"]  # "marginal" is not a factor type


def test_electricity_maps_history_needs_a_data_list() -> None:
    with pytest.raises(GridError, match="electricitymaps: payload has no `data` list"):
        electricity_maps_history({"zone": "DE"})
    with pytest.raises(GridError, match="not a JSON object"):
        electricity_maps_history([1, 2])


def csv_text() -> str:
    return (FIXTURES / "electricitymaps_portal.csv").read_text(encoding="utf-8")


def test_electricity_maps_csv_lifecycle_column() -> None:
    records, skipped = electricity_maps_csv(csv_text())
    assert [(r.valid_from, r.carbon_intensity_gco2e_per_kwh) for r in records] == [
        (utc(2025, 1, 1, 0), 171.4),
        (utc(2025, 1, 1, 1), 175.02),
        (utc(2025, 1, 1, 2), 170.0),
        (utc(2025, 1, 1, 3), 169.5),
    ]
    assert all(r.emission_factor_type == "lifecycle" and r.zone == "CO" for r in records)
    assert all(r.valid_to - r.valid_from == timedelta(hours=1) for r in records)
    assert [r.is_estimated for r in records] == [False, True, False, False]
    why = reasons(skipped)
    assert set(why) == {"line 6", "line 7", "line 8"}
    assert "<= 5000" in why["line 6"]
    assert "not an RFC 3339 time" in why["line 7"]
    assert "maybe" in why["line 8"]


def test_electricity_maps_csv_direct_column() -> None:
    records, skipped = electricity_maps_csv(csv_text(), emission_factor_type="direct")
    assert [(r.valid_from, r.carbon_intensity_gco2e_per_kwh) for r in records] == [
        (utc(2025, 1, 1, 0), 98.12),
        (utc(2025, 1, 1, 1), 101.5),
        (utc(2025, 1, 1, 4), 99.0),
    ]
    assert all(r.emission_factor_type == "direct" for r in records)
    why = reasons(skipped)
    assert "no Carbon Intensity gCO₂eq/kWh (direct)" in why["line 4"]  # empty cell
    assert ">= 0" in why["line 5"]
    # an offset time is converted to UTC before anything else fails on that row
    assert "maybe" in why["line 8"]


def test_electricity_maps_csv_offset_time_and_missing_column() -> None:
    text = csv_text().replace(",maybe,", ",false,")
    records, _ = electricity_maps_csv(text, emission_factor_type="direct")
    assert records[-1].valid_from == utc(2025, 1, 1, 11)  # 06:00-05:00
    header_only = "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct)\n"
    with pytest.raises(GridError, match="life cycle assessment"):
        electricity_maps_csv(header_only)
    with pytest.raises(GridError, match="'direct' or 'lifecycle'"):
        electricity_maps_csv(csv_text(), emission_factor_type="marginal")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- WattTime


def test_watttime_units_alignment_and_signal() -> None:
    records, skipped = watttime_v3(load("watttime_historical.json"))
    assert records[0].carbon_intensity_gco2e_per_kwh == pytest.approx(453.59237)
    assert records[1].carbon_intensity_gco2e_per_kwh == pytest.approx(850 * 0.45359237)
    assert (records[0].valid_from, records[0].valid_to) == (
        utc(2026, 12, 4, 0, 0),
        utc(2026, 12, 4, 0, 5),
    )
    # -08:00 offset -> UTC; a zero value is valid
    assert records[2].valid_from == utc(2026, 12, 4, 0, 25)
    assert records[2].carbon_intensity_gco2e_per_kwh == 0.0
    assert len(records) == 3
    assert {(r.zone, r.signal, r.emission_factor_type, r.source) for r in records} == {
        ("CAISO_NORTH", "marginal", "direct", "watttime")
    }
    assert not any(r.is_estimated for r in records)
    why = reasons(skipped)
    assert set(why) == {f"data[{i}]" for i in (2, 3, 4, 6, 7)}
    assert ">= 0" in why["data[2]"]
    assert "<= 5000" in why["data[3]"]  # 12000 lbs/MWh = 5443 g/kWh
    assert "naive" in why["data[4]"]
    assert "not finite" in why["data[6]"]
    assert "time missing" in why["data[7]"]


def test_watttime_aoer_period_and_forecast() -> None:
    payload = load("watttime_historical.json")
    payload["meta"].update(
        signal_type="co2_aoer",
        data_point_period_seconds=3600,
        generated_at="2026-12-04T00:00:00+00:00",
    )
    records, _ = watttime_v3(payload)
    assert records[0].signal == "average"
    assert records[0].valid_to - records[0].valid_from == timedelta(hours=1)
    assert all(r.is_estimated for r in records)


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"signal_type": "health_damage"}, "not a carbon intensity"),
        ({"units": "percentile"}, "cannot be converted"),
        ({"region": None}, "meta.region"),
        ({"data_point_period_seconds": 0}, "not > 0"),
    ],
)
def test_watttime_unusable_meta(meta: dict[str, Any], match: str) -> None:
    payload = load("watttime_historical.json")
    payload["meta"].update(meta)
    with pytest.raises(GridError, match=f"grid watttime: .*{match}"):
        watttime_v3(payload)


def test_lbs_conversion_constant() -> None:
    # 1 lb = 453.59237 g exactly; 1 MWh = 1000 kWh
    assert pytest.approx(453.59237 / 1000) == LBS_PER_MWH_TO_G_PER_KWH


# --------------------------------------------------------------------------- UK Carbon Intensity


def test_uk_actual_then_forecast() -> None:
    records, skipped = uk_carbon_intensity(load("uk_intensity.json"))
    assert [
        (r.valid_from, r.valid_to, r.carbon_intensity_gco2e_per_kwh, r.is_estimated)
        for r in records
    ] == [
        (utc(2026, 12, 4, 9, 30), utc(2026, 12, 4, 10), 175.0, False),  # actual wins
        (utc(2026, 12, 4, 10), utc(2026, 12, 4, 10, 30), 172.0, True),  # forecast only
    ]
    assert {(r.zone, r.signal, r.emission_factor_type, r.source) for r in records} == {
        ("GB", "average", "direct", "uk-carbon-intensity")
    }
    why = reasons(skipped)
    assert set(why) == {f"data[{i}]" for i in range(2, 7)}
    assert "no intensity.forecast" in why["data[2]"]
    assert ">= 0" in why["data[3]"]
    assert "naive" in why["data[4]"]
    assert "after" in why["data[5]"]  # from == to: an empty span
    assert "no `intensity`" in why["data[6]"]


def test_uk_regional_nestings() -> None:
    records, skipped = uk_carbon_intensity(load("uk_regional_regionid.json"))
    assert [(r.zone, r.carbon_intensity_gco2e_per_kwh, r.is_estimated) for r in records] == [
        ("GB-13", 201.0, True)
    ]
    assert reasons(skipped).keys() == {"data[0].data[1]"}  # 5001 > 5000

    records, skipped = uk_carbon_intensity(load("uk_regional.json"))
    assert [(r.zone, r.valid_from, r.carbon_intensity_gco2e_per_kwh) for r in records] == [
        ("GB-1", utc(2026, 12, 4, 10), 12.0),
        ("GB-13", utc(2026, 12, 4, 10), 201.0),
    ]
    assert "regionid 'x'" in reasons(skipped)["data[0].regions[2]"]


# --------------------------------------------------------------------------- XM (Colombia)


def test_xm_local_hours_to_utc() -> None:
    records, skipped = xm_emission_factor(load("xm_factorEmisionCO2e.json"))
    day1 = records[:24]
    assert len(day1) == 24
    # Values_Hour01 of 2025-01-01 is 00:00-01:00 in Colombia (UTC-5) = 05:00-06:00 UTC
    assert (day1[0].valid_from, day1[0].valid_to) == (utc(2025, 1, 1, 5), utc(2025, 1, 1, 6))
    assert day1[0].carbon_intensity_gco2e_per_kwh == 95.1
    # Values_Hour24 is 23:00-24:00 local = 04:00-05:00 UTC on the next day
    assert (day1[23].valid_from, day1[23].valid_to) == (utc(2025, 1, 2, 4), utc(2025, 1, 2, 5))
    assert day1[23].carbon_intensity_gco2e_per_kwh == 100.2
    assert {
        (r.zone, r.signal, r.emission_factor_type, r.source, r.is_estimated) for r in records
    } == {("CO", "average", "direct", "xm", False)}
    # the second day lost five hours, the third row has no usable date
    assert len(records) == 24 + 19
    why = reasons(skipped)
    assert "no Values_Hour03" in why["row 1 2025-01-02 Values_Hour03"]
    assert ">= 0" in why["row 1 2025-01-02 Values_Hour04"]
    assert "<= 5000" in why["row 1 2025-01-02 Values_Hour05"]
    assert "not a number" in why["row 1 2025-01-02 Values_Hour06"]
    assert "no Values_Hour07" in why["row 1 2025-01-02 Values_Hour07"]
    assert "not YYYY-MM-DD" in why["row 2"]
    assert len(skipped) == 6


def test_xm_dates_as_pydataxm_gives_them() -> None:
    row: dict[str, Any] = {f"Values_Hour{h:02d}": 100.0 for h in range(1, 25)}
    for day in (date(2025, 3, 1), datetime(2025, 3, 1), "2025-03-01T00:00:00"):
        records, skipped = xm_emission_factor([{**row, "Date": day}])
        assert skipped == []
        assert records[0].valid_from == utc(2025, 3, 1, 5)
    _, skipped = xm_emission_factor([{**row, "Date": datetime(2025, 3, 1, 7)}])
    assert "not a midnight" in skipped[0].reason
    with pytest.raises(GridError, match="grid xm: rows must be"):
        xm_emission_factor({"Date": "2025-03-01"})


def test_xm_accepts_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(load("xm_factorEmisionCO2e.json")[:1])
    frame["Date"] = pd.to_datetime(frame["Date"])  # pydataxm parses Date to datetime64
    records, skipped = xm_emission_factor(frame)
    assert skipped == []
    assert len(records) == 24
    assert records[0].valid_from == utc(2025, 1, 1, 5)


# --------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T10:00:00Z", utc(2026, 12, 4, 10)),
        ("2026-12-04T10:00Z", utc(2026, 12, 4, 10)),
        ("2026-12-04T10:00:00.000Z", utc(2026, 12, 4, 10)),
        ("2026-12-04T05:00:00-05:00", utc(2026, 12, 4, 10)),
        ("2026-12-04T11:30:00+01:30", utc(2026, 12, 4, 10)),
    ],
)
def test_parse_time_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC
