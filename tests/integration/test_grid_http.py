"""Grid HTTP clients against a local server answering like each provider (real sockets, no
network, no Kafka): records hand-checked, range splitting, auth, failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import pytest

from pipeline.collect.config import (
    ElectricityMapsSource,
    GridSource,
    UkCarbonIntensitySource,
    WattTimeSource,
    XmSource,
)
from pipeline.collect.grid import GridError, Parsed
from pipeline.collect.grid_http import GridAuthError, GridClient, GridHttpError, grid_client
from tests.support.grid_server import GridServer, fixture, grid_server

T = TypeVar("T")

LBS = 0.45359237
EM_ENV = "TEST_GRID_EM_KEY"
WT_USER_ENV = "TEST_GRID_WT_USER"
WT_PASSWORD_ENV = "TEST_GRID_WT_PASSWORD"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GridServer]:
    with grid_server() as srv:
        monkeypatch.setenv(EM_ENV, srv.em_key)
        monkeypatch.setenv(WT_USER_ENV, srv.wt_user)
        monkeypatch.setenv(WT_PASSWORD_ENV, srv.wt_password)
        yield srv


def em(url: str, **more: Any) -> ElectricityMapsSource:
    fields = {"kind": "electricity_maps", "zone": "eu-de", "provider_zone": "DE", "url": url}
    return msgspec.convert({**fields, "api_key_env": EM_ENV, **more}, ElectricityMapsSource)


def wt(url: str, **more: Any) -> WattTimeSource:
    fields = {"kind": "watttime", "zone": "us-caiso-n", "provider_zone": "CAISO_NORTH", "url": url}
    creds = {"username_env": WT_USER_ENV, "password_env": WT_PASSWORD_ENV}
    return msgspec.convert({**fields, **creds, **more}, WattTimeSource)


def uk(url: str, **more: Any) -> UkCarbonIntensitySource:
    fields = {"kind": "uk_carbon_intensity", "zone": "gb", "url": url}
    return msgspec.convert({**fields, **more}, UkCarbonIntensitySource)


def xm(url: str, **more: Any) -> XmSource:
    return msgspec.convert({"kind": "xm", "zone": "co", "url": url, **more}, XmSource)


#: Per provider: the source, and the path prefix of its data requests.
PROVIDERS: dict[str, tuple[Callable[..., GridSource], str]] = {
    "electricity_maps": (em, "/v3/carbon-intensity/"),
    "watttime": (wt, "/v3/historical"),
    "uk_carbon_intensity": (uk, "/intensity"),
    "xm": (xm, "/hourly"),
}


def run(
    source: GridSource,
    call: Callable[[GridClient], Awaitable[T]],
    clock: Callable[[], datetime] | None = None,
) -> T:
    async def go() -> T:
        client = grid_client(source) if clock is None else grid_client(source, clock=clock)
        try:
            return await call(client)
        finally:
            await client.close()

    return asyncio.run(go())


def latest(source: GridSource, clock: Callable[[], datetime] | None = None) -> Parsed:
    return run(source, lambda c: c.latest(), clock)


def history(source: GridSource, start: datetime, end: datetime) -> Parsed:
    return run(source, lambda c: c.history(start, end))


def starts(records: Parsed) -> list[datetime]:
    return [r.valid_from for r in records[0]]


def assert_unique_sorted(found: list[datetime]) -> None:
    assert found == sorted(set(found))


# --------------------------------------------------------------------------- Electricity Maps


def test_em_latest_asks_for_the_provider_zone_and_gives_the_fleet_zone(server: GridServer) -> None:
    records, skipped = latest(em(server.url))
    assert skipped == []
    [record] = records
    assert record.zone == "eu-de"
    assert record.valid_from == utc(2026, 12, 4, 10)
    assert record.valid_to == utc(2026, 12, 4, 11)
    assert record.carbon_intensity_gco2e_per_kwh == 302.0
    assert (record.emission_factor_type, record.signal) == ("lifecycle", "average")
    assert record.is_estimated is True  # the fixture's TIME_SLICER_AVERAGE estimate
    [seen] = server.requests
    assert seen.query == {"zone": "DE", "emissionFactorType": "lifecycle"}
    assert seen.headers["auth-token"] == server.em_key


def test_em_history_splits_into_10_day_requests(server: GridServer) -> None:
    start, end = utc(2026, 1, 1), utc(2026, 1, 26)
    records, skipped = history(em(server.url, emission_factor_type="direct"), start, end)
    assert skipped == []
    spans = [(r.query["start"], r.query["end"]) for r in server.seen("/v3/carbon-intensity/")]
    assert spans == [
        ("2026-01-01T00:00:00Z", "2026-01-11T00:00:00Z"),
        ("2026-01-11T00:00:00Z", "2026-01-21T00:00:00Z"),
        ("2026-01-21T00:00:00Z", "2026-01-26T00:00:00Z"),
    ]
    assert {r.query["emissionFactorType"] for r in server.requests} == {"direct"}
    # 25 days of hours, each once (the server's inclusive ends answer the boundary hour twice)
    found = starts((records, skipped))
    assert len(found) == 25 * 24
    assert_unique_sorted(found)
    assert found[0] == start and found[-1] == utc(2026, 1, 25, 23)
    by_start = {r.valid_from: r for r in records}
    assert by_start[utc(2026, 1, 11, 13)].carbon_intensity_gco2e_per_kwh == 313.0
    assert {(r.zone, r.emission_factor_type, r.is_estimated) for r in records} == {
        ("eu-de", "direct", False)
    }


def test_em_over_the_limit_is_refused_by_the_server(server: GridServer) -> None:
    """The server enforces the documented 10 days: the client's split is what makes it pass."""
    source = em(server.url)

    async def one_request(client: GridClient) -> object:
        return await client._em_get(  # type: ignore[attr-defined]
            "/v3/carbon-intensity/past-range",
            {"zone": "DE", "start": "2026-01-01T00:00:00Z", "end": "2026-01-12T00:00:00Z"},
        )

    with pytest.raises(GridHttpError, match="10 days limit") as caught:
        run(source, one_request)
    assert caught.value.status == 400


def test_em_wrong_key_names_the_variable_not_the_key(
    server: GridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EM_ENV, "wrong-key-Zq9-do-not-print")
    with pytest.raises(GridAuthError) as caught:
        latest(em(server.url))
    message = str(caught.value)
    assert f"${EM_ENV}" in message and "401" in message
    assert "wrong-key-Zq9-do-not-print" not in message
    assert caught.value.status == 401


def test_an_error_body_echoing_the_key_is_scrubbed(server: GridServer) -> None:
    server.fail("/v3/carbon-intensity/latest", 400, body=f"bad key {server.em_key}".encode())
    with pytest.raises(GridHttpError) as caught:
        latest(em(server.url))
    assert server.em_key not in str(caught.value)
    assert "bad key ***" in str(caught.value)


def test_em_wrong_shape_is_a_grid_error(server: GridServer) -> None:
    server.canned("/v3/carbon-intensity/past-range", {"zone": "DE", "history": []})
    with pytest.raises(GridError, match="no `data` list"):
        history(em(server.url), utc(2026, 1, 1), utc(2026, 1, 2))


# --------------------------------------------------------------------------- WattTime


def test_watttime_latest_logs_in_and_converts_lbs_per_mwh(server: GridServer) -> None:
    server.canned("/v3/historical", fixture("watttime_historical.json"))
    now = utc(2026, 12, 4, 1)
    records, skipped = latest(wt(server.url, signal_type="co2_moer"), clock=lambda: now)
    login, data = server.requests
    assert login.path == "/login" and login.headers["Authorization"].startswith("Basic ")
    assert data.headers["Authorization"].startswith("Bearer ")
    assert data.query == {
        "region": "CAISO_NORTH",
        "signal_type": "co2_moer",
        "start": "2026-12-04T00:00:00Z",  # the last hour (2 x 900 s is shorter)
        "end": "2026-12-04T01:00:00Z",
    }
    values = {r.valid_from: r.carbon_intensity_gco2e_per_kwh for r in records}
    assert values == {
        utc(2026, 12, 4, 0, 0): pytest.approx(1000 * LBS),  # 453.59237 g/kWh
        utc(2026, 12, 4, 0, 5): pytest.approx(850 * LBS),
        utc(2026, 12, 4, 0, 25): 0.0,  # given as 16:25-08:00
    }
    assert {(r.zone, r.signal, r.emission_factor_type, r.is_estimated) for r in records} == {
        ("us-caiso-n", "marginal", "direct", False)
    }
    assert all(r.valid_to - r.valid_from == timedelta(minutes=5) for r in records)
    # negative, over 5000 g/kWh, naive, NaN, no time: skipped with where
    assert [s.where for s in skipped] == [f"data[{i}]" for i in (2, 3, 4, 6, 7)]


def test_watttime_latest_window_covers_two_poll_intervals(server: GridServer) -> None:
    now = utc(2026, 12, 4, 12)
    records, _ = latest(wt(server.url, poll_interval_s=3600), clock=lambda: now)
    [data] = server.seen("/v3/historical")
    assert (data.query["start"], data.query["end"]) == ("2026-12-04T10:00:00Z", now_z(now))
    assert len(records) == 2 * 12 + 1  # both ends included by the service
    assert records[-1].valid_from == now
    assert records[0].carbon_intensity_gco2e_per_kwh == pytest.approx(800 * LBS)
    assert records[0].signal == "average"  # co2_aoer, the default


def now_z(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_watttime_history_splits_into_30_day_requests(server: GridServer) -> None:
    start, end = utc(2026, 1, 1), utc(2026, 2, 10)
    records, skipped = history(wt(server.url), start, end)
    assert skipped == []
    spans = [(r.query["start"], r.query["end"]) for r in server.seen("/v3/historical")]
    assert spans == [
        ("2026-01-01T00:00:00Z", "2026-01-31T00:00:00Z"),
        ("2026-01-31T00:00:00Z", "2026-02-10T00:00:00Z"),
    ]
    assert server.logins == 1  # one token for both
    found = starts((records, skipped))
    assert len(found) == 40 * 288
    assert_unique_sorted(found)
    assert found[-1] == end - timedelta(minutes=5)
    by_start = {r.valid_from: r.carbon_intensity_gco2e_per_kwh for r in records}
    assert by_start[utc(2026, 1, 31, 0, 0)] == pytest.approx(800 * LBS)
    assert by_start[utc(2026, 1, 31, 0, 35)] == pytest.approx(835 * LBS)


def test_watttime_expired_token_logs_in_again_once(server: GridServer) -> None:
    now = utc(2026, 12, 4, 1)

    async def twice(client: GridClient) -> tuple[Parsed, Parsed]:
        first = await client.latest()
        server.expire_tokens()  # the 30 minutes are over
        return first, await client.latest()

    first, second = run(wt(server.url), twice, clock=lambda: now)
    assert len(first[0]) == len(second[0]) == 13
    assert server.logins == 2
    assert [r.path for r in server.requests] == [
        "/login",
        "/v3/historical",
        "/v3/historical",  # 401: the token expired
        "/login",
        "/v3/historical",
    ]


def test_watttime_token_refused_after_relogin_is_an_auth_error(server: GridServer) -> None:
    server.refuse_tokens = True
    with pytest.raises(GridAuthError) as caught:
        latest(wt(server.url))
    assert server.logins == 2  # logged in again once, not forever
    assert len(server.seen("/v3/historical")) == 2
    message = str(caught.value)
    assert f"${WT_USER_ENV}" in message and f"${WT_PASSWORD_ENV}" in message
    assert server.wt_password not in message


def test_watttime_wrong_password_names_the_variables(
    server: GridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WT_PASSWORD_ENV, "not-the-pa55word-xyz")
    with pytest.raises(GridAuthError, match="login refused") as caught:
        latest(wt(server.url))
    assert server.logins == 0
    assert server.seen("/v3/historical") == []
    message = str(caught.value)
    assert f"${WT_USER_ENV}" in message and f"${WT_PASSWORD_ENV}" in message
    assert "not-the-pa55word-xyz" not in message


def test_watttime_no_access_to_the_region(server: GridServer) -> None:
    server.fail("/v3/historical", 403, body=b'{"error": "no access"}')
    with pytest.raises(GridAuthError, match="no access to region CAISO_NORTH"):
        latest(wt(server.url))


# --------------------------------------------------------------------------- UK Carbon Intensity


def test_uk_latest_national(server: GridServer) -> None:
    records, skipped = latest(uk(server.url))
    assert skipped == []
    [record] = records
    assert (record.valid_from, record.valid_to) == (utc(2026, 12, 4, 10), utc(2026, 12, 4, 10, 30))
    assert record.carbon_intensity_gco2e_per_kwh == 168.0  # actual, not the forecast
    assert record.is_estimated is False
    assert (record.zone, record.emission_factor_type, record.signal) == ("gb", "direct", "average")
    assert [r.path for r in server.requests] == ["/intensity"]


def test_uk_history_30_days_is_three_requests(server: GridServer) -> None:
    start, end = utc(2026, 3, 1), utc(2026, 3, 31)
    records, skipped = history(uk(server.url), start, end)
    assert skipped == []
    assert [r.path for r in server.requests] == [
        "/intensity/2026-03-01T00:00Z/2026-03-15T00:00Z",
        "/intensity/2026-03-15T00:00Z/2026-03-29T00:00Z",
        "/intensity/2026-03-29T00:00Z/2026-03-31T00:00Z",
    ]
    found = starts((records, skipped))
    assert len(found) == 30 * 48  # the half hour before `from` each answer adds is dropped
    assert_unique_sorted(found)
    assert found[0] == start and found[-1] == utc(2026, 3, 30, 23, 30)
    by_start = {r.valid_from: r for r in records}
    assert by_start[utc(2026, 3, 15, 7, 30)].carbon_intensity_gco2e_per_kwh == 152.0  # actual
    assert {(r.zone, r.is_estimated) for r in records} == {("gb", False)}


def test_uk_regional_latest_and_history_keep_the_fleet_zone(server: GridServer) -> None:
    source = uk(server.url, zone="gb-london", region_id=13)
    records, skipped = latest(source)
    assert [(r.zone, r.carbon_intensity_gco2e_per_kwh, r.is_estimated) for r in records] == [
        ("gb-london", 201.0, True)  # the parser's "gb-london-13" is the fleet's zone again
    ]
    assert [s.where for s in skipped] == ["data[0].data[1]"]  # 5001 g/kWh
    records, skipped = history(source, utc(2026, 3, 1), utc(2026, 3, 2))
    assert (
        server.requests[-1].path
        == "/regional/intensity/2026-03-01T00:00Z/2026-03-02T00:00Z/regionid/13"
    )
    assert skipped == []
    assert len(records) == 48
    assert records[0].valid_from == utc(2026, 3, 1)
    assert records[21].carbon_intensity_gco2e_per_kwh == 210.0  # 10:30, forecast 200 + 10
    assert {(r.zone, r.is_estimated) for r in records} == {("gb-london", True)}


# --------------------------------------------------------------------------- XM


def test_xm_latest_is_the_last_7_local_days(server: GridServer) -> None:
    now = utc(2025, 1, 8, 3)  # 2025-01-07 22:00 in Colombia
    records, skipped = latest(xm(server.url), clock=lambda: now)
    [seen] = server.requests
    assert (seen.method, seen.path) == ("POST", "/hourly")
    assert seen.body == {
        "MetricId": "factorEmisionCO2e",
        "StartDate": "2025-01-01",
        "EndDate": "2025-01-07",
        "Entity": "Sistema",
        "Filter": [],
    }
    assert skipped == []
    assert len(records) == 7 * 24
    first = records[0]
    assert (first.valid_from, first.valid_to) == (utc(2025, 1, 1, 5), utc(2025, 1, 1, 6))
    assert first.carbon_intensity_gco2e_per_kwh == 91.1  # Hour01 of 2025-01-01: 90 + 1 + 0.1
    assert records[-1].valid_from == utc(2025, 1, 8, 4)  # Hour24 of 2025-01-07 local
    assert {(r.zone, r.source, r.is_estimated) for r in records} == {("co", "xm", False)}


def test_xm_history_splits_into_30_local_days_and_aligns_to_utc(server: GridServer) -> None:
    start, end = utc(2025, 1, 1, 5), utc(2025, 2, 15, 5)  # local days 2025-01-01..02-14
    records, skipped = history(xm(server.url), start, end)
    assert skipped == []
    assert [(r.body["StartDate"], r.body["EndDate"]) for r in server.requests] == [
        ("2025-01-01", "2025-01-30"),
        ("2025-01-31", "2025-02-14"),
    ]
    found = starts((records, skipped))
    assert len(found) == 45 * 24
    assert_unique_sorted(found)
    by_start = {r.valid_from: r.carbon_intensity_gco2e_per_kwh for r in records}
    assert by_start[utc(2025, 1, 1, 5)] == 91.1  # Hour01 = local 00:00-01:00 = 05:00Z
    assert by_start[utc(2025, 1, 2, 4)] == 114.1  # Hour24 of 01-01 = 04:00Z of 01-02
    assert by_start[utc(2025, 1, 31, 5)] == 94.1  # first hour of the second request


def test_xm_history_of_a_utc_day_asks_for_both_local_days(server: GridServer) -> None:
    records, _ = history(xm(server.url), utc(2025, 1, 1), utc(2025, 1, 2))
    [seen] = server.requests
    assert (seen.body["StartDate"], seen.body["EndDate"]) == ("2024-12-31", "2025-01-01")
    assert len(records) == 24
    assert records[0].valid_from == utc(2025, 1, 1)
    assert records[0].carbon_intensity_gco2e_per_kwh == 113.1  # Hour20 of 12-31: 90+20+3.1


def test_xm_recorded_answer_with_string_values(server: GridServer) -> None:
    server.canned("/hourly", fixture("xm_hourly_response.json"))
    records, skipped = history(xm(server.url), utc(2025, 1, 1, 5), utc(2025, 1, 4, 5))
    assert len(records) == 24 + 22
    assert records[0].carbon_intensity_gco2e_per_kwh == 95.1  # "95.1"
    assert sorted(s.where.split(" ", 1)[1] for s in skipped) == [
        "Items[2]",
        "row 1 2025-01-02 Values_Hour02",
        "row 1 2025-01-02 Values_Hour03",
    ]


# --------------------------------------------------------------------------- every provider


@pytest.mark.parametrize("kind", PROVIDERS)
def test_server_error_is_a_grid_http_error(server: GridServer, kind: str) -> None:
    make, prefix = PROVIDERS[kind]
    server.fail(prefix, 500)
    with pytest.raises(GridHttpError, match="HTTP 500") as caught:
        latest(make(server.url))
    assert caught.value.status == 500
    assert not isinstance(caught.value, GridAuthError)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_rate_limit_says_when_to_retry(server: GridServer, kind: str) -> None:
    make, prefix = PROVIDERS[kind]
    server.fail(prefix, 429, headers={"Retry-After": "30"})
    with pytest.raises(GridHttpError, match="rate limited") as caught:
        history(make(server.url), utc(2025, 1, 1), utc(2025, 1, 2))
    assert (caught.value.status, caught.value.retry_after_s) == (429, 30.0)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_slow_service_times_out(server: GridServer, kind: str) -> None:
    make, prefix = PROVIDERS[kind]
    server.slow(prefix, 5.0)
    with pytest.raises(GridHttpError, match=r"no answer within 0\.3 s") as caught:
        latest(make(server.url, timeout_s=0.3))
    assert caught.value.status is None


@pytest.mark.parametrize("kind", PROVIDERS)
def test_garbage_body_is_a_grid_error(server: GridServer, kind: str) -> None:
    make, prefix = PROVIDERS[kind]
    server.garbage(prefix, b"<html>upstream proxy error</html>")
    with pytest.raises(GridError, match="not JSON") as caught:
        latest(make(server.url))
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("kind", PROVIDERS)
def test_down_service_is_a_grid_http_error(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EM_ENV, "k")
    monkeypatch.setenv(WT_USER_ENV, "u")
    monkeypatch.setenv(WT_PASSWORD_ENV, "p")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    make, _ = PROVIDERS[kind]
    with pytest.raises(GridHttpError, match="ClientConnectorError"):
        latest(make(f"http://127.0.0.1:{port}"))


@pytest.mark.parametrize("kind", PROVIDERS)
def test_label_names_kind_zone_and_url_only(server: GridServer, kind: str) -> None:
    make, _ = PROVIDERS[kind]
    source = make(server.url)
    client = grid_client(source)
    assert client.label == f"{kind}:{source.zone}@{server.url}"
    for secret in (server.em_key, server.wt_password):
        assert secret not in client.label and secret not in repr(client)
