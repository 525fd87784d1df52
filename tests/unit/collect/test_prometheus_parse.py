"""Prometheus expositions -> Readings: node_exporter 1.5, Kepler 0.10, Scaphandre, ipmi_exporter.

The texts use the metric names and labels these exporters document (node_exporter's are as
Debian's 1.5.0 writes them over a fake sysfs); the expected Readings are worked out by hand in
the comments. Counters go through `CounterRates`, as the pipeline uses them.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.collect.counters import CounterRates, Outcome
from pipeline.collect.prometheus import (
    PrometheusDataError,
    readings_from_exposition,
    samples_from_query_answer,
)
from pipeline.collect.readings import Quantity, Reading

SRC = "prometheus:http://node-7:9100/metrics"
AT = 1_764_000_000_000
PATH = "/sys/class/powercap/intel-rapl"

NODE_EXPORTER_15 = f"""\
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 7
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{{cpu="0",mode="idle"}} 5000
node_cpu_seconds_total{{cpu="0",mode="iowait"}} 100
node_cpu_seconds_total{{cpu="0",mode="irq"}} 1
node_cpu_seconds_total{{cpu="0",mode="nice"}} 2
node_cpu_seconds_total{{cpu="0",mode="softirq"}} 3
node_cpu_seconds_total{{cpu="0",mode="steal"}} 0
node_cpu_seconds_total{{cpu="0",mode="system"}} 300
node_cpu_seconds_total{{cpu="0",mode="user"}} 600
node_cpu_seconds_total{{cpu="1",mode="idle"}} 5500
node_cpu_seconds_total{{cpu="1",mode="iowait"}} 50
node_cpu_seconds_total{{cpu="1",mode="irq"}} 0
node_cpu_seconds_total{{cpu="1",mode="nice"}} 0
node_cpu_seconds_total{{cpu="1",mode="softirq"}} 2
node_cpu_seconds_total{{cpu="1",mode="steal"}} 0
node_cpu_seconds_total{{cpu="1",mode="system"}} 200
node_cpu_seconds_total{{cpu="1",mode="user"}} 400
# HELP node_cpu_guest_seconds_total Seconds the CPUs spent in guests (VMs) for each mode.
# TYPE node_cpu_guest_seconds_total counter
node_cpu_guest_seconds_total{{cpu="0",mode="user"}} 50
# HELP node_hwmon_chip_names Annotation metric for human-readable chip names
# TYPE node_hwmon_chip_names gauge
node_hwmon_chip_names{{chip="platform_acpi000d_00",chip_name="power_meter"}} 1
node_hwmon_chip_names{{chip="pci0000:00_0000:00:02_0",chip_name="amdgpu"}} 1
# HELP node_hwmon_power_average_watt Hardware monitor for power usage in watts (average)
# TYPE node_hwmon_power_average_watt gauge
node_hwmon_power_average_watt{{chip="platform_acpi000d_00",sensor="power1"}} 245
node_hwmon_power_average_watt{{chip="pci0000:00_0000:00:02_0",sensor="power1"}} 30
# HELP node_hwmon_power_watt Hardware monitor for power usage in watts (input)
# TYPE node_hwmon_power_watt gauge
node_hwmon_power_watt{{chip="platform_acpi000d_00",sensor="power1"}} 250
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{{device="docker0"}} 1000
node_network_receive_bytes_total{{device="eth0"}} 123456
node_network_receive_bytes_total{{device="eth1"}} 1000000
node_network_receive_bytes_total{{device="lo"}} 5000
node_network_receive_bytes_total{{device="veth1a2b3c"}} 777
# HELP node_network_transmit_bytes_total Network device statistic transmit_bytes.
# TYPE node_network_transmit_bytes_total counter
node_network_transmit_bytes_total{{device="docker0"}} 2000
node_network_transmit_bytes_total{{device="eth0"}} 654321
node_network_transmit_bytes_total{{device="eth1"}} 2000000
node_network_transmit_bytes_total{{device="lo"}} 5000
node_network_transmit_bytes_total{{device="veth1a2b3c"}} 888
# HELP node_rapl_core_joules_total Current RAPL core value in joules
# TYPE node_rapl_core_joules_total counter
node_rapl_core_joules_total{{index="0",path="{PATH}:0:0"}} 50000.5
# HELP node_rapl_dram_joules_total Current RAPL dram value in joules
# TYPE node_rapl_dram_joules_total counter
node_rapl_dram_joules_total{{index="0",path="{PATH}:0:1"}} 3000.25
# HELP node_rapl_package_joules_total Current RAPL package value in joules
# TYPE node_rapl_package_joules_total counter
node_rapl_package_joules_total{{index="0",path="{PATH}:0"}} 100000.5
node_rapl_package_joules_total{{index="1",path="{PATH}:1"}} 200000
# HELP node_rapl_uncore_joules_total Current RAPL uncore value in joules
# TYPE node_rapl_uncore_joules_total counter
node_rapl_uncore_joules_total{{index="0",path="{PATH}:0:2"}} 700
"""


def by_source(readings: list[Reading]) -> dict[tuple[Quantity, str], Reading]:
    keyed = {(r.quantity, r.source.removeprefix(SRC)): r for r in readings}
    assert len(keyed) == len(readings), readings
    return keyed


def values(readings: list[Reading]) -> dict[tuple[Quantity, str], float]:
    return {key: r.value for key, r in by_source(readings).items()}


def test_node_exporter_15_rapl_per_counter_hwmon_meter_cpu_and_physical_nics() -> None:
    readings = readings_from_exposition(NODE_EXPORTER_15, source=SRC, at_ms=AT)
    assert values(readings) == {
        # one Reading per package and dram counter; core and uncore (inside package) never
        (Quantity.ENERGY_J, "#rapl:package:intel-rapl:0"): 100000.5,
        (Quantity.ENERGY_J, "#rapl:package:intel-rapl:1"): 200000.0,
        (Quantity.ENERGY_J, "#rapl:dram:intel-rapl:0:1"): 3000.25,
        # the ACPI power meter's average, not its input, not the GPU's 30 W
        (Quantity.POWER_W, "#hwmon_power_meter"): 245.0,
        # busy: user+nice+system+irq+softirq+steal = (600+2+300+1+3) + (400+200+2) = 1508
        (Quantity.CPU_BUSY_S, ""): 1508.0,
        # total adds idle and iowait: 1508 + 5000+100 + 5500+50 = 12158 (guest is inside user)
        (Quantity.CPU_TOTAL_S, ""): 12158.0,
        # eth0 + eth1; lo, docker0 and veth* are left out
        (Quantity.NET_RX_BYTES, ""): 1123456.0,
        (Quantity.NET_TX_BYTES, ""): 2654321.0,
    }
    assert all(r.at_ms == AT for r in readings)  # no sample timestamps: the receive time
    assert all(r.wrap_at is None for r in readings)  # node_exporter gives no max_energy_range


def test_rapl_wrap_is_given_per_powercap_path() -> None:
    wrap = {f"{PATH}:0": 262_143.32885, f"{PATH}:0:1": 65_712.999613}
    got = by_source(
        readings_from_exposition(NODE_EXPORTER_15, source=SRC, at_ms=AT, rapl_wrap_j=wrap)
    )
    assert got[(Quantity.ENERGY_J, "#rapl:package:intel-rapl:0")].wrap_at == 262_143.32885
    assert got[(Quantity.ENERGY_J, "#rapl:dram:intel-rapl:0:1")].wrap_at == 65_712.999613
    assert got[(Quantity.ENERGY_J, "#rapl:package:intel-rapl:1")].wrap_at is None


def test_the_zone_label_form_of_node_exporter_rapl() -> None:
    # --collector.rapl.enable-zone-label: one metric, the zone as a label
    text = f"""\
# TYPE node_rapl_joules_total counter
node_rapl_joules_total{{index="0",path="{PATH}:0",rapl_zone="package"}} 10
node_rapl_joules_total{{index="0",path="{PATH}:0:0",rapl_zone="core"}} 5
node_rapl_joules_total{{index="0",path="{PATH}:0:1",rapl_zone="dram"}} 3
node_rapl_joules_total{{index="1",path="{PATH}:1",rapl_zone="psys"}} 40
"""
    assert values(readings_from_exposition(text, source=SRC, at_ms=AT)) == {
        (Quantity.ENERGY_J, "#rapl:package:intel-rapl:0"): 10.0,
        (Quantity.ENERGY_J, "#rapl:dram:intel-rapl:0:1"): 3.0,
    }


KEPLER_010 = f"""\
# HELP kepler_node_cpu_joules_total Energy consumption of cpu at node level in joules
# TYPE kepler_node_cpu_joules_total counter
kepler_node_cpu_joules_total{{node_name="n7",path="{PATH}:0",zone="package"}} 12345.5
kepler_node_cpu_joules_total{{node_name="n7",path="{PATH}:0:0",zone="core"}} 5000
kepler_node_cpu_joules_total{{node_name="n7",path="{PATH}:0:1",zone="dram"}} 2000
kepler_node_cpu_joules_total{{node_name="n7",path="{PATH}:0:2",zone="uncore"}} 100
# HELP kepler_node_cpu_watts Power consumption of cpu at node level in watts
# TYPE kepler_node_cpu_watts gauge
kepler_node_cpu_watts{{node_name="n7",path="{PATH}:0",zone="package"}} 85.5
kepler_node_cpu_watts{{node_name="n7",path="{PATH}:0:0",zone="core"}} 40
kepler_node_cpu_watts{{node_name="n7",path="{PATH}:0:1",zone="dram"}} 10.25
# HELP kepler_node_cpu_active_joules_total Energy consumption of cpu in active state
# TYPE kepler_node_cpu_active_joules_total counter
kepler_node_cpu_active_joules_total{{node_name="n7",path="{PATH}:0",zone="package"}} 4000
"""
KEPLER_PLATFORM = """\
# HELP kepler_platform_watts Current platform power in watts from BMC
# TYPE kepler_platform_watts gauge
kepler_platform_watts{source="redfish",node_name="n7",bmc_id="bmc-1",chassis_id="System.Embedded.1",power_control_id="PC1",power_control_name="Server Power Control"} 450.5
kepler_platform_watts{source="redfish",node_name="n7",bmc_id="bmc-1",chassis_id="System.Embedded.1",power_control_id="PC2",power_control_name="CPU Sub-system Power"} 85.2
"""  # noqa: E501


def test_kepler_010_energy_per_zone_and_cpu_watts_of_package_plus_dram() -> None:
    assert values(readings_from_exposition(KEPLER_010, source=SRC, at_ms=AT)) == {
        (Quantity.ENERGY_J, "#kepler:package:intel-rapl:0"): 12345.5,
        (Quantity.ENERGY_J, "#kepler:dram:intel-rapl:0:1"): 2000.0,
        # 85.5 + 10.25; core is inside package
        (Quantity.POWER_W, "#kepler_node_cpu"): 95.75,
    }


def test_kepler_platform_power_is_the_largest_power_control_not_their_sum() -> None:
    got = values(readings_from_exposition(KEPLER_010 + KEPLER_PLATFORM, source=SRC, at_ms=AT))
    assert got[(Quantity.POWER_W, "#kepler_platform")] == 450.5
    assert (Quantity.POWER_W, "#kepler_node_cpu") not in got


def test_node_exporter_rapl_wins_over_kepler_energy() -> None:
    got = values(readings_from_exposition(NODE_EXPORTER_15 + KEPLER_010, source=SRC, at_ms=AT))
    assert not [key for key in got if "#kepler:" in key[1]]
    assert (Quantity.ENERGY_J, "#rapl:package:intel-rapl:0") in got


SCAPHANDRE = """\
# HELP scaph_host_power_microwatts Power measurement on the whole host, in microwatts
# TYPE scaph_host_power_microwatts gauge
scaph_host_power_microwatts 35627000
# HELP scaph_host_energy_microjoules Energy measurement for the whole host, in microjoules
# TYPE scaph_host_energy_microjoules counter
scaph_host_energy_microjoules 9876543210
# HELP scaph_socket_power_microwatts Power measurement relative to a CPU socket, in microwatts
# TYPE scaph_socket_power_microwatts gauge
scaph_socket_power_microwatts{socket_id="0"} 30000000
"""


def test_scaphandre_host_power_in_watts_and_above_kepler_cpu() -> None:
    assert values(readings_from_exposition(SCAPHANDRE, source=SRC, at_ms=AT)) == {
        (Quantity.POWER_W, "#scaphandre_host"): 35.627,
    }
    got = values(readings_from_exposition(SCAPHANDRE + KEPLER_010, source=SRC, at_ms=AT))
    assert got[(Quantity.POWER_W, "#scaphandre_host")] == 35.627


def ipmi(dcmi: float | None, sensors: dict[str, str]) -> str:
    lines = []
    if dcmi is not None:
        lines += [
            "# HELP ipmi_dcmi_power_consumption_watts Current power consumption in Watts.",
            "# TYPE ipmi_dcmi_power_consumption_watts gauge",
            f"ipmi_dcmi_power_consumption_watts {dcmi}",
        ]
    lines += ["# HELP ipmi_power_watts Power reading in Watts.", "# TYPE ipmi_power_watts gauge"]
    for i, (name, value) in enumerate(sensors.items()):
        lines.append(f'ipmi_power_watts{{id="{80 + i}",name="{name}"}} {value}')
    lines += ['ipmi_up{collector="dcmi"} 1', 'ipmi_up{collector="ipmi"} 1']
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # DCMI is the BMC's PSU input: it wins over everything, Kepler's platform too
        (ipmi(312, {"Pwr Consumption": "308"}) + KEPLER_PLATFORM, ("#ipmi_dcmi", 312.0)),
        # DCMI 0 W: no measurement (ipmi_exporter < 1.7); the total sensor then
        (ipmi(0, {"Pwr Consumption": "308", "PS1 Input Power": "150"}), ("#ipmi_sensor", 308.0)),
        # no total sensor: the PSUs' inputs summed; a NaN one has no reading
        (
            ipmi(
                None,
                {"PS1 Input Power": "150", "PS2 Input Power": "160.5", "PS3 Input Power": "NaN"},
            ),
            ("#ipmi_sensor", 310.5),
        ),
        # a sensor that is neither: ambiguous, not used; the next source in line is
        (ipmi(None, {"CPU Power": "90"}) + SCAPHANDRE, ("#scaphandre_host", 35.627)),
        # platform power (hwmon's ACPI meter) wins over Kepler's
        (NODE_EXPORTER_15 + KEPLER_PLATFORM, ("#hwmon_power_meter", 245.0)),
    ],
    ids=["dcmi", "dcmi-zero", "psu-inputs", "ambiguous-sensors", "hwmon-over-kepler"],
)
def test_power_precedence_wall_first(text: str, expected: tuple[str, float]) -> None:
    power = [
        r
        for r in readings_from_exposition(text, source=SRC, at_ms=AT)
        if r.quantity == Quantity.POWER_W
    ]
    assert [(r.source.removeprefix(SRC), r.value) for r in power] == [expected]


def test_no_known_metric_gives_no_readings() -> None:
    text = "# TYPE go_goroutines gauge\ngo_goroutines NaN\nprocess_cpu_seconds_total -1\n"
    assert readings_from_exposition(text, source=SRC, at_ms=AT) == []
    assert readings_from_exposition("", source=SRC, at_ms=AT) == []
    assert (
        readings_from_exposition(ipmi(None, {"PS1 Input Power": "NaN"}), source=SRC, at_ms=AT) == []
    )


def test_sample_timestamps_win_over_the_receive_time() -> None:
    text = f"""\
node_rapl_package_joules_total{{index="0",path="{PATH}:0"}} 10 1764000005000
node_cpu_seconds_total{{cpu="0",mode="idle"}} 5 1764000001000
node_cpu_seconds_total{{cpu="0",mode="user"}} 1 1764000002000
node_network_receive_bytes_total{{device="eth0"}} 9
"""
    got = by_source(readings_from_exposition(text, source=SRC, at_ms=AT))
    assert got[(Quantity.ENERGY_J, "#rapl:package:intel-rapl:0")].at_ms == 1_764_000_005_000
    assert got[(Quantity.CPU_TOTAL_S, "")].at_ms == 1_764_000_002_000  # the newest term
    assert got[(Quantity.NET_RX_BYTES, "")].at_ms == AT


def test_openmetrics_with_timestamps_in_seconds() -> None:
    text = f"""\
# TYPE node_rapl_package_joules counter
node_rapl_package_joules_total{{index="0",path="{PATH}:0"}} 10.5 1764000005.250
# TYPE scaph_host_power_microwatts gauge
scaph_host_power_microwatts 2000000
# EOF
"""
    got = by_source(readings_from_exposition(text, source=SRC, at_ms=AT))
    assert got[(Quantity.ENERGY_J, "#rapl:package:intel-rapl:0")].at_ms == 1_764_000_005_250
    assert got[(Quantity.ENERGY_J, "#rapl:package:intel-rapl:0")].value == 10.5
    assert got[(Quantity.POWER_W, "#scaphandre_host")].value == 2.0


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('node_cpu_seconds_total{cpu="0",mode="idle} 3\n', "not a Prometheus text exposition"),
        ("# TYPE x foo\nx 1\n", "not a Prometheus text exposition"),
        ("\x00\x01\x02 garbage\n", "not a Prometheus text exposition"),
        ('node_cpu_seconds_total{cpu="0",cpu="1",mode="idle"} 1\n', "not a Prometheus"),
        (f'node_rapl_package_joules_total{{path="{PATH}:0"}} NaN\n', "nan is not a valid counter"),
        ('node_network_receive_bytes_total{device="eth0"} +Inf\n', "inf"),
        ('node_cpu_seconds_total{cpu="0",mode="user"} -5\n', "-5.0 is not a valid counter"),
        ("ipmi_dcmi_power_consumption_watts +Inf\n", "not a valid gauge"),
        ("scaph_host_power_microwatts -1\n", "not a valid gauge"),
        (
            'node_cpu_seconds_total{cpu="0",mode="user"} 1\n'
            'node_cpu_seconds_total{mode="user",cpu="0"} 2\n',
            "given twice",
        ),
        ('x{a="1"} one\n# EOF\n', "not an OpenMetrics exposition"),
        ("x_total 1\n# TYPE x counter\n# EOF\n", "not an OpenMetrics exposition"),
    ],
)
def test_hostile_text_raises_a_data_error_naming_the_source(text: str, why: str) -> None:
    with pytest.raises(PrometheusDataError) as info:
        readings_from_exposition(text, source=SRC, at_ms=AT)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(SRC + ": ")
    assert why in str(info.value)


def readings_or_data_error(text: str) -> None:
    try:
        readings = readings_from_exposition(text, source=SRC, at_ms=AT)
    except PrometheusDataError:
        return
    assert all(isinstance(r, Reading) for r in readings)


@given(st.text(max_size=300))
def test_any_text_gives_readings_or_a_data_error(text: str) -> None:
    readings_or_data_error(text)


@given(
    st.lists(
        st.sampled_from(
            [
                'node_cpu_seconds_total{cpu="0",mode="idle"} ',
                'node_rapl_package_joules_total{path="p"} ',
                "ipmi_dcmi_power_consumption_watts ",
                "# TYPE ",
                "# EOF",
                '{a="',
                "\n",
                "1",
                "NaN",
                "-",
                "e",
                " ",
            ]
        ),
        max_size=30,
    )
)
def test_near_miss_expositions_never_crash(parts: list[str]) -> None:
    readings_or_data_error("".join(parts))


# ---------------------------------------------------------------------------- counters


def rapl_text(package_j: float, core_j: float, at_ms: int) -> str:
    return (
        f'node_rapl_package_joules_total{{index="0",path="{PATH}:0"}} {package_j} {at_ms}\n'
        f'node_rapl_core_joules_total{{index="0",path="{PATH}:0:0"}} {core_j} {at_ms}\n'
    )


WRAP_J = 262_143.32885  # a Xeon's intel-rapl:0 max_energy_range_uj / 1e6


def energy_rates(
    texts: list[str], wrap: dict[str, float] | None
) -> list[tuple[Outcome, float | None]]:
    rates = CounterRates({Quantity.ENERGY_J: 5_000.0})
    got = []
    for text in texts:
        for r in readings_from_exposition(text, source=SRC, at_ms=0, rapl_wrap_j=wrap):
            assert r.quantity is Quantity.ENERGY_J
            rate = rates.update(r)
            got.append((rate.outcome, rate.per_s))
    return got


def test_a_rapl_counter_advancing_then_wrapping_gives_the_mean_power() -> None:
    texts = [
        rapl_text(WRAP_J - 3_000, 10, 0),
        # +2,000 J in 10 s: 200 W (core moving too: never added)
        rapl_text(WRAP_J - 1_000, 20, 10_000),
        # 1,000 J to the top, 1,500 J after the wrap: 2,500 J in 10 s = 250 W
        rapl_text(1_500, 30, 20_000),
    ]
    got = energy_rates(texts, {f"{PATH}:0": WRAP_J})
    assert got[0] == (Outcome.PRIMED, None)
    assert got[1] == (Outcome.RATE, pytest.approx(200.0))
    assert got[2] == (Outcome.WRAPPED, pytest.approx(250.0))


def test_a_wrap_without_a_stated_modulus_or_a_reset_is_a_gap_never_negative() -> None:
    texts = [
        rapl_text(WRAP_J - 1_000, 0, 0),
        rapl_text(1_500, 0, 10_000),
        rapl_text(3_500, 0, 20_000),
    ]
    # node_exporter alone does not say where it wraps: the wrap is a reset, one gap, then rates
    assert energy_rates(texts, None) == [
        (Outcome.PRIMED, None),
        (Outcome.RESET, None),
        (Outcome.RATE, pytest.approx(200.0)),
    ]
    # a reboot (energy_uj back near 0) with a stated modulus looks like a wrap: 212,243 J in
    # 10 s would be 21 kW, above what a node draws (5 kW here), so it is a gap too
    texts = [rapl_text(50_000, 0, 0), rapl_text(100, 0, 10_000)]
    assert energy_rates(texts, {f"{PATH}:0": WRAP_J})[1] == (Outcome.IMPLAUSIBLE, None)


def test_two_packages_wrap_on_their_own_and_their_rates_sum() -> None:
    def text(p0: float, p1: float, at_ms: int) -> str:
        return (
            f'node_rapl_package_joules_total{{index="0",path="{PATH}:0"}} {p0} {at_ms}\n'
            f'node_rapl_package_joules_total{{index="1",path="{PATH}:1"}} {p1} {at_ms}\n'
        )

    wrap = {f"{PATH}:0": WRAP_J, f"{PATH}:1": WRAP_J}
    rates = CounterRates({Quantity.ENERGY_J: 5_000.0})
    for t in (text(WRAP_J - 500, 1_000, 0), text(500, 2_500, 10_000)):
        per_s = [
            rates.update(r).per_s
            for r in readings_from_exposition(t, source=SRC, at_ms=0, rapl_wrap_j=wrap)
        ]
    # package 0 wrapped: 1,000 J / 10 s = 100 W; package 1: 1,500 J / 10 s = 150 W
    assert per_s == [pytest.approx(100.0), pytest.approx(150.0)]
    assert sum(p for p in per_s if p is not None) == pytest.approx(250.0)


# ---------------------------------------------------------------------------- server answers


def answer(result: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ).encode()


def test_a_server_answer_gives_each_series_newest_sample_with_its_time() -> None:
    rapl = {"__name__": "node_rapl_package_joules_total", "index": "0", "path": f"{PATH}:0"}
    target = {"instance": "n7:9100", "job": "node"}
    scaph = {"__name__": "scaph_host_power_microwatts", **target}
    body = answer(
        [
            {
                "metric": {**rapl, **target},
                "values": [[1764000001.5, "10"], [1764000002.5, "12.5"]],
            },
            {"metric": scaph, "values": [[1764000002.0, "NaN"]]},
        ]
    )
    rapl_sample, scaph_sample = samples_from_query_answer(body, SRC)
    assert (rapl_sample.name, rapl_sample.value, rapl_sample.at_ms) == (
        "node_rapl_package_joules_total",
        12.5,
        1_764_000_002_500,
    )
    assert rapl_sample.labels == {"index": "0", "path": f"{PATH}:0", **target}
    assert scaph_sample.name == "scaph_host_power_microwatts"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>proxy error</html>",
        b'{"status": "error", "errorType": "bad_data", "error": "parse error"}',
        b'{"status": "success", "data": {"resultType": "vector", "result": []}}',
        answer([{"metric": {}, "values": [[1, "2"]]}]),
        answer([{"metric": {"__name__": "x"}, "values": [[1]]}]),
        answer([{"metric": {"__name__": "x"}, "values": [["soon", "2"]]}]),
        b"[]",
    ],
)
def test_a_hostile_server_answer_raises_a_data_error(body: bytes) -> None:
    with pytest.raises(PrometheusDataError, match="not a Prometheus API matrix answer"):
        samples_from_query_answer(body, SRC)
