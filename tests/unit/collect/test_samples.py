"""One poll's readings -> a NodeSample: per-quantity preference, counters to rates, gaps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.collect.counters import CounterRates
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.samples import NodeAssembler, SampleError
from pipeline.fleet import load_fleet

BMC = "redfish:https://bmc-1/redfish/v1/Chassis/1U"
EXPORTER = "prometheus:http://node-1:9100/metrics"
T0 = 1_772_452_800_000  # 2026-03-02T12:00:00Z


def assembler() -> NodeAssembler:
    node = load_fleet().nodes[0]
    rates = CounterRates({Quantity.ENERGY_J: 10_000.0, Quantity.NET_RX_BYTES: 1e11})
    return NodeAssembler(node, rates, poll_interval_s=15.0)


def bmc(at_ms: int, watts: float) -> list[Reading]:
    return [
        Reading(Quantity.POWER_W, watts, at_ms, BMC),
        Reading(Quantity.INLET_TEMP_C, 23.5, at_ms, BMC),
        Reading(Quantity.OUTLET_TEMP_C, 35.0, at_ms, BMC),
    ]


def exporter(
    at_ms: int, busy: float, total: float, rx: float, energy: tuple[float, ...] = ()
) -> list[Reading]:
    out = [
        Reading(Quantity.CPU_BUSY_S, busy, at_ms, EXPORTER),
        Reading(Quantity.CPU_TOTAL_S, total, at_ms, EXPORTER),
        Reading(Quantity.NET_RX_BYTES, rx, at_ms, EXPORTER),
    ]
    out += [
        Reading(Quantity.ENERGY_J, joules, at_ms, f"{EXPORTER}#package-{i}", wrap_at=262_143.0)
        for i, joules in enumerate(energy)
    ]
    return out


def test_power_and_temperatures_from_the_bmc_utilisation_and_bytes_from_the_exporter() -> None:
    a = assembler()
    first = a.sample([bmc(T0, 210.0), exporter(T0, 100.0, 800.0, 5_000.0)], T0)
    assert first is not None
    assert first.observed_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert (first.power_w, first.interval_s, first.inlet_temp_c, first.outlet_temp_c) == (
        210.0,
        15.0,
        23.5,
        35.0,
    )
    assert (first.cpu_util, first.net_rx_bytes, first.net_tx_bytes) == (None, None, None)  # primed
    t1 = T0 + 15_000
    # 8 CPUs over 15 s = 120 CPU-s, 30 of them busy: 25 %; 1.5 MB received
    second = a.sample([bmc(t1, 240.0), exporter(t1, 130.0, 920.0, 1_505_000.0)], t1)
    assert second is not None
    assert (second.power_w, second.interval_s) == (240.0, 15.0)
    assert second.cpu_util == pytest.approx(0.25)
    assert second.net_rx_bytes == 1_500_000 and second.net_tx_bytes is None


def test_power_from_energy_counters_needs_a_rate_from_every_package() -> None:
    a = assembler()
    assert a.sample([exporter(T0, 0, 1, 0, energy=(1_000.0, 2_000.0))], T0) is None  # primed
    t1 = T0 + 10_000
    # package 0: 1,200 J, package 1: 800 J over 10 s = 200 W
    s1 = a.sample([exporter(t1, 0, 1, 0, energy=(2_200.0, 2_800.0))], t1)
    assert s1 is not None and s1.power_w == pytest.approx(200.0)
    t2 = t1 + 10_000
    # package 1 wrapped (262,143 J modulus): 262,143 - 262,000 + ... still a rate; package 0 reset
    reset = a.sample([exporter(t2, 0, 1, 0, energy=(5.0, 3_000.0))], t2)
    assert reset is None  # a reset package: the interval is a gap, not a partial sum


def test_a_failed_preferred_source_falls_back_to_the_next_one() -> None:
    a = assembler()
    a.sample([bmc(T0, 200.0), exporter(T0, 0, 1, 0, energy=(1_000.0,))], T0)
    t1 = T0 + 10_000
    fallback = a.sample([[], exporter(t1, 0, 1, 0, energy=(2_500.0,))], t1)  # the BMC timed out
    assert fallback is not None and fallback.power_w == pytest.approx(150.0)
    assert fallback.inlet_temp_c is None  # only the BMC reports temperatures
    t2 = t1 + 10_000
    assert a.sample([[], []], t2) is None  # nothing answered: a gap, nothing invented


def test_the_interval_is_the_time_since_the_previous_poll() -> None:
    a = assembler()
    a.sample([bmc(T0, 200.0)], T0)
    late = a.sample([bmc(T0 + 40_000, 200.0)], T0 + 40_000)  # two polls were missed
    assert late is not None and late.interval_s == 40.0


def test_a_value_outside_the_contract_is_an_error_to_dead_letter() -> None:
    with pytest.raises(SampleError, match="power_w"):
        assembler().sample([bmc(T0, 5e6)], T0)  # 5 MW on one node


def test_a_site_sample_sums_each_role_and_needs_every_meter() -> None:
    from pipeline.collect.samples import FacilityAssembler

    site = FacilityAssembler(
        "bog1",
        ["facility", "it", "it"],
        CounterRates({Quantity.ENERGY_J: 1e8}),
        15.0,
        renewable_metered=False,
    )
    meter = "snmp:10.0.0.5:161/apc/1"

    def pdu(i: int, watts: float, at: int) -> list[Reading]:
        return [Reading(Quantity.POWER_W, watts, at, f"redfish:https://pdu-{i}")]

    # the facility meter counts energy (tenths of kWh as J); the two rack PDUs report power
    assert (
        site.sample(
            [[Reading(Quantity.ENERGY_J, 0.0, T0, meter)], pdu(1, 3000, T0), pdu(2, 2000, T0)], T0
        )
        is None
    )
    t1 = T0 + 60_000
    # 0.1 kWh in 60 s = 6,000 W facility; IT 3,100 + 2,000 W
    got = site.sample(
        [[Reading(Quantity.ENERGY_J, 360_000.0, t1, meter)], pdu(1, 3100, t1), pdu(2, 2000, t1)], t1
    )
    assert got is not None
    assert (got.facility_power_w, got.it_power_w, got.onsite_renewable_w) == (
        pytest.approx(6000.0),
        5100.0,
        0.0,
    )
    assert got.interval_s == 60.0
    t2 = t1 + 60_000
    missing = site.sample(
        [[Reading(Quantity.ENERGY_J, 720_000.0, t2, meter)], pdu(1, 3100, t2), []], t2
    )
    assert missing is None  # one rack PDU did not answer: the IT load is unknown, a gap
