"""The SNMP reader against a real SNMP agent on 127.0.0.1: snmpsim serving recorded PDU walks.

v2c and v3 (authPriv, SHA/AES) over UDP through pysnmp; values changed between polls by
rewriting the walk (and, in one test, by snmpsim's `numeric` variation module by itself);
counters turned into rates by `CounterRates`, a PDU energy reset giving a gap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.collect.counters import CounterRates, Outcome, Rate
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.snmp import (
    APC_ENERGY,
    APC_POWER,
    RARITAN_DIGITS,
    RARITAN_VALUE,
    OidMapping,
    SnmpAuthError,
    SnmpError,
    SnmpTarget,
    SnmpV2c,
    read_apc,
    read_generic,
    read_generic_mapped,
    read_raritan,
)
from tests.support.snmpsim import (
    COUNTER64,
    GAUGE32,
    INTEGER,
    OCTET_STRING,
    Records,
    SnmpSim,
    free_udp_port,
    snmpsim,
)

T0_MS = 1_764_000_000_000
#: rPDU2DeviceStatusEnergyStartTime, a DisplayString beside the meter in a real walk.
APC_DEVICE_STATUS_START_TIME = "1.3.6.1.4.1.318.1.1.26.4.3.1.10"
MAX_RATE = {Quantity.ENERGY_J: 100_000.0}  # 100 kW: a rack PDU's ceiling


class Clock:
    """An injected clock the test moves: `at_ms` is then exact, so is the mean power."""

    def __init__(self) -> None:
        self.now_ms = T0_MS

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def apc_walk(power: int, energy: int) -> Records:
    return {
        f"{APC_POWER}.1": (INTEGER, power),
        f"{APC_ENERGY}.1": (INTEGER, energy),
        f"{APC_DEVICE_STATUS_START_TIME}.1": (OCTET_STRING, "11/20/2026 09:00:00"),
    }


def raritan_walk(power: int, power_digits: int, energy_wh: int) -> Records:
    return {
        f"{RARITAN_VALUE}.1.1.5": (GAUGE32, power),
        f"{RARITAN_VALUE}.1.1.8": (GAUGE32, energy_wh),
        f"{RARITAN_DIGITS}.1.1.5": (GAUGE32, power_digits),
        f"{RARITAN_DIGITS}.1.1.8": (GAUGE32, 0),
        f"{RARITAN_VALUE}.1.1.4": (GAUGE32, 2301),  # rmsVoltage, 1 digit: not read
        f"{RARITAN_DIGITS}.1.1.4": (GAUGE32, 1),
    }


def by_quantity(readings: list[Reading]) -> dict[Quantity, Reading]:
    return {r.quantity: r for r in readings}


def energy_rate(rates: CounterRates, readings: list[Reading]) -> Rate:
    return rates.update(by_quantity(readings)[Quantity.ENERGY_J])


@pytest.fixture
def apc_pdu(tmp_path: Path) -> Iterator[SnmpSim]:
    with snmpsim(tmp_path, apc_walk(523, 12345)) as sim:
        yield sim


@pytest.mark.slow
def test_apc_over_v2c_mean_power_from_the_energy_meter_and_a_reset_is_a_gap(
    apc_pdu: SnmpSim,
) -> None:
    clock = Clock()
    rates = CounterRates(MAX_RATE)
    target = apc_pdu.v2c()

    first = asyncio.run(read_apc(target, clock_ms=clock))
    assert {r.quantity: r.value for r in first} == {
        Quantity.POWER_W: 5230.0,
        Quantity.ENERGY_J: 1234.5 * 3.6e6,
    }
    assert all(r.at_ms == T0_MS for r in first)
    assert {r.source for r in first} == {f"snmp:127.0.0.1:{apc_pdu.port}/apc-rpdu2/1"}
    assert energy_rate(rates, first).outcome is Outcome.PRIMED

    # 10 minutes later the meter is up 1.0 kWh (10 tenths): 3.6 MJ / 600 s = 6 kW mean.
    apc_pdu.write(apc_walk(610, 12355))
    clock.advance(600)
    second = asyncio.run(read_apc(target, clock_ms=clock))
    assert by_quantity(second)[Quantity.POWER_W].value == 6100.0
    rate = energy_rate(rates, second)
    assert rate.outcome is Outcome.RATE
    assert rate.per_s == pytest.approx(6000.0)
    assert (rate.start_ms, rate.end_ms) == (T0_MS, T0_MS + 600_000)

    # Someone pressed "reset energy" on the PDU: the meter starts again from 0.3 kWh.
    apc_pdu.write(apc_walk(600, 3))
    clock.advance(60)
    reset = energy_rate(rates, asyncio.run(read_apc(target, clock_ms=clock)))
    assert reset.outcome is Outcome.RESET
    assert reset.per_s is None  # a gap, never negative energy

    # ... and counts from there: +0.2 kWh in 60 s = 12 kW.
    apc_pdu.write(apc_walk(1200, 5))
    clock.advance(60)
    after = energy_rate(rates, asyncio.run(read_apc(target, clock_ms=clock)))
    assert after.outcome is Outcome.RATE
    assert after.per_s == pytest.approx(12_000.0)


@pytest.mark.slow
def test_raritan_over_v3_authpriv_with_decimal_digits(tmp_path: Path) -> None:
    clock = Clock()
    rates = CounterRates(MAX_RATE)
    with snmpsim(tmp_path, raritan_walk(12345, 1, 5_000_000)) as sim:
        target = sim.v3_target()
        first = asyncio.run(read_raritan(target, 1, 1, clock_ms=clock))
        assert {r.quantity: r.value for r in first} == {
            Quantity.POWER_W: 1234.5,
            Quantity.ENERGY_J: 5_000_000 * 3600.0,
        }
        assert {r.source for r in first} == {f"snmp:127.0.0.1:{sim.port}/raritan-pdu2/1/inlet/1"}
        rates.update(by_quantity(first)[Quantity.ENERGY_J])

        # +500 Wh in 15 minutes: 1.8 MJ / 900 s = 2 kW. The PDU now shows 2 digits of power.
        sim.write(raritan_walk(200012, 2, 5_000_500))
        clock.advance(900)
        second = asyncio.run(read_raritan(target, 1, 1, clock_ms=clock))
        assert by_quantity(second)[Quantity.POWER_W].value == pytest.approx(2000.12)
        rate = energy_rate(rates, second)
        assert rate.outcome is Outcome.RATE
        assert rate.per_s == pytest.approx(2000.0)

        # The inlet's energy was reset from the PDU's web page.
        sim.write(raritan_walk(200000, 2, 12))
        clock.advance(60)
        assert energy_rate(rates, asyncio.run(read_raritan(target, clock_ms=clock))).outcome is (
            Outcome.RESET
        )


@pytest.mark.slow
def test_wrong_community_is_a_timeout_error_naming_the_host(apc_pdu: SnmpSim) -> None:
    target = apc_pdu.v2c("not-the-community", timeout_s=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(SnmpError, match="timeout") as caught:
        asyncio.run(read_apc(target))
    assert time.monotonic() - started < 10
    assert caught.value.host == f"127.0.0.1:{apc_pdu.port}"
    assert "not-the-community" not in str(caught.value)
    assert "2 tries of 0.3 s" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"auth_key": "wrong-auth-passphrase"}, "digest"),
        ({"user": "intruder"}, "Unknown USM user"),
    ],
)
def test_wrong_v3_credentials_are_an_auth_error(
    apc_pdu: SnmpSim, change: dict[str, str], says: str
) -> None:
    target = apc_pdu.v3_target(**change)
    with pytest.raises(SnmpAuthError, match=says) as caught:
        asyncio.run(read_apc(target))
    assert isinstance(caught.value, SnmpError)
    assert "passphrase" not in str(caught.value)


@pytest.mark.slow
def test_wrong_v3_priv_key_gets_no_answer(apc_pdu: SnmpSim) -> None:
    # The agent cannot decrypt the request: it drops it (or reports), either way an SnmpError.
    target = apc_pdu.v3_target(priv_key="wrong-priv-passphrase", timeout_s=0.5)
    with pytest.raises(SnmpError):
        asyncio.run(read_apc(target))


@pytest.mark.slow
def test_a_device_index_the_pdu_lacks_is_an_error_naming_the_oid(apc_pdu: SnmpSim) -> None:
    with pytest.raises(SnmpError, match="noSuchInstance") as caught:
        asyncio.run(read_apc(apc_pdu.v2c(), device_index=2))
    assert caught.value.oid == f"{APC_POWER}.2"


@pytest.mark.slow
def test_generic_mapping_skips_an_absent_instance_and_fails_on_a_string(
    apc_pdu: SnmpSim,
) -> None:
    mapped = asyncio.run(
        read_generic_mapped(
            apc_pdu.v2c(),
            [
                (f".{APC_POWER}.1", Quantity.POWER_W, 10.0),
                (f".{APC_POWER}.9", Quantity.POWER_W, 10.0),  # no device 9
            ],
        )
    )
    assert [(r.quantity, r.value) for r in mapped.readings] == [(Quantity.POWER_W, 5230.0)]
    assert mapped.readings[0].source == f"snmp:127.0.0.1:{apc_pdu.port}/oid/{APC_POWER}.1"
    assert [s.oid for s in mapped.skipped] == [f"{APC_POWER}.9"]

    with pytest.raises(SnmpError, match="wrong type OctetString") as caught:
        asyncio.run(
            read_generic(
                apc_pdu.v2c(), [OidMapping(f"{APC_DEVICE_STATUS_START_TIME}.1", Quantity.POWER_W)]
            )
        )
    assert caught.value.oid == f"{APC_DEVICE_STATUS_START_TIME}.1"


@pytest.mark.slow
def test_a_meter_counter_that_rises_by_itself_gives_its_mean_power(tmp_path: Path) -> None:
    """snmpsim's `numeric` module: a Counter64 of Wh rising 100 Wh/s (360 kW) in real time."""
    oid = "1.3.6.1.4.1.99999.1.1.0"
    walk: Records = {oid: (COUNTER64, "numeric:rate=100,initial=1000000")}
    rates = CounterRates({Quantity.ENERGY_J: 1e6})
    with snmpsim(tmp_path, walk) as sim:
        mapping = [OidMapping(oid, Quantity.ENERGY_J, 3600.0)]
        first = asyncio.run(read_generic(sim.v2c(), mapping))
        assert first[0].wrap_at == 2.0**64 * 3600
        assert rates.update(first[0]).outcome is Outcome.PRIMED
        end = time.monotonic() + 1.5
        while time.monotonic() < end:  # a real device counting: the wall clock is the point
            time.sleep(0.1)
        second = asyncio.run(read_generic(sim.v2c(), mapping))
        rate = rates.update(second[0])
    assert rate.outcome is Outcome.RATE
    assert rate.per_s == pytest.approx(360_000.0, rel=0.05)


@pytest.mark.slow
def test_nothing_listening_is_a_timeout_error() -> None:
    target = SnmpTarget("127.0.0.1", SnmpV2c("public"), port=free_udp_port(), timeout_s=0.2)
    with pytest.raises(SnmpError, match="timeout"):
        asyncio.run(read_apc(target))
