"""Redfish mapping over DMTF's own mockups as they are: expected values read off the files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.redfish import (
    BasicAuth,
    ChassisResources,
    RedfishClient,
    RedfishError,
    SessionAuth,
    map_chassis,
    map_pdu_metrics,
    member_ids,
    odata_id,
)
from pipeline.errors import ConfigError

MOCKUPS = Path("/work/shared/fixtures/redfish")
ONE_U = "/redfish/v1/Chassis/1U"
SOURCE = "redfish:https://bmc-7/redfish/v1/Chassis/1U"


def load(mockup: str, path: str) -> dict[str, Any]:
    rel = path.removeprefix("/redfish/v1/")
    doc: dict[str, Any] = json.loads((MOCKUPS / mockup / rel / "index.json").read_text())
    return doc


def rack(path: str) -> dict[str, Any]:
    return load("public-rackmount1", f"{ONE_U}/{path}")


def full(**changes: Any) -> ChassisResources:
    """Every power/thermal resource of the 1U mockup (Bay2 is Absent: no Metrics)."""
    base: dict[str, Any] = {
        "environment": rack("EnvironmentMetrics"),
        "psu_metrics": {"Bay1": rack("PowerSubsystem/PowerSupplies/Bay1/Metrics")},
        "power": rack("Power"),
        "thermal_metrics": rack("ThermalSubsystem/ThermalMetrics"),
        "thermal": rack("Thermal"),
    }
    base.update(changes)
    return ChassisResources(**base)


def values(readings: list[Reading]) -> dict[Quantity, float]:
    return {r.quantity: r.value for r in readings}


def test_rackmount1_as_published() -> None:
    mapped = map_chassis(full(), SOURCE, 1_000)
    # EnvironmentMetrics PowerWatts 374; Bay1 Metrics EnergykWh 325675 (the chassis has none);
    # ThermalMetrics summary Intake 24.8, Exhaust 40.5.
    assert values(mapped.readings) == {
        Quantity.POWER_W: 374.0,
        Quantity.ENERGY_J: 325675 * 3.6e6,
        Quantity.INLET_TEMP_C: 24.8,
        Quantity.OUTLET_TEMP_C: 40.5,
    }
    assert mapped.chosen[Quantity.POWER_W] == "EnvironmentMetrics.PowerWatts"
    assert mapped.chosen[Quantity.INLET_TEMP_C] == "ThermalMetrics.TemperatureSummaryCelsius.Intake"
    assert mapped.skipped == []
    by_q = {r.quantity: r for r in mapped.readings}
    assert by_q[Quantity.POWER_W].source == SOURCE
    assert by_q[Quantity.ENERGY_J].source == SOURCE + "#psu=Bay1"
    assert by_q[Quantity.ENERGY_J].is_counter
    assert all(r.at_ms == 1_000 for r in mapped.readings)


def test_pdu_metrics_as_published() -> None:
    metrics = load("public-pdu", "/redfish/v1/PowerEquipment/RackPDUs/1/Metrics")
    mapped = map_pdu_metrics(metrics, "redfish:https://pdu/redfish/v1/PowerEquipment/RackPDUs/1", 7)
    # PowerWatts 6438 W, EnergykWh 56438; TemperatureCelsius (cabinet, 31) is no inlet.
    assert values(mapped.readings) == {Quantity.POWER_W: 6438.0, Quantity.ENERGY_J: 56438 * 3.6e6}
    assert mapped.skipped == []


def test_chassis_energy_beats_psu_energy() -> None:
    env = rack("EnvironmentMetrics")
    env["EnergykWh"] = {"Reading": 12.5, "DataSourceUri": f"{ONE_U}/Sensors/TotalEnergy"}
    mapped = map_chassis(full(environment=env), SOURCE, 1)
    energy = next(r for r in mapped.readings if r.quantity is Quantity.ENERGY_J)
    assert energy.value == 12.5 * 3.6e6
    assert energy.source == SOURCE
    assert mapped.chosen[Quantity.ENERGY_J] == "EnvironmentMetrics.EnergykWh"


def test_psu_input_power_when_no_environment_metrics() -> None:
    mapped = map_chassis(full(environment=None), SOURCE, 1)
    # Bay1 InputPowerWatts 937.4 (its OutputPowerWatts is the same in the mockup, but input
    # is what is read); Bay2 is Absent and has no Metrics.
    assert values(mapped.readings)[Quantity.POWER_W] == 937.4
    assert mapped.chosen[Quantity.POWER_W].startswith("sum of PowerSupplies/*/Metrics.Input")


def test_psu_input_power_is_summed_and_output_is_ignored() -> None:
    bay2 = rack("PowerSubsystem/PowerSupplies/Bay1/Metrics")
    bay2["InputPowerWatts"]["Reading"] = 100.0
    bay2["OutputPowerWatts"]["Reading"] = 90.0
    psus = {"Bay1": rack("PowerSubsystem/PowerSupplies/Bay1/Metrics"), "Bay2": bay2}
    mapped = map_chassis(full(environment=None, psu_metrics=psus), SOURCE, 1)
    assert values(mapped.readings)[Quantity.POWER_W] == pytest.approx(1037.4)
    energy = next(r for r in mapped.readings if r.quantity is Quantity.ENERGY_J)
    assert energy.source == SOURCE + "#psu=Bay1+Bay2"


def test_incomplete_psu_sum_falls_back_to_legacy_power() -> None:
    bay2 = rack("PowerSubsystem/PowerSupplies/Bay1/Metrics")
    bay2["InputPowerWatts"]["Reading"] = None
    psus = {"Bay1": rack("PowerSubsystem/PowerSupplies/Bay1/Metrics"), "Bay2": bay2}
    mapped = map_chassis(full(environment=None, psu_metrics=psus), SOURCE, 1)
    # Power.PowerControl[0].PowerConsumedWatts 344
    assert values(mapped.readings)[Quantity.POWER_W] == 344.0
    assert mapped.chosen[Quantity.POWER_W] == "Power.PowerControl[0].PowerConsumedWatts"
    reasons = {s.where: s.reason for s in mapped.skipped}
    assert reasons["PowerSupplies/Bay2/Metrics.InputPowerWatts.Reading"] == "null: no reading"


def test_legacy_power_average_when_no_consumed_watts() -> None:
    power = rack("Power")
    del power["PowerControl"][0]["PowerConsumedWatts"]
    mapped = map_chassis(full(environment=None, psu_metrics={}, power=power), SOURCE, 1)
    # PowerMetrics.AverageConsumedWatts 319 over IntervalInMin 30
    assert values(mapped.readings)[Quantity.POWER_W] == 319.0
    assert "IntervalInMin=30" in mapped.chosen[Quantity.POWER_W]


def test_null_power_is_no_reading_not_zero() -> None:
    env = rack("EnvironmentMetrics")
    env["PowerWatts"]["Reading"] = None
    mapped = map_chassis(ChassisResources(environment=env), SOURCE, 1)
    assert Quantity.POWER_W not in values(mapped.readings)
    assert [(s.where, s.reason) for s in mapped.skipped] == [
        ("EnvironmentMetrics.PowerWatts.Reading", "null: no reading")
    ]
    # ...and with PSUs it falls through to them
    mapped = map_chassis(full(environment=env), SOURCE, 1)
    assert values(mapped.readings)[Quantity.POWER_W] == 937.4


def test_temperatures_from_readings_array_by_device_name() -> None:
    thermal = rack("ThermalSubsystem/ThermalMetrics")
    del thermal["TemperatureSummaryCelsius"]
    mapped = map_chassis(full(thermal_metrics=thermal), SOURCE, 1)
    assert values(mapped.readings)[Quantity.INLET_TEMP_C] == 24.8
    assert values(mapped.readings)[Quantity.OUTLET_TEMP_C] == 40.5
    assert mapped.chosen[Quantity.INLET_TEMP_C] == (
        "ThermalMetrics.TemperatureReadingsCelsius[0].Reading"
    )


def test_physical_context_beats_a_name() -> None:
    thermal = {
        "TemperatureReadingsCelsius": [
            {"Reading": 30.0, "DeviceName": "Inlet of PSU 1"},
            {"Reading": 21.0, "DeviceName": "Front panel", "PhysicalContext": "Intake"},
        ]
    }
    mapped = map_chassis(ChassisResources(thermal_metrics=thermal), SOURCE, 1)
    assert values(mapped.readings) == {Quantity.INLET_TEMP_C: 21.0}


def test_legacy_thermal_when_no_thermal_metrics() -> None:
    mapped = map_chassis(full(thermal_metrics=None), SOURCE, 1)
    # Thermal.Temperatures: "Chassis Intake Temp" (PhysicalContext Intake) 25; the mockup has
    # no exhaust sensor there, so no outlet temperature (CPU temps are not outlets).
    got = values(mapped.readings)
    assert got[Quantity.INLET_TEMP_C] == 25.0
    assert Quantity.OUTLET_TEMP_C not in got
    assert mapped.chosen[Quantity.INLET_TEMP_C] == "Thermal.Temperatures[2].ReadingCelsius"


def test_nothing_at_all_gives_nothing() -> None:
    mapped = map_chassis(ChassisResources(), SOURCE, 1)
    assert mapped.readings == [] and mapped.skipped == []


def _env(reading: Any) -> dict[str, Any]:
    return {"PowerWatts": {"Reading": reading}}


HOSTILE: list[tuple[str, ChassisResources, str]] = [
    ("string reading", ChassisResources(environment=_env("374")), "not a number: str"),
    ("bool reading", ChassisResources(environment=_env(True)), "not a number: bool"),
    ("infinite", ChassisResources(environment=_env(float("inf"))), "outside"),
    ("nan", ChassisResources(environment=_env(float("nan"))), "outside"),
    ("huge int", ChassisResources(environment=_env(10**400)), "number too large"),
    ("huge float", ChassisResources(environment=_env(1e300)), "outside"),
    ("negative", ChassisResources(environment=_env(-5)), "outside"),
    ("excerpt a string", ChassisResources(environment={"PowerWatts": "374 W"}), "not an object"),
    ("excerpt no Reading", ChassisResources(environment={"PowerWatts": {}}), "no Reading"),
    ("list reading", ChassisResources(environment=_env([374])), "not a number: list"),
    ("PowerControl a dict", ChassisResources(power={"PowerControl": {"0": 1}}), "not a list"),
    ("PowerControl junk", ChassisResources(power={"PowerControl": [1, "x"]}), "not an object"),
    (
        "PowerConsumedWatts a string",
        ChassisResources(power={"PowerControl": [{"PowerConsumedWatts": "344"}]}),
        "not a number: str",
    ),
    (
        "temperatures not a list",
        ChassisResources(thermal={"Temperatures": {"a": 1}}),
        "not a list",
    ),
    (
        "temperature 5000",
        ChassisResources(
            thermal={"Temperatures": [{"PhysicalContext": "Intake", "ReadingCelsius": 5e3}]}
        ),
        "outside",
    ),
    (
        "summary not an object",
        ChassisResources(thermal_metrics={"TemperatureSummaryCelsius": {"Intake": 24}}),
        "not an object",
    ),
    (
        "psu metrics a list",
        ChassisResources(psu_metrics={"Bay1": [1, 2]}),
        "sum over PSUs not used",
    ),
]


@pytest.mark.parametrize(
    ("resources", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_values_are_skipped_with_a_reason(resources: ChassisResources, reason: str) -> None:
    mapped = map_chassis(resources, SOURCE, 1)
    assert mapped.readings == []
    assert any(reason in s.reason for s in mapped.skipped), mapped.skipped


@pytest.mark.parametrize("resource", [None, 42, "x", [], {"thing": object()}])
def test_hostile_resources_never_crash(resource: Any) -> None:
    mapped = map_chassis(ChassisResources(resource, {}, resource, resource, resource), SOURCE, 1)
    assert mapped.readings == []
    pdu = map_pdu_metrics(resource, SOURCE, 1)
    assert pdu.readings == []


def test_hostile_pdu_metrics() -> None:
    metrics = copy.deepcopy(load("public-pdu", "/redfish/v1/PowerEquipment/RackPDUs/1/Metrics"))
    metrics["PowerWatts"]["Reading"] = "6438"
    metrics["EnergykWh"]["Reading"] = None
    mapped = map_pdu_metrics(metrics, SOURCE, 1)
    assert mapped.readings == []
    assert {s.reason for s in mapped.skipped} == {"not a number: str", "null: no reading"}
    assert map_pdu_metrics([], SOURCE, 1).skipped[0].reason == "not an object: list"


def test_links_and_members_of_the_mockup_and_of_garbage() -> None:
    root = load("public-pdu", "/redfish/v1/")
    assert odata_id(root, "PowerEquipment") == "/redfish/v1/PowerEquipment"
    assert odata_id(root, "Nope") is None
    assert member_ids(load("public-rackmount1", "/redfish/v1/Chassis")) == [ONE_U]
    assert member_ids({"Members": [{"@odata.id": "/a"}, 3, {"@odata.id": 4}, {}]}) == ["/a"]
    assert member_ids({"Members": "all"}) == []
    assert member_ids(None) == []
    assert odata_id({"Chassis": "/redfish/v1/Chassis"}, "Chassis") is None


def test_credentials_never_in_repr() -> None:
    for auth in (BasicAuth("root", "calvin-pw"), SessionAuth("root", "calvin-pw")):
        client = RedfishClient("https://bmc-7", auth=auth)
        for text in (repr(auth), repr(client), str(client)):
            assert "calvin-pw" not in text and "root" not in text
    with pytest.raises(ConfigError, match="not the URL") as e:
        RedfishClient("https://root:calvin-pw@bmc-7")
    assert "calvin-pw" not in str(e.value)
    with pytest.raises(ConfigError, match="ca_file given with verify=False"):
        RedfishClient("https://bmc-7", verify=False, ca_file="/x.pem")
    with pytest.raises(ConfigError, match="http:// or https://"):
        RedfishClient("bmc-7")


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"<html>login</html>", "not JSON"),
        (200, b"[1, 2]", "JSON list, not an object"),
        (200, b'{"a": ' * 100_000, "not JSON"),
        (200, b"1" * 5000, "not JSON"),
        (500, b"{}", "HTTP 500"),
        (401, b"{}", "credentials refused"),
    ],
)
def test_bodies_that_are_not_a_resource(status: int, body: bytes, reason: str) -> None:
    with pytest.raises(RedfishError, match=reason) as e:
        RedfishClient._json("https://bmc-7/redfish/v1/Chassis", status, body)
    assert e.value.url == "https://bmc-7/redfish/v1/Chassis"
