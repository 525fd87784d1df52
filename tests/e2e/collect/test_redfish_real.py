"""The Redfish client against a real HTTP(S) service on 127.0.0.1 serving DMTF's mockups."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pipeline.collect.counters import CounterRates, Outcome
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.redfish import (
    BasicAuth,
    Discovery,
    RedfishAuthError,
    RedfishClient,
    RedfishError,
    SessionAuth,
)
from tests.support.redfish_server import RedfishServer, redfish_server, self_signed_cert

T = TypeVar("T")
ONE_U = "/redfish/v1/Chassis/1U"
PDU = "/redfish/v1/PowerEquipment/RackPDUs/1"
GOOD = BasicAuth("admin", "s3cret-pw")


def run(client: RedfishClient, step: Callable[[RedfishClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with client:
            return await step(client)

    return asyncio.run(go())


def edit(server: RedfishServer, path: str, key: str, value: object) -> None:
    """Set `key` of the resource at `path` in the server's copy of the mockup."""
    doc = json.loads(server.file(path).read_text())
    doc[key] = value
    server.file(path).write_text(json.dumps(doc))


def values(readings: list[Reading]) -> dict[Quantity, float]:
    return {r.quantity: r.value for r in readings}


@pytest.fixture
def rack(tmp_path: Path) -> Iterator[RedfishServer]:
    with redfish_server("public-rackmount1", tmp_path) as server:
        yield server


@pytest.fixture
def pdu(tmp_path: Path) -> Iterator[RedfishServer]:
    with redfish_server("public-pdu", tmp_path) as server:
        yield server


@pytest.mark.slow
def test_discovers_and_reads_the_rack_server(rack: RedfishServer) -> None:
    client = RedfishClient(rack.url, auth=GOOD)

    async def step(c: RedfishClient) -> tuple[Discovery, list[Reading]]:
        return await c.discover(), await c.read()

    found, readings = run(client, step)
    assert found.chassis == [ONE_U]
    assert found.rack_pdus == []
    assert values(readings) == {
        Quantity.POWER_W: 374.0,
        Quantity.ENERGY_J: 325675 * 3.6e6,
        Quantity.INLET_TEMP_C: 24.8,
        Quantity.OUTLET_TEMP_C: 40.5,
    }
    power = next(r for r in readings if r.quantity is Quantity.POWER_W)
    assert power.source == f"redfish:{rack.url}{ONE_U}"
    assert all("s3cret" not in r.source and "admin" not in r.source for r in readings)
    assert ("GET", f"{ONE_U}/PowerSubsystem/PowerSupplies/Bay1/Metrics") in rack.requests
    assert client.last_skipped == []


@pytest.mark.slow
def test_reads_the_rack_pdu(pdu: RedfishServer) -> None:
    client = RedfishClient(pdu.url, auth=GOOD)

    async def step(c: RedfishClient) -> tuple[Discovery, list[Reading], list[Reading]]:
        return await c.discover(), await c.read(), await c.read("PDU")

    found, everything, pdu_chassis = run(client, step)
    assert found.rack_pdus == [PDU]
    assert values(everything) == {Quantity.POWER_W: 6438.0, Quantity.ENERGY_J: 56438 * 3.6e6}
    assert {r.source for r in everything} == {f"redfish:{pdu.url}{PDU}"}
    assert pdu_chassis == []  # the PDU's chassis has only Sensors
    with pytest.raises(RedfishError, match=r"no chassis 'nope' \(has: PDU, TransferSwitch1\)"):
        run(RedfishClient(pdu.url, auth=GOOD), lambda c: c.read("nope"))


@pytest.mark.slow
def test_changing_energy_counter_gives_the_mean_power(pdu: RedfishServer) -> None:
    now_ms = [1_000_000]
    client = RedfishClient(pdu.url, auth=GOOD, clock_ms=lambda: now_ms[0])
    rates = CounterRates({Quantity.ENERGY_J: 50_000.0})

    async def step(c: RedfishClient) -> list[list[Reading]]:
        polls = [await c.read()]
        now_ms[0] += 60_000
        pdu.set_reading(f"{PDU}/Metrics", "EnergykWh", 56438.1)  # +0.1 kWh in 60 s: 6 kW
        pdu.set_reading(f"{PDU}/Metrics", "PowerWatts", 6000)
        polls.append(await c.read())
        now_ms[0] += 60_000
        pdu.set_reading(f"{PDU}/Metrics", "EnergykWh", 3.0)  # "reset energy" on the PDU
        polls.append(await c.read())
        return polls

    polls = run(client, step)
    out = [rates.update(r) for poll in polls for r in poll if r.quantity is Quantity.ENERGY_J]
    assert [o.outcome for o in out] == [Outcome.PRIMED, Outcome.RATE, Outcome.RESET]
    assert out[1].per_s == pytest.approx(6000.0)
    assert out[1].interval_s == 60.0
    assert values(polls[1])[Quantity.POWER_W] == 6000.0


@pytest.mark.slow
def test_session_auth_logs_in_again_and_deletes_its_session(rack: RedfishServer) -> None:
    client = RedfishClient(rack.url, auth=SessionAuth("admin", "s3cret-pw"))

    async def step(c: RedfishClient) -> list[list[Reading]]:
        first = await c.read()
        rack.drop_sessions()  # the BMC rebooted or timed the session out
        second = await c.read()
        return [first, second]

    first, second = run(client, step)
    assert values(first) == values(second)
    assert rack.logins == 2
    assert rack.deleted == ["S2"]  # the live session; S1 was dropped by the BMC
    assert rack.tokens == {}
    assert "s3cret" not in repr(client)


@pytest.mark.slow
@pytest.mark.parametrize(
    "auth",
    [BasicAuth("admin", "wrong"), SessionAuth("admin", "wrong"), None],
    ids=["basic", "session", "none"],
)
def test_wrong_or_no_credentials(rack: RedfishServer, auth: BasicAuth | SessionAuth | None) -> None:
    with pytest.raises(RedfishAuthError, match="401") as e:
        run(RedfishClient(rack.url, auth=auth), lambda c: c.read())
    assert "wrong" not in str(e.value)
    assert rack.url in e.value.url


@pytest.mark.slow
def test_tls_is_verified_by_default_and_a_ca_file_makes_it_pass(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with redfish_server("public-rackmount1", tmp_path, tls=(cert, key)) as server:
        assert server.url.startswith("https://")
        with pytest.raises(RedfishError, match=r"TLS.*ca_file"):
            run(RedfishClient(server.url, auth=GOOD), lambda c: c.read())
        assert server.requests == []  # nothing was sent over the unverified connection
        readings = run(RedfishClient(server.url, auth=GOOD, ca_file=str(cert)), lambda c: c.read())
        assert values(readings)[Quantity.POWER_W] == 374.0
        insecure = RedfishClient(server.url, auth=GOOD, verify=False)
        assert values(run(insecure, lambda c: c.read()))[Quantity.POWER_W] == 374.0


@pytest.mark.slow
def test_a_slow_endpoint_times_out(rack: RedfishServer) -> None:
    rack.slow(f"{ONE_U}/EnvironmentMetrics", 5.0)
    with pytest.raises(RedfishError, match=r"no answer within 0.3 s") as e:
        run(RedfishClient(rack.url, auth=GOOD, timeout_s=0.3), lambda c: c.read())
    assert e.value.url.endswith(f"{ONE_U}/EnvironmentMetrics")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>BMC busy</html>", "not JSON"),
        (b"[]", "JSON list, not an object"),
        (b"", "not JSON"),
    ],
)
def test_garbage_body_is_a_redfish_error(rack: RedfishServer, body: bytes, reason: str) -> None:
    rack.garbage(f"{ONE_U}/Power", body)
    with pytest.raises(RedfishError, match=reason):
        run(RedfishClient(rack.url, auth=GOOD), lambda c: c.read())


@pytest.mark.slow
def test_garbage_values_are_skipped_and_a_missing_resource_falls_through(
    rack: RedfishServer,
) -> None:
    rack.file(f"{ONE_U}/EnvironmentMetrics").unlink()  # linked, but 404
    edit(rack, f"{ONE_U}/ThermalSubsystem/ThermalMetrics", "TemperatureSummaryCelsius", "warm")
    edit(rack, f"{ONE_U}/Thermal", "Temperatures", "hot")
    client = RedfishClient(rack.url, auth=GOOD)
    readings = run(client, lambda c: c.read())
    # power from Bay1's InputPowerWatts; temperatures from the readings array by DeviceName
    assert values(readings)[Quantity.POWER_W] == 937.4
    assert values(readings)[Quantity.INLET_TEMP_C] == 24.8
    reasons = {s.where: s.reason for s in client.last_skipped}
    assert reasons[f"{ONE_U}/EnvironmentMetrics"] == "linked but HTTP 404"
    assert reasons["ThermalMetrics.TemperatureSummaryCelsius"] == "not an object: str"
    assert "Thermal.Temperatures" not in reasons  # never needed: ThermalMetrics had both


@pytest.mark.slow
def test_links_to_another_host_are_not_followed(rack: RedfishServer) -> None:
    edit(rack, ONE_U, "Power", {"@odata.id": "http://203.0.113.9/redfish/v1/Chassis/1U/Power"})
    with pytest.raises(RedfishError, match="link leaves"):
        run(RedfishClient(rack.url, auth=GOOD), lambda c: c.read())
