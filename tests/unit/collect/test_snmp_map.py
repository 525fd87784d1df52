"""SNMP varbinds -> Readings: APC and Raritan scaling, generic mappings, hostile values, targets."""

from __future__ import annotations

import pytest

from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.snmp import (
    APC_ENERGY,
    APC_POWER,
    RARITAN_DIGITS,
    RARITAN_VALUE,
    CounterValue,
    Mapped,
    Missing,
    OidMapping,
    OtherValue,
    SnmpError,
    SnmpTarget,
    SnmpV2c,
    SnmpV3,
    map_apc,
    map_generic,
    map_raritan,
    normalise_oid,
    raritan_oids,
    raw_value,
)
from pipeline.errors import ConfigError

HOST = "pdu-3:161"
AT = 1_764_000_000_000


def values(mapped: Mapped) -> dict[Quantity, float]:
    return {r.quantity: r.value for r in mapped.readings}


def apc(power: object, energy: object, index: int = 1) -> Mapped:
    varbinds = {f"{APC_POWER}.{index}": power, f"{APC_ENERGY}.{index}": energy}
    return map_apc(varbinds, host=HOST, source="snmp:pdu-3:161/apc", at_ms=AT, device_index=index)


def raritan(power: object, power_digits: object, energy: object, energy_digits: object) -> Mapped:
    varbinds = {
        f"{RARITAN_VALUE}.1.2.5": power,
        f"{RARITAN_DIGITS}.1.2.5": power_digits,
        f"{RARITAN_VALUE}.1.2.8": energy,
        f"{RARITAN_DIGITS}.1.2.8": energy_digits,
    }
    return map_raritan(varbinds, host=HOST, source="snmp:r", at_ms=AT, pdu=1, inlet=2)


# --------------------------------------------------------------------------- APC


def test_apc_power_is_hundredths_of_kw_and_energy_tenths_of_kwh() -> None:
    mapped = apc(523, 12345)
    assert values(mapped) == {Quantity.POWER_W: 5230.0, Quantity.ENERGY_J: 1234.5 * 3.6e6}
    assert mapped.skipped == []
    energy = next(r for r in mapped.readings if r.quantity is Quantity.ENERGY_J)
    # User-resettable: no modulus, so CounterRates calls a drop a reset, never a wrap.
    assert energy == Reading(Quantity.ENERGY_J, 4_444_200_000.0, AT, "snmp:pdu-3:161/apc")
    assert energy.is_counter and energy.wrap_at is None


def test_apc_reads_the_device_index_asked_for() -> None:
    assert values(apc(7, 1, index=2)) == {Quantity.POWER_W: 70.0, Quantity.ENERGY_J: 360_000.0}


def test_apc_minus_one_means_not_supported_and_is_skipped_with_a_reason() -> None:
    mapped = apc(-1, 12345)
    assert values(mapped) == {Quantity.ENERGY_J: 4_444_200_000.0}
    assert [s.oid for s in mapped.skipped] == [f"{APC_POWER}.1"]
    assert "outside" in mapped.skipped[0].reason and "power_w" in mapped.skipped[0].reason


def test_apc_huge_power_is_skipped_not_believed() -> None:
    mapped = apc(2**31 - 1, 0)
    assert values(mapped) == {Quantity.ENERGY_J: 0.0}
    assert "outside" in mapped.skipped[0].reason


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (OtherValue("OctetString", "5.23 kW"), "wrong type OctetString"),
        ("523", "wrong type str"),
        (5.23, "wrong type float"),
        (True, "wrong type bool"),
        (Missing.NO_SUCH_OBJECT, "noSuchObject"),
        (Missing.NO_SUCH_INSTANCE, "noSuchInstance"),
        (2**70, "outside 64 bits"),
    ],
)
def test_apc_unusable_values_are_an_snmp_error_naming_host_and_oid(
    value: object, says: str
) -> None:
    with pytest.raises(SnmpError) as caught:
        apc(value, 12345)
    assert caught.value.host == HOST
    assert caught.value.oid == f"{APC_POWER}.1"
    assert says in str(caught.value) and HOST in str(caught.value)


def test_apc_a_missing_varbind_is_an_error() -> None:
    with pytest.raises(SnmpError, match="not in the response"):
        map_apc({f"{APC_POWER}.1": 5}, host=HOST, source="s", at_ms=AT)


# --------------------------------------------------------------------------- Raritan


def test_raritan_divides_by_ten_to_the_decimal_digits() -> None:
    mapped = raritan(12345, 1, 987654, 0)
    assert values(mapped) == {Quantity.POWER_W: 1234.5, Quantity.ENERGY_J: 987654 * 3600.0}
    assert mapped.skipped == []
    assert all(r.wrap_at is None for r in mapped.readings)


def test_raritan_energy_with_digits_is_exact() -> None:
    mapped = raritan(0, 0, 12345, 1)
    assert values(mapped)[Quantity.ENERGY_J] == 1234.5 * 3600


def test_raritan_oids_are_the_pdu2_mib_inlet_sensor_columns() -> None:
    assert raritan_oids(1, 2) == [
        "1.3.6.1.4.1.13742.6.5.2.3.1.4.1.2.5",
        "1.3.6.1.4.1.13742.6.3.3.4.1.7.1.2.5",
        "1.3.6.1.4.1.13742.6.5.2.3.1.4.1.2.8",
        "1.3.6.1.4.1.13742.6.3.3.4.1.7.1.2.8",
    ]


@pytest.mark.parametrize("digits", [-1, 10, 2**32 - 1])
def test_raritan_absurd_decimal_digits_skip_that_sensor(digits: int) -> None:
    mapped = raritan(12345, digits, 100, 0)
    assert values(mapped) == {Quantity.ENERGY_J: 360_000.0}
    assert mapped.skipped[0].oid == f"{RARITAN_VALUE}.1.2.5"
    assert "decimal digits" in mapped.skipped[0].reason


def test_raritan_negative_power_is_skipped() -> None:
    mapped = raritan(-5, 0, 1, 0)
    assert Quantity.POWER_W not in values(mapped)
    assert "outside" in mapped.skipped[0].reason


def test_raritan_string_value_is_an_error() -> None:
    with pytest.raises(SnmpError, match="wrong type OctetString") as caught:
        raritan(OtherValue("OctetString", "x"), 1, 1, 0)
    assert caught.value.oid == f"{RARITAN_VALUE}.1.2.5"


def test_raritan_sensor_the_inlet_lacks_is_an_error() -> None:
    with pytest.raises(SnmpError, match="noSuchInstance"):
        raritan(1, 0, Missing.NO_SUCH_INSTANCE, 0)


# --------------------------------------------------------------------------- generic


def test_generic_scales_and_names_each_oid_in_its_source() -> None:
    mappings = [
        OidMapping(".1.3.6.1.4.1.99.1.1.0", Quantity.POWER_W, 0.1),
        OidMapping("1.3.6.1.4.1.99.1.2.0", Quantity.ENERGY_J, 3600),
    ]
    varbinds = {"1.3.6.1.4.1.99.1.1.0": 52345, "1.3.6.1.4.1.99.1.2.0": 10}
    mapped = map_generic(varbinds, mappings, host=HOST, source_prefix="snmp:m/oid", at_ms=AT)
    power, energy = mapped.readings
    assert power.value == pytest.approx(5234.5)
    assert power == Reading(Quantity.POWER_W, power.value, AT, "snmp:m/oid/1.3.6.1.4.1.99.1.1.0")
    assert energy == Reading(Quantity.ENERGY_J, 36000.0, AT, "snmp:m/oid/1.3.6.1.4.1.99.1.2.0")


def test_generic_counter_types_carry_their_modulus_gauges_do_not() -> None:
    mappings = [
        OidMapping("1.3.1", Quantity.ENERGY_J, 3600),
        OidMapping("1.3.2", Quantity.ENERGY_J, 1),
        OidMapping("1.3.3", Quantity.POWER_W, 1),
    ]
    varbinds = {"1.3.1": CounterValue(5, 32), "1.3.2": CounterValue(7, 64), "1.3.3": 9}
    mapped = map_generic(varbinds, mappings, host=HOST, source_prefix="p", at_ms=AT)
    assert [r.wrap_at for r in mapped.readings] == [2.0**32 * 3600, 2.0**64, None]


def test_generic_counter_value_for_a_gauge_quantity_has_no_modulus() -> None:
    mappings = [OidMapping("1.3.1", Quantity.POWER_W, 1)]
    mapped = map_generic(
        {"1.3.1": CounterValue(5, 32)}, mappings, host=HOST, source_prefix="p", at_ms=AT
    )
    assert mapped.readings[0].wrap_at is None


def test_generic_no_such_instance_skips_that_reading_with_a_reason() -> None:
    mappings = [OidMapping("1.3.1", Quantity.POWER_W, 1), OidMapping("1.3.2", Quantity.POWER_W, 1)]
    varbinds = {"1.3.1": Missing.NO_SUCH_INSTANCE, "1.3.2": 40}
    mapped = map_generic(varbinds, mappings, host=HOST, source_prefix="p", at_ms=AT)
    assert [r.value for r in mapped.readings] == [40.0]
    assert mapped.skipped[0].oid == "1.3.1" and "noSuchInstance" in mapped.skipped[0].reason


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (Missing.NO_SUCH_OBJECT, "noSuchObject"),
        (Missing.END_OF_MIB_VIEW, "endOfMibView"),
        (OtherValue("IpAddress", "10.0.0.1"), "wrong type IpAddress"),
    ],
)
def test_generic_wrong_oid_or_type_is_an_error(value: object, says: str) -> None:
    with pytest.raises(SnmpError, match=says) as caught:
        map_generic(
            {"1.3.1": value},
            [OidMapping("1.3.1", Quantity.POWER_W, 1)],
            host=HOST,
            source_prefix="p",
            at_ms=AT,
        )
    assert caught.value.oid == "1.3.1"


def test_generic_negative_or_huge_after_scaling_is_skipped() -> None:
    mappings = [
        OidMapping("1.3.1", Quantity.POWER_W, 1),
        OidMapping("1.3.2", Quantity.POWER_W, 1000.0),
        OidMapping("1.3.3", Quantity.INLET_TEMP_C, 0.1),
    ]
    varbinds = {"1.3.1": -3, "1.3.2": 2**40, "1.3.3": 235}
    mapped = map_generic(varbinds, mappings, host=HOST, source_prefix="p", at_ms=AT)
    assert [r.quantity for r in mapped.readings] == [Quantity.INLET_TEMP_C]
    assert mapped.readings[0].value == pytest.approx(23.5)
    assert [s.oid for s in mapped.skipped] == ["1.3.1", "1.3.2"]


@pytest.mark.parametrize("bad", ["", "1", "1.3.x.1", "iso.3.6", "1..3", "１.３"])
def test_oid_must_be_numeric(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a numeric OID"):
        normalise_oid(bad)


def test_oid_leading_dot_and_zeros_are_normalised() -> None:
    assert normalise_oid(" .1.3.6.01.4 ") == "1.3.6.1.4"


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_mapping_scale_must_be_positive_and_finite(scale: float) -> None:
    with pytest.raises(ConfigError, match="scale"):
        OidMapping("1.3.1", Quantity.POWER_W, scale)


# --------------------------------------------------------------------------- targets


def test_secrets_never_show_in_repr() -> None:
    v2 = SnmpTarget("pdu-3", SnmpV2c("c0mmunity-s3cret"))
    v3 = SnmpTarget(
        "pdu-4", SnmpV3("monitor", auth_key="auth-s3cret-key", priv_key="priv-s3cret-key")
    )
    for target in (v2, v3, v2.credentials, v3.credentials):
        text = repr(target) + str(target)
        assert "s3cret" not in text
    assert repr(v3) == "SnmpTarget(pdu-4:161, v3 monitor authPriv)"
    assert repr(v2) == "SnmpTarget(pdu-3:161, v2c)"


def test_v3_levels_and_key_rules() -> None:
    assert SnmpV3("u").level == "noAuthNoPriv"
    assert SnmpV3("u", auth_key="12345678").level == "authNoPriv"
    with pytest.raises(ConfigError, match="8 or more"):
        SnmpV3("u", auth_key="short")
    with pytest.raises(ConfigError, match="needs an auth_key"):
        SnmpV3("u", priv_key="12345678")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"host": ""}, "host is empty"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
    ],
)
def test_target_rejects_bad_settings(kwargs: dict[str, object], says: str) -> None:
    settings: dict[str, object] = {"host": "pdu", "credentials": SnmpV2c("public")} | kwargs
    with pytest.raises(ConfigError, match=says):
        SnmpTarget(**settings)  # type: ignore[arg-type]


def test_ipv6_address_is_bracketed() -> None:
    assert SnmpTarget("::1", SnmpV2c("p"), port=1161).address == "[::1]:1161"


def test_pysnmp_values_become_plain_raw_values() -> None:
    from pysnmp.proto import rfc1902, rfc1905  # type: ignore[import-untyped]

    assert raw_value(rfc1902.Integer32(-1)) == -1
    assert raw_value(rfc1902.Gauge32(12345)) == 12345
    assert raw_value(rfc1902.Unsigned32(7)) == 7
    assert raw_value(rfc1902.TimeTicks(100)) == 100
    assert raw_value(rfc1902.Counter32(5)) == CounterValue(5, 32)
    assert raw_value(rfc1902.Counter64(2**40)) == CounterValue(2**40, 64)
    assert raw_value(rfc1902.OctetString("5 kW")) == OtherValue("OctetString", "5 kW")
    assert raw_value(rfc1902.IpAddress("10.0.0.1")).type_name == "IpAddress"  # type: ignore[union-attr]
    assert raw_value(rfc1905.NoSuchObject()) is Missing.NO_SUCH_OBJECT
    assert raw_value(rfc1905.NoSuchInstance()) is Missing.NO_SUCH_INSTANCE
    assert raw_value(rfc1905.EndOfMibView()) is Missing.END_OF_MIB_VIEW
