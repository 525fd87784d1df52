"""Grid HTTP clients, the parts without a socket: building (credentials, urls, zones), range
splitting, XM's flattening and UK's regional range shape. The HTTP side is
tests/integration/test_grid_http.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.collect import grid
from pipeline.collect.config import (
    ElectricityMapsSource,
    UkCarbonIntensitySource,
    WattTimeSource,
    XmSource,
)
from pipeline.collect.grid_http import (
    ELECTRICITY_MAPS_URL,
    ElectricityMapsClient,
    UkCarbonIntensityClient,
    WattTimeClient,
    XmClient,
    grid_client,
    local_days,
    split_range,
    uk_regional_as_list,
    xm_rows,
)
from pipeline.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "grid"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def em(**more: Any) -> ElectricityMapsSource:
    fields = {"kind": "electricity_maps", "zone": "eu-de", "api_key_env": "T_EM_KEY"}
    return msgspec.convert({**fields, **more}, ElectricityMapsSource)


def wt(**more: Any) -> WattTimeSource:
    fields = {"kind": "watttime", "zone": "us-west", "username_env": "T_WT_U"}
    return msgspec.convert({**fields, "password_env": "T_WT_P", **more}, WattTimeSource)


def test_split_range_covers_the_range_in_steps() -> None:
    spans = split_range(utc(2026, 3, 1), utc(2026, 3, 31), timedelta(days=14))
    assert spans == [
        (utc(2026, 3, 1), utc(2026, 3, 15)),
        (utc(2026, 3, 15), utc(2026, 3, 29)),
        (utc(2026, 3, 29), utc(2026, 3, 31)),
    ]
    assert split_range(utc(2026, 3, 1), utc(2026, 3, 1), timedelta(days=1)) == []


def test_local_days_are_colombian_days() -> None:
    # 2025-01-01T00:00Z is 2024-12-31 19:00 in Colombia
    assert local_days(utc(2025, 1, 1), utc(2025, 1, 2)) == [date(2024, 12, 31), date(2025, 1, 1)]
    assert local_days(utc(2025, 1, 1, 5), utc(2025, 1, 2, 5)) == [date(2025, 1, 1)]


def test_xm_chunks_are_runs_of_30_local_days() -> None:
    client = XmClient(msgspec.convert({"kind": "xm", "zone": "co"}, XmSource))
    chunks = client.chunks(utc(2025, 1, 1, 5), utc(2025, 2, 15, 5))
    assert chunks == [
        (utc(2025, 1, 1, 5), utc(2025, 1, 31, 5)),
        (utc(2025, 1, 31, 5), utc(2025, 2, 15, 5)),
    ]
    assert client.chunks(utc(2025, 1, 2), utc(2025, 1, 1)) == []


def test_xm_rows_flatten_like_pydataxm() -> None:
    rows, skipped = xm_rows(load("xm_hourly_response.json"))
    assert [s.where for s in skipped] == ["Items[2]"]
    assert rows[0]["Id"] == "Sistema" and rows[0]["Values_code"] == "Sistema"
    assert rows[0]["Date"] == "2025-01-01"
    assert rows[0]["Values_Hour01"] == "95.1" and rows[0]["Values_Hour24"] == "100.2"
    records, _ = grid.xm_emission_factor(rows, zone="co")
    assert records[0].valid_from == utc(2025, 1, 1, 5)
    assert records[0].carbon_intensity_gco2e_per_kwh == 95.1


@pytest.mark.parametrize(
    ("payload", "why"),
    [([], "not a JSON object"), ({"items": []}, "no `Items` list"), ({"Items": {}}, "no `Items`")],
)
def test_xm_rows_wrong_shape_is_a_grid_error(payload: object, why: str) -> None:
    with pytest.raises(grid.GridError, match=why):
        xm_rows(payload)


def test_xm_rows_skip_a_broken_entity() -> None:
    payload = {"Items": [{"Date": "2025-01-01", "HourlyEntities": [{"Id": "Sistema"}, 3]}]}
    rows, skipped = xm_rows(payload)
    assert rows == []
    assert [s.where for s in skipped] == [
        "Items[0].HourlyEntities[0]",
        "Items[0].HourlyEntities[1]",
    ]


def test_uk_regional_range_object_becomes_the_list_the_parser_reads() -> None:
    payload = load("uk_regional_intensity_range.json")
    with pytest.raises(grid.GridError):  # the parser alone wants a `data` list
        grid.uk_carbon_intensity(payload, zone="gb-london")
    records, skipped = grid.uk_carbon_intensity(uk_regional_as_list(payload), zone="gb-london")
    assert [(r.valid_from, r.carbon_intensity_gco2e_per_kwh) for r in records] == [
        (datetime(2026, 12, 4, 9, 30, tzinfo=UTC), 190.0),
        (utc(2026, 12, 4, 10), 201.0),
    ]
    assert [s.where for s in skipped] == ["data[0].data[2]"]  # forecast null
    national = load("uk_intensity.json")
    assert uk_regional_as_list(national) is national


def test_grid_client_picks_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_EM_KEY", "k")
    monkeypatch.setenv("T_WT_U", "u")
    monkeypatch.setenv("T_WT_P", "p")
    ukc = msgspec.convert({"kind": "uk_carbon_intensity", "zone": "gb"}, UkCarbonIntensitySource)
    xmc = msgspec.convert({"kind": "xm", "zone": "co"}, XmSource)
    assert type(grid_client(em())) is ElectricityMapsClient
    assert type(grid_client(wt())) is WattTimeClient
    assert type(grid_client(ukc)) is UkCarbonIntensityClient
    assert type(grid_client(xmc)) is XmClient
    assert grid_client(em()).label == f"electricity_maps:eu-de@{ELECTRICITY_MAPS_URL}"


def test_missing_key_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_EM_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$T_EM_KEY is not set"):
        grid_client(em())
    monkeypatch.setenv("T_EM_KEY", "")  # empty is as good as unset
    with pytest.raises(ConfigError, match=r"\$T_EM_KEY"):
        grid_client(em())


def test_missing_watttime_password_names_it_not_the_username(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T_WT_U", "alice-the-user")
    monkeypatch.delenv("T_WT_P", raising=False)
    with pytest.raises(ConfigError, match=r"\$T_WT_P is not set") as caught:
        grid_client(wt())
    assert "alice-the-user" not in str(caught.value)


def test_credentials_in_the_url_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_EM_KEY", "k")
    with pytest.raises(ConfigError, match="not in the url") as caught:
        grid_client(em(url="https://me:hunter2@proxy.example"))
    assert "hunter2" not in str(caught.value)


def test_a_zone_records_cannot_carry_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_EM_KEY", "k")
    with pytest.raises(ConfigError, match="not a valid id"):
        grid_client(em(zone="eu de"))


def test_a_url_path_prefix_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_EM_KEY", "k")
    client = grid_client(em(url="https://proxy.example/em/"))
    assert client.base_url == "https://proxy.example/em"


def test_history_needs_aware_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_EM_KEY", "k")
    client = grid_client(em())
    with pytest.raises(ValueError, match="no time zone"):
        asyncio.run(client.history(datetime(2026, 1, 1), utc(2026, 1, 2)))
    assert asyncio.run(client.history(utc(2026, 1, 2), utc(2026, 1, 1))) == ([], [])
