"""SNMP reader: facility and IT power and energy from PDUs and meters (APC, Raritan, any OID).

Two layers, as in `redfish`:

- pure mapping (`map_apc`, `map_raritan`, `map_generic`) from raw varbinds (OID -> value, no
  pysnmp types) to `Reading`s; a value out of its plausible range is written down in
  `Mapped.skipped` with a reason, never used and never a crash;
- the I/O (`get`, `read_apc`, `read_raritan`, `read_generic`): one SNMP GET over UDP with pysnmp
  (v2c or v3 USM), and any failure is one `SnmpError` naming host and OID: a timeout (also what
  a wrong community looks like: the agent stays silent), a v3 report (unknown user, wrong
  digest), a PDU error, or a value that is missing or of the wrong type. The caller counts it
  and backs off.

What is read (OIDs and sensor types checked against PowerNet-MIB and PDU2-MIB as used by
LibreNMS, Observium, Checkmk, Zenoss and NUT):

- APC PowerNet-MIB `rPDU2DeviceStatusPower.<device>` (hundredths of kW) -> POWER_W, and
  `rPDU2DeviceStatusEnergy.<device>` (tenths of kWh) -> ENERGY_J (counter). The user can reset
  that meter from the PDU's menu: `wrap_at` stays None, so `CounterRates` sees a drop as a
  reset (a gap), never as negative energy.
- Raritan PDU2-MIB `measurementsInletSensorValue.<pdu>.<inlet>.<type>` for activePower (5, W)
  and activeEnergy (8, Wh), each divided by 10 ** `inletSensorDecimalDigits` of the same
  sensor. activeEnergy is an Unsigned32 of Wh: 4.29 GWh before it would wrap (decades at
  rack power), and it can be reset, so `wrap_at` stays None there too.
- `read_generic`: any OIDs with a quantity and a scale (`raw * scale` in the quantity's unit).
  A Counter32/Counter64 value of a counter quantity gets `wrap_at = 2**bits * scale`. An OID
  the agent has no instance of (noSuchInstance) is skipped with a reason; the others fail.

SNMP values carry no timestamp: `at_ms` is when the response arrived (an injected clock).
Secrets (community, v3 keys) are never in a `repr`, a log line, a `source` or an error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pipeline.collect.readings import COUNTERS, Quantity, Reading
from pipeline.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

# APC PowerNet-MIB, rPDU2DeviceStatusEntry (.1.3.6.1.4.1.318.1.1.26.4.3.1), index = device.
APC_DEVICE_STATUS = "1.3.6.1.4.1.318.1.1.26.4.3.1"
APC_POWER = f"{APC_DEVICE_STATUS}.5"  # rPDU2DeviceStatusPower, hundredths of kW
APC_ENERGY = f"{APC_DEVICE_STATUS}.9"  # rPDU2DeviceStatusEnergy, tenths of kWh
APC_POWER_TO_W = 10  # 0.01 kW
APC_ENERGY_TO_J = 360_000  # 0.1 kWh = 0.1 x 3.6e6 J (an integer: exact for every raw value)

# Raritan PDU2-MIB, index = pdu.inlet.sensorType.
RARITAN_VALUE = "1.3.6.1.4.1.13742.6.5.2.3.1.4"  # measurementsInletSensorValue
RARITAN_DIGITS = "1.3.6.1.4.1.13742.6.3.3.4.1.7"  # inletSensorDecimalDigits
RARITAN_ACTIVE_POWER = 5  # SensorTypeEnumeration activePower, W
RARITAN_ACTIVE_ENERGY = 8  # SensorTypeEnumeration activeEnergy, Wh
WH_TO_J = 3600

#: Plausible ranges after scaling; a value outside is skipped with a reason.
_LIMITS: dict[Quantity, tuple[float, float]] = {
    Quantity.POWER_W: (0.0, 1e7),  # 10 MW: a whole facility meter, not garbage
    Quantity.ENERGY_J: (0.0, 3.6e18),  # 1e12 kWh
    Quantity.INLET_TEMP_C: (-80.0, 200.0),
    Quantity.OUTLET_TEMP_C: (-80.0, 200.0),
}
#: Integer32's lowest and Counter64's highest: no SNMP integer is outside.
_SNMP_MIN, _SNMP_MAX = -(2**31), 2**64 - 1
#: inletSensorDecimalDigits is an Unsigned32; a real PDU uses 0..3.
_MAX_DECIMAL_DIGITS = 9


class SnmpError(PipelineError):
    """An SNMP GET failed or returned something unusable; names host, OID (if one) and why."""

    def __init__(self, host: str, reason: str, oid: str | None = None) -> None:
        self.host = host
        self.oid = oid
        self.reason = reason
        where = f"snmp {host}" + (f" {oid}" if oid else "")
        super().__init__(f"{where}: {reason}")


class SnmpDataError(SnmpError, ValueError):
    """The agent answered a value of the wrong kind (not an integer, outside 64 bits): the
    collector dead-letters it with the reason."""


class SnmpAuthError(SnmpError):
    """The agent refused SNMPv3 credentials (unknown user, wrong digest, cannot decrypt)."""


# --------------------------------------------------------------------------- pure mapping


class Missing(StrEnum):
    """An SNMPv2 exception value in place of a value."""

    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


@dataclass(frozen=True)
class CounterValue:
    """A Counter32 or Counter64 value: it wraps at 2 ** bits."""

    value: int
    bits: int


@dataclass(frozen=True)
class OtherValue:
    """A value of a type no reading uses (OctetString, IpAddress, ObjectIdentifier, ...)."""

    type_name: str
    text: str


#: A raw value: Integer32/Gauge32/Unsigned32/TimeTicks as int, counters as CounterValue.
RawValue = int | CounterValue | OtherValue | Missing
#: OID (dotted, no leading dot) -> raw value, as one GET returned them.
Varbinds = Mapping[str, object]


@dataclass(frozen=True)
class Skipped:
    """A value that was read but not used: which OID, and why."""

    oid: str
    reason: str


@dataclass
class Mapped:
    readings: list[Reading] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class OidMapping:
    """One OID of a generic meter: `raw * scale` is the reading in `quantity`'s unit."""

    oid: str
    quantity: Quantity
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "oid", normalise_oid(self.oid))
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ConfigError(f"snmp mapping {self.oid}: scale must be > 0, got {self.scale!r}")


def normalise_oid(oid: str) -> str:
    """'.1.3.6.1' or '1.3.6.1' -> '1.3.6.1'; a ConfigError for anything not dotted digits."""
    text = oid.strip().lstrip(".")
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ConfigError(f"snmp: {oid!r} is not a numeric OID (like .1.3.6.1.4.1.318...)")
    return ".".join(str(int(p)) for p in parts)


def _integer(host: str, oid: str, varbinds: Varbinds) -> tuple[int, int | None]:
    """The integer at `oid` and its counter width (None: not a counter), or an SnmpError."""
    if oid not in varbinds:
        raise SnmpError(host, "not in the response", oid)
    value = varbinds[oid]
    if isinstance(value, Missing):
        raise SnmpError(host, f"{value.value}: the agent has no such value (check the index)", oid)
    if isinstance(value, CounterValue):
        return value.value, value.bits
    if isinstance(value, bool) or not isinstance(value, int):
        kind = value.type_name if isinstance(value, OtherValue) else type(value).__name__
        raise SnmpDataError(host, f"wrong type {kind}, need an integer", oid)
    if not _SNMP_MIN <= value <= _SNMP_MAX:
        raise SnmpDataError(host, f"{value} is no SNMP integer (outside 64 bits)", oid)
    return value, None


def _plausible(quantity: Quantity, value: float, oid: str, skipped: list[Skipped]) -> bool:
    low, high = _LIMITS.get(quantity, (-math.inf, math.inf))
    if not math.isfinite(value) or not low <= value <= high:
        skipped.append(Skipped(oid, f"{value!r} outside [{low:g}, {high:g}] ({quantity.value})"))
        return False
    return True


def map_apc(
    varbinds: Varbinds, *, host: str, source: str, at_ms: int, device_index: int = 1
) -> Mapped:
    """APC rPDU2 device status -> POWER_W (raw x 10) and ENERGY_J (raw x 360 000)."""
    out = Mapped()
    for column, quantity, factor in (
        (APC_POWER, Quantity.POWER_W, APC_POWER_TO_W),
        (APC_ENERGY, Quantity.ENERGY_J, APC_ENERGY_TO_J),
    ):
        oid = f"{column}.{device_index}"
        raw, _ = _integer(host, oid, varbinds)
        # -1 is the MIB's "not supported by this model": out of range, so skipped.
        value = float(raw * factor)
        if _plausible(quantity, value, oid, out.skipped):
            out.readings.append(Reading(quantity, value, at_ms, source))
    return out


def raritan_oids(pdu: int, inlet: int) -> list[str]:
    """The four OIDs `map_raritan` reads: value and decimal digits of activePower, activeEnergy."""
    return [
        f"{table}.{pdu}.{inlet}.{sensor}"
        for sensor in (RARITAN_ACTIVE_POWER, RARITAN_ACTIVE_ENERGY)
        for table in (RARITAN_VALUE, RARITAN_DIGITS)
    ]


def map_raritan(
    varbinds: Varbinds, *, host: str, source: str, at_ms: int, pdu: int = 1, inlet: int = 1
) -> Mapped:
    """Raritan inlet activePower (W) and activeEnergy (Wh x 3600), each / 10 ** its digits."""
    out = Mapped()
    for sensor, quantity, factor in (
        (RARITAN_ACTIVE_POWER, Quantity.POWER_W, 1),
        (RARITAN_ACTIVE_ENERGY, Quantity.ENERGY_J, WH_TO_J),
    ):
        index = f"{pdu}.{inlet}.{sensor}"
        value_oid, digits_oid = f"{RARITAN_VALUE}.{index}", f"{RARITAN_DIGITS}.{index}"
        raw, _ = _integer(host, value_oid, varbinds)
        digits, _ = _integer(host, digits_oid, varbinds)
        if not 0 <= digits <= _MAX_DECIMAL_DIGITS:
            reason = f"decimal digits {digits} (at {digits_oid}) outside [0, {_MAX_DECIMAL_DIGITS}]"
            out.skipped.append(Skipped(value_oid, reason))
            continue
        # Multiply before dividing: 12345 Wh with 1 digit is exactly 1234.5 x 3600 J.
        value = raw * factor / 10**digits
        if _plausible(quantity, value, value_oid, out.skipped):
            out.readings.append(Reading(quantity, value, at_ms, source))
    return out


def map_generic(
    varbinds: Varbinds,
    mappings: Sequence[OidMapping],
    *,
    host: str,
    source_prefix: str,
    at_ms: int,
) -> Mapped:
    """Each mapping's OID -> `raw * scale` of its quantity (source: `<prefix>/<oid>`).

    noSuchInstance skips that one reading with a reason (a meter without that channel);
    noSuchObject, a missing varbind or a non-integer is an SnmpError (the mapping is wrong).
    """
    out = Mapped()
    for m in mappings:
        value = varbinds.get(m.oid)
        if value is Missing.NO_SUCH_INSTANCE:
            out.skipped.append(Skipped(m.oid, "noSuchInstance: the agent has no such instance"))
            continue
        raw, bits = _integer(host, m.oid, varbinds)
        scaled = float(raw * m.scale)
        if not _plausible(m.quantity, scaled, m.oid, out.skipped):
            continue
        wrap_at = 2.0**bits * m.scale if bits is not None and m.quantity in COUNTERS else None
        out.readings.append(Reading(m.quantity, scaled, at_ms, f"{source_prefix}/{m.oid}", wrap_at))
    return out


# --------------------------------------------------------------------------- targets


class AuthProtocol(StrEnum):
    MD5 = "MD5"
    SHA = "SHA"
    SHA224 = "SHA224"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"


class PrivProtocol(StrEnum):
    DES = "DES"
    AES = "AES"  # AES-128-CFB (RFC 3826)
    AES192 = "AES192"
    AES256 = "AES256"


@dataclass(frozen=True)
class SnmpV2c:
    """SNMP v2c: a community string (a secret: not in `repr`)."""

    community: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.community:
            raise ConfigError("snmp v2c: community is empty")


@dataclass(frozen=True)
class SnmpV3:
    """SNMP v3 USM. No `auth_key`: noAuthNoPriv; no `priv_key`: authNoPriv. Keys are
    passphrases (at least 8 characters, RFC 3414) and never show in `repr`."""

    user: str
    auth_protocol: AuthProtocol = AuthProtocol.SHA
    auth_key: str | None = field(default=None, repr=False)
    priv_protocol: PrivProtocol = PrivProtocol.AES
    priv_key: str | None = field(default=None, repr=False)
    #: The v3 context; PDUs use the default, empty one.
    context_name: str = ""

    def __post_init__(self) -> None:
        if not self.user:
            raise ConfigError("snmp v3: user is empty")
        for name, key in (("auth_key", self.auth_key), ("priv_key", self.priv_key)):
            if key is not None and len(key) < 8:
                raise ConfigError(f"snmp v3 user {self.user}: {name} needs 8 or more characters")
        if self.priv_key is not None and self.auth_key is None:
            raise ConfigError(f"snmp v3 user {self.user}: priv_key needs an auth_key too")

    @property
    def level(self) -> str:
        if self.auth_key is None:
            return "noAuthNoPriv"
        return "authNoPriv" if self.priv_key is None else "authPriv"


@dataclass(frozen=True)
class SnmpTarget:
    """An agent to GET from: address, credentials, and per-request timeout and retries."""

    host: str
    credentials: SnmpV2c | SnmpV3 = field(repr=False)
    port: int = 161
    timeout_s: float = 2.0
    retries: int = 1

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("snmp: host is empty")
        if not 0 < self.port < 65536:
            raise ConfigError(f"snmp {self.host}: port {self.port} outside 1..65535")
        if not self.timeout_s > 0:
            raise ConfigError(f"snmp {self.host}: timeout_s must be > 0")
        if self.retries < 0:
            raise ConfigError(f"snmp {self.host}: retries must be >= 0")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        creds = self.credentials
        how = "v2c" if isinstance(creds, SnmpV2c) else f"v3 {creds.user} {creds.level}"
        return f"SnmpTarget({self.address}, {how})"


# --------------------------------------------------------------------------- the I/O


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _auth_data(creds: SnmpV2c | SnmpV3) -> Any:
    from pysnmp.hlapi.v3arch import asyncio as hl  # type: ignore[import-untyped]

    if isinstance(creds, SnmpV2c):
        return hl.CommunityData(creds.community, mpModel=1)
    auth = {
        AuthProtocol.MD5: hl.USM_AUTH_HMAC96_MD5,
        AuthProtocol.SHA: hl.USM_AUTH_HMAC96_SHA,
        AuthProtocol.SHA224: hl.USM_AUTH_HMAC128_SHA224,
        AuthProtocol.SHA256: hl.USM_AUTH_HMAC192_SHA256,
        AuthProtocol.SHA384: hl.USM_AUTH_HMAC256_SHA384,
        AuthProtocol.SHA512: hl.USM_AUTH_HMAC384_SHA512,
    }[creds.auth_protocol]
    priv = {
        PrivProtocol.DES: hl.USM_PRIV_CBC56_DES,
        PrivProtocol.AES: hl.USM_PRIV_CFB128_AES,
        PrivProtocol.AES192: hl.USM_PRIV_CFB192_AES,
        PrivProtocol.AES256: hl.USM_PRIV_CFB256_AES,
    }[creds.priv_protocol]
    if creds.auth_key is None:
        return hl.UsmUserData(creds.user)
    if creds.priv_key is None:
        return hl.UsmUserData(creds.user, authKey=creds.auth_key, authProtocol=auth)
    return hl.UsmUserData(
        creds.user,
        authKey=creds.auth_key,
        privKey=creds.priv_key,
        authProtocol=auth,
        privProtocol=priv,
    )


def raw_value(value: Any) -> RawValue:
    """A pysnmp value -> a plain raw value (no pysnmp type leaves this module)."""
    from pyasn1.type import univ  # type: ignore[import-untyped]
    from pysnmp.proto import rfc1902, rfc1905  # type: ignore[import-untyped]

    if isinstance(value, rfc1905.NoSuchObject):
        return Missing.NO_SUCH_OBJECT
    if isinstance(value, rfc1905.NoSuchInstance):
        return Missing.NO_SUCH_INSTANCE
    if isinstance(value, rfc1905.EndOfMibView):
        return Missing.END_OF_MIB_VIEW
    if isinstance(value, rfc1902.Counter64):
        return CounterValue(int(value), 64)
    if isinstance(value, rfc1902.Counter32):
        return CounterValue(int(value), 32)
    # Integer32, Unsigned32, Gauge32 and TimeTicks: all pyasn1 Integers (not each other).
    if isinstance(value, univ.Integer):
        return int(value)
    return OtherValue(type(value).__name__, str(value.prettyPrint())[:80])


#: pysnmp error indications that mean the v3 credentials were refused.
_AUTH_INDICATIONS = frozenset(
    {
        "UnknownUserName",
        "WrongDigest",
        "DecryptionError",
        "UnsupportedSecLevel",
        "AuthenticationError",
    }
)


async def get(target: SnmpTarget, oids: Sequence[str]) -> dict[str, RawValue]:
    """One SNMP GET of `oids` -> OID -> raw value; any failure is one `SnmpError`."""
    from pysnmp.error import PySnmpError  # type: ignore[import-untyped]
    from pysnmp.hlapi.v3arch import asyncio as hl

    wanted = [normalise_oid(o) for o in oids]
    if not wanted:
        return {}
    creds = target.credentials
    context = creds.context_name if isinstance(creds, SnmpV3) else ""
    engine = hl.SnmpEngine()
    # pysnmp retries on its own; this outer deadline only guards against a hang in it.
    deadline = target.timeout_s * (target.retries + 1) + 5.0
    try:
        transport = await hl.UdpTransportTarget.create(
            (target.host, target.port), timeout=target.timeout_s, retries=target.retries
        )
        result = await asyncio.wait_for(
            hl.get_cmd(
                engine,
                _auth_data(creds),
                transport,
                hl.ContextData(contextName=context),
                *(hl.ObjectType(hl.ObjectIdentity(o)) for o in wanted),
                lookupMib=False,
            ),
            deadline,
        )
    except TimeoutError as e:
        raise SnmpError(target.address, f"no answer within {deadline:g} s") from e
    except (PySnmpError, OSError) as e:
        raise SnmpError(target.address, f"{type(e).__name__}: {e}") from e
    finally:
        engine.close_dispatcher()
    indication, status, index, varbinds = result
    if indication:
        name = type(indication).__name__
        if name in _AUTH_INDICATIONS:
            raise SnmpAuthError(
                target.address,
                f"v3 credentials refused ({indication}): check user, protocols and keys",
            )
        hint = ""
        if name == "RequestTimedOut":
            hint = (
                f" after {target.retries + 1} tries of {target.timeout_s:g} s"
                " (agent down, wrong port, or a wrong community/credentials: agents stay silent)"
            )
        raise SnmpError(target.address, f"{indication}{hint}")
    if status:
        at = wanted[int(index) - 1] if 0 < int(index) <= len(wanted) else None
        raise SnmpError(target.address, f"agent error {status.prettyPrint()}", at)
    return {str(vb[0]): raw_value(vb[1]) for vb in varbinds}


def source_of(target: SnmpTarget, what: str) -> str:
    """The `Reading.source` of something read from `target`, e.g. `snmp:pdu-3:161/apc/1`."""
    return f"snmp:{target.address}/{what}"


def _keep(target: SnmpTarget, mapped: Mapped) -> list[Reading]:
    for skip in mapped.skipped:
        log.warning("snmp %s %s skipped: %s", target.address, skip.oid, skip.reason)
    return mapped.readings


async def read_apc_mapped(
    target: SnmpTarget, device_index: int = 1, *, clock_ms: Callable[[], int] = _wall_clock_ms
) -> Mapped:
    """`read_apc` with what was skipped and why."""
    oids = [f"{APC_POWER}.{device_index}", f"{APC_ENERGY}.{device_index}"]
    varbinds = await get(target, oids)
    source = source_of(target, f"apc-rpdu2/{device_index}")
    return map_apc(
        varbinds,
        host=target.address,
        source=source,
        at_ms=clock_ms(),
        device_index=device_index,
    )


async def read_apc(
    target: SnmpTarget, device_index: int = 1, *, clock_ms: Callable[[], int] = _wall_clock_ms
) -> list[Reading]:
    """POWER_W and ENERGY_J of APC rack PDU device `device_index` (rPDU2DeviceStatus)."""
    return _keep(target, await read_apc_mapped(target, device_index, clock_ms=clock_ms))


async def read_raritan_mapped(
    target: SnmpTarget,
    pdu: int = 1,
    inlet: int = 1,
    *,
    clock_ms: Callable[[], int] = _wall_clock_ms,
) -> Mapped:
    """`read_raritan` with what was skipped and why."""
    varbinds = await get(target, raritan_oids(pdu, inlet))
    source = source_of(target, f"raritan-pdu2/{pdu}/inlet/{inlet}")
    return map_raritan(
        varbinds, host=target.address, source=source, at_ms=clock_ms(), pdu=pdu, inlet=inlet
    )


async def read_raritan(
    target: SnmpTarget,
    pdu: int = 1,
    inlet: int = 1,
    *,
    clock_ms: Callable[[], int] = _wall_clock_ms,
) -> list[Reading]:
    """POWER_W and ENERGY_J of inlet `inlet` of Raritan PDU `pdu` (PDU2-MIB inlet sensors)."""
    return _keep(target, await read_raritan_mapped(target, pdu, inlet, clock_ms=clock_ms))


def _mappings(mappings: Sequence[OidMapping | tuple[str, Quantity, float]]) -> list[OidMapping]:
    return [m if isinstance(m, OidMapping) else OidMapping(*m) for m in mappings]


async def read_generic_mapped(
    target: SnmpTarget,
    mappings: Sequence[OidMapping | tuple[str, Quantity, float]],
    *,
    clock_ms: Callable[[], int] = _wall_clock_ms,
) -> Mapped:
    """`read_generic` with what was skipped and why."""
    parsed = _mappings(mappings)
    varbinds = await get(target, [m.oid for m in parsed])
    return map_generic(
        varbinds,
        parsed,
        host=target.address,
        source_prefix=source_of(target, "oid"),
        at_ms=clock_ms(),
    )


async def read_generic(
    target: SnmpTarget,
    mappings: Sequence[OidMapping | tuple[str, Quantity, float]],
    *,
    clock_ms: Callable[[], int] = _wall_clock_ms,
) -> list[Reading]:
    """One reading per `(oid, quantity, scale)` the agent has (see `map_generic`)."""
    return _keep(target, await read_generic_mapped(target, mappings, clock_ms=clock_ms))
