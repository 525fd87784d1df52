"""Redfish reader: node power, energy and inlet/outlet temperatures from BMCs and rack PDUs.

Dell iDRAC, HPE iLO, Lenovo XCC, Supermicro and OpenBMC all speak Redfish. Two layers:

- pure mapping (`map_chassis`, `map_pdu_metrics`) from parsed resources to `Reading`s, with
  every value that is not used written down in `Mapped.skipped` with a reason (never a crash);
- `RedfishClient`, the I/O: discovery from the service root, basic or session auth, TLS
  verification on by default, timeouts; any failure is one `RedfishError` naming URL and reason.

Precedence, per chassis (the first source that gives a value wins):

- POWER_W: `EnvironmentMetrics.PowerWatts` > sum of `InputPowerWatts` of every present power
  supply's `Metrics` (input, not output: PSU losses are IT load in PUE; a sum with any PSU
  unread is not used) > deprecated `Power.PowerControl[]`: the first member's
  `PowerConsumedWatts`, else its `PowerMetrics.AverageConsumedWatts` (a mean over the device's
  `IntervalInMin`, not power now: `Mapped.chosen` says so).
- ENERGY_J (counter, kWh x 3.6e6): `EnvironmentMetrics.EnergykWh` > sum of the PSUs' `EnergykWh`
  (only if every present PSU has one). The PSU sum's source names the PSU set
  (`...#psu=Bay1+Bay2`): a changed set is a new counter, never a jump in an old one.
- INLET_TEMP_C / OUTLET_TEMP_C: `ThermalMetrics.TemperatureSummaryCelsius.{Intake,Exhaust}` >
  `ThermalMetrics.TemperatureReadingsCelsius[]` by `PhysicalContext` Intake/Exhaust, then by
  `DeviceName` (intake/inlet, exhaust/outlet) > deprecated `Thermal.Temperatures[]` the same way
  (`ReadingCelsius`). `EnvironmentMetrics.TemperatureCelsius` is not an inlet (often a CPU).

A rack PDU (`PowerEquipment/RackPDUs/{id}/Metrics`) gives POWER_W (`PowerWatts`) and ENERGY_J
(`EnergykWh`): a facility or IT meter, as the fleet file says. Null readings are "no reading",
never 0. Redfish excerpts carry no timestamp: `at_ms` is when the response arrived (an injected
clock).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from pipeline.collect.readings import Quantity, Reading
from pipeline.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

KWH_TO_J = 3.6e6
#: Plausible ranges; a value outside is skipped with a reason (garbage, or a wrong unit).
_LIMITS: dict[str, tuple[float, float]] = {
    "power_w": (0.0, 1e7),
    "energy_kwh": (0.0, 1e12),
    "temp_c": (-80.0, 200.0),
}
_MAX_BODY_BYTES = 8 * 1024 * 1024

Resource = Mapping[str, Any]


class RedfishError(PipelineError):
    """A Redfish request failed: HTTP error, timeout, TLS, or a body that is not a JSON object."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"redfish {url}: {reason}")


class RedfishDataError(RedfishError, ValueError):
    """The service answered, but not with Redfish data (not JSON, not an object, too large):
    the collector dead-letters it with the reason."""


class RedfishAuthError(RedfishError):
    """The BMC refused the credentials (401/403 after logging in): check user and password."""


# --------------------------------------------------------------------------- pure mapping


@dataclass(frozen=True)
class Skipped:
    """A value that was present but not used: where in the resources, and why."""

    where: str
    reason: str


@dataclass
class Mapped:
    readings: list[Reading] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: Per quantity, which property the reading came from (for logs and tests).
    chosen: dict[Quantity, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChassisResources:
    """The parsed resources of one chassis; None (or no PSU) where the BMC has not got it."""

    environment: object = None
    #: Power supply id -> its `Metrics` resource, present supplies only.
    psu_metrics: Mapping[str, object] = field(default_factory=dict)
    power: object = None
    thermal_metrics: object = None
    thermal: object = None


def _number(value: object, where: str, kind: str, skipped: list[Skipped]) -> float | None:
    if value is None:
        skipped.append(Skipped(where, "null: no reading"))
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        skipped.append(Skipped(where, f"not a number: {type(value).__name__}"))
        return None
    try:
        number = float(value)
    except OverflowError:
        skipped.append(Skipped(where, "number too large"))
        return None
    low, high = _LIMITS[kind]
    if not math.isfinite(number) or not low <= number <= high:
        skipped.append(Skipped(where, f"{number!r} outside [{low:g}, {high:g}] ({kind})"))
        return None
    return number


def _excerpt(
    resource: object, key: str, where: str, kind: str, skipped: list[Skipped]
) -> float | None:
    """`resource[key].Reading` of a Redfish sensor excerpt; None if absent or unusable."""
    if not isinstance(resource, Mapping) or key not in resource:
        return None
    obj = resource[key]
    if not isinstance(obj, Mapping):
        skipped.append(Skipped(f"{where}.{key}", f"not an object: {type(obj).__name__}"))
        return None
    if "Reading" not in obj:
        skipped.append(Skipped(f"{where}.{key}", "no Reading"))
        return None
    return _number(obj["Reading"], f"{where}.{key}.Reading", kind, skipped)


def _members(resource: object, key: str, where: str, skipped: list[Skipped]) -> list[Resource]:
    if not isinstance(resource, Mapping) or key not in resource:
        return []
    items = resource[key]
    if not isinstance(items, list):
        skipped.append(Skipped(f"{where}.{key}", f"not a list: {type(items).__name__}"))
        return []
    out: list[Resource] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            out.append(item)
        else:
            skipped.append(Skipped(f"{where}.{key}[{i}]", "not an object"))
    return out


def _psu_sum(
    psu_metrics: Mapping[str, object], key: str, kind: str, skipped: list[Skipped]
) -> float | None:
    """The sum of every PSU's `key` excerpt, or None if any present PSU lacks a reading."""
    if not psu_metrics:
        return None
    total = 0.0
    for psu_id in sorted(psu_metrics):
        where = f"PowerSupplies/{psu_id}/Metrics"
        value = _excerpt(psu_metrics[psu_id], key, where, kind, skipped)
        if value is None:
            skipped.append(Skipped(f"{where}.{key}", f"sum over PSUs not used: {psu_id} unread"))
            return None
        total += value
    return total


def _power(res: ChassisResources, skipped: list[Skipped]) -> tuple[float, str] | None:
    env = _excerpt(res.environment, "PowerWatts", "EnvironmentMetrics", "power_w", skipped)
    if env is not None:
        return env, "EnvironmentMetrics.PowerWatts"
    psus = _psu_sum(res.psu_metrics, "InputPowerWatts", "power_w", skipped)
    if psus is not None:
        return psus, f"sum of PowerSupplies/*/Metrics.InputPowerWatts ({len(res.psu_metrics)})"
    controls = _members(res.power, "PowerControl", "Power", skipped)
    if not controls:
        return None
    first = controls[0]
    if "PowerConsumedWatts" in first:
        where = "Power.PowerControl[0].PowerConsumedWatts"
        value = _number(first["PowerConsumedWatts"], where, "power_w", skipped)
        if value is not None:
            return value, where
    metrics = first.get("PowerMetrics")
    if isinstance(metrics, Mapping) and "AverageConsumedWatts" in metrics:
        where = "Power.PowerControl[0].PowerMetrics.AverageConsumedWatts"
        value = _number(metrics["AverageConsumedWatts"], where, "power_w", skipped)
        if value is not None:
            interval = metrics.get("IntervalInMin")
            return value, f"{where} (mean over IntervalInMin={interval!r}, not power now)"
    return None


def _matches(item: Resource, names: tuple[str, ...], context: str) -> int:
    """2 if `PhysicalContext` is `context`, 1 if the name mentions one of `names`, else 0."""
    if item.get("PhysicalContext") == context:
        return 2
    for key in ("DeviceName", "Name"):
        label = item.get(key)
        if isinstance(label, str) and any(n in label.lower() for n in names):
            return 1
    return 0


def _pick_temp(
    items: list[Resource],
    where: str,
    value_key: str,
    names: tuple[str, ...],
    context: str,
    skipped: list[Skipped],
) -> tuple[float, str] | None:
    for rank in (2, 1):
        for i, item in enumerate(items):
            if _matches(item, names, context) != rank or value_key not in item:
                continue
            at = f"{where}[{i}].{value_key}"
            value = _number(item[value_key], at, "temp_c", skipped)
            if value is not None:
                return value, at
    return None


_TEMPS = (
    (Quantity.INLET_TEMP_C, "Intake", ("intake", "inlet")),
    (Quantity.OUTLET_TEMP_C, "Exhaust", ("exhaust", "outlet")),
)


def _temperature(
    res: ChassisResources, context: str, names: tuple[str, ...], skipped: list[Skipped]
) -> tuple[float, str] | None:
    summary = res.thermal_metrics
    if isinstance(summary, Mapping) and "TemperatureSummaryCelsius" in summary:
        where = "ThermalMetrics.TemperatureSummaryCelsius"
        by_context = summary["TemperatureSummaryCelsius"]
        if isinstance(by_context, Mapping):
            value = _excerpt(by_context, context, where, "temp_c", skipped)
            if value is not None:
                return value, f"{where}.{context}"
        elif context == "Intake":  # say it once, not once per temperature
            skipped.append(Skipped(where, f"not an object: {type(by_context).__name__}"))
    where = "ThermalMetrics.TemperatureReadingsCelsius"
    items = _members(res.thermal_metrics, "TemperatureReadingsCelsius", "ThermalMetrics", skipped)
    found = _pick_temp(items, where, "Reading", names, context, skipped)
    if found is not None:
        return found
    items = _members(res.thermal, "Temperatures", "Thermal", skipped)
    return _pick_temp(items, "Thermal.Temperatures", "ReadingCelsius", names, context, skipped)


def map_chassis(res: ChassisResources, source: str, at_ms: int) -> Mapped:
    """One chassis's resources -> its readings, by the precedence in the module docstring."""
    out = Mapped()
    power = _power(res, out.skipped)
    if power is not None:
        out.readings.append(Reading(Quantity.POWER_W, power[0], at_ms, source))
        out.chosen[Quantity.POWER_W] = power[1]
    kwh = _excerpt(res.environment, "EnergykWh", "EnvironmentMetrics", "energy_kwh", out.skipped)
    energy_source, energy_from = source, "EnvironmentMetrics.EnergykWh"
    if kwh is None:
        kwh = _psu_sum(res.psu_metrics, "EnergykWh", "energy_kwh", out.skipped)
        energy_source = f"{source}#psu={'+'.join(sorted(res.psu_metrics))}"
        energy_from = "sum of PowerSupplies/*/Metrics.EnergykWh"
    if kwh is not None:
        out.readings.append(Reading(Quantity.ENERGY_J, kwh * KWH_TO_J, at_ms, energy_source))
        out.chosen[Quantity.ENERGY_J] = energy_from
    for quantity, context, names in _TEMPS:
        temp = _temperature(res, context, names, out.skipped)
        if temp is not None:
            out.readings.append(Reading(quantity, temp[0], at_ms, source))
            out.chosen[quantity] = temp[1]
    return out


def map_pdu_metrics(metrics: object, source: str, at_ms: int) -> Mapped:
    """A rack PDU's `Metrics` (PowerDistributionMetrics) -> POWER_W and ENERGY_J."""
    out = Mapped()
    where = "PowerDistributionMetrics"
    if not isinstance(metrics, Mapping):
        out.skipped.append(Skipped(where, f"not an object: {type(metrics).__name__}"))
        return out
    watts = _excerpt(metrics, "PowerWatts", where, "power_w", out.skipped)
    if watts is not None:
        out.readings.append(Reading(Quantity.POWER_W, watts, at_ms, source))
        out.chosen[Quantity.POWER_W] = f"{where}.PowerWatts"
    kwh = _excerpt(metrics, "EnergykWh", where, "energy_kwh", out.skipped)
    if kwh is not None:
        out.readings.append(Reading(Quantity.ENERGY_J, kwh * KWH_TO_J, at_ms, source))
        out.chosen[Quantity.ENERGY_J] = f"{where}.EnergykWh"
    return out


def odata_id(resource: object, key: str) -> str | None:
    """The `@odata.id` of the link `resource[key]`, or None if there is no such link."""
    if not isinstance(resource, Mapping):
        return None
    link = resource.get(key)
    if isinstance(link, Mapping):
        target = link.get("@odata.id")
        if isinstance(target, str) and target:
            return target
    return None


def member_ids(collection: object) -> list[str]:
    """The `@odata.id`s of a collection's `Members` (malformed members left out)."""
    if not isinstance(collection, Mapping) or not isinstance(collection.get("Members"), list):
        return []
    members: list[object] = collection["Members"]
    return [m["@odata.id"] for m in members if isinstance(m, Mapping) and _is_id(m)]


def _is_id(member: Mapping[str, object]) -> bool:
    return isinstance(member.get("@odata.id"), str) and bool(member["@odata.id"])


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class BasicAuth:
    """HTTP basic auth on every request. Neither field shows in `repr`."""

    username: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True)
class SessionAuth:
    """A Redfish session (`X-Auth-Token`): made on first use, renewed on 401, deleted on close."""

    username: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True)
class Discovery:
    chassis: list[str]
    rack_pdus: list[str]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class RedfishClient:
    """Reads one Redfish service (a BMC or a PDU controller). Use `async with`, or `close()`."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: BasicAuth | SessionAuth | None = None,
        verify: bool = True,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        url = URL(base_url)
        if url.user or url.password:
            raise ConfigError(
                f"redfish {url.with_user(None)}: put credentials in auth=, not the URL"
            )
        if not url.is_absolute() or url.scheme not in ("http", "https"):
            raise ConfigError(f"redfish {base_url!r}: need an http:// or https:// URL")
        if ca_file is not None and not verify:
            raise ConfigError(f"redfish {base_url}: ca_file given with verify=False; drop one")
        self.base_url = str(url.origin())
        self._origin = url.origin()
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s
        self._ssl: ssl.SSLContext | bool = False
        if verify:
            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"redfish {base_url}: cannot load ca_file {ca_file}: {e}") from e
        self._clock_ms = clock_ms
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._session_url: str | None = None
        self._root: Resource | None = None
        self._discovery: Discovery | None = None
        #: What the last `read` did not use, with reasons (also logged at warning).
        self.last_skipped: list[Skipped] = []

    def __repr__(self) -> str:
        kind = type(self._auth).__name__ if self._auth else "no auth"
        return f"RedfishClient({self.base_url!r}, {kind})"

    async def __aenter__(self) -> RedfishClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _url(self, path: str) -> URL:
        target = URL(path)
        if target.is_absolute():
            if target.origin() != self._origin:
                # Never send this BMC's credentials to another host a link points to.
                raise RedfishError(path, f"link leaves {self.base_url}; not followed")
            return target
        return self._origin.join(target)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def _request(
        self, method: str, path: str, *, body: object = None, authed: bool = True
    ) -> tuple[int, Mapping[str, str], bytes]:
        url = self._url(path)
        headers = {"Accept": "application/json", "OData-Version": "4.0"}
        if authed and isinstance(self._auth, BasicAuth):
            pair = f"{self._auth.username}:{self._auth.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if authed and self._token is not None:
            headers["X-Auth-Token"] = self._token
        try:
            async with self._client().request(
                method,
                url,
                headers=headers,
                json=body,
                ssl=self._ssl,
                allow_redirects=False,
            ) as resp:
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > _MAX_BODY_BYTES:
                        raise RedfishDataError(str(url), f"body over {_MAX_BODY_BYTES} bytes")
                return resp.status, dict(resp.headers), bytes(data)
        except TimeoutError as e:
            raise RedfishError(str(url), f"no answer within {self.timeout_s:g} s") from e
        except aiohttp.ClientSSLError as e:
            raise RedfishError(str(url), f"TLS: {e} (pass ca_file= for a private CA)") from e
        except aiohttp.ClientError as e:
            raise RedfishError(str(url), f"{type(e).__name__}: {e}") from e

    async def _login(self) -> None:
        assert isinstance(self._auth, SessionAuth)
        root = await self._service_root()
        sessions = odata_id(root.get("Links"), "Sessions") or "/redfish/v1/SessionService/Sessions"
        body = {"UserName": self._auth.username, "Password": self._auth.password}
        status, headers, _ = await self._request("POST", sessions, body=body, authed=False)
        url = str(self._url(sessions))
        if status in (401, 403):
            raise RedfishAuthError(url, f"HTTP {status}: session login refused; check credentials")
        if status not in (200, 201):
            raise RedfishError(url, f"HTTP {status} creating a session")
        token = headers.get("X-Auth-Token")
        if not token:
            raise RedfishError(url, "session created without an X-Auth-Token header")
        self._token = token
        self._session_url = headers.get("Location")

    async def get(self, path: str) -> Resource:
        """GET a resource as a JSON object (logging in first and once more on 401 for sessions)."""
        if isinstance(self._auth, SessionAuth) and self._token is None:
            await self._login()
        status, _, data = await self._request("GET", path)
        if status == 401 and isinstance(self._auth, SessionAuth):
            log.info("redfish %s: session expired, logging in again", self.base_url)
            self._token = None
            await self._login()
            status, _, data = await self._request("GET", path)
        return self._json(str(self._url(path)), status, data)

    @staticmethod
    def _json(url: str, status: int, data: bytes) -> Resource:
        if status in (401, 403):
            raise RedfishAuthError(url, f"HTTP {status}: credentials refused")
        if status != 200:
            raise RedfishError(url, f"HTTP {status}")
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise RedfishDataError(url, f"body is not JSON ({e})") from e
        if not isinstance(parsed, dict):
            raise RedfishDataError(url, f"body is JSON {type(parsed).__name__}, not an object")
        return parsed

    async def _service_root(self) -> Resource:
        # The service root is readable without credentials (Redfish spec), so fetch it bare.
        if self._root is None:
            status, _, data = await self._request("GET", "/redfish/v1/", authed=False)
            self._root = self._json(str(self._url("/redfish/v1/")), status, data)
        return self._root

    async def _collection(self, path: str | None) -> list[str]:
        return member_ids(await self.get(path)) if path else []

    async def discover(self) -> Discovery:
        """Chassis and rack PDUs from the service root (cached; `forget()` to re-discover)."""
        if self._discovery is None:
            root = await self._service_root()
            chassis = await self._collection(odata_id(root, "Chassis"))
            pdus: list[str] = []
            equipment = odata_id(root, "PowerEquipment")
            if equipment:
                pdus = await self._collection(odata_id(await self.get(equipment), "RackPDUs"))
            self._discovery = Discovery(chassis, pdus)
        return self._discovery

    def forget(self) -> None:
        self._root = None
        self._discovery = None

    def source(self, path: str) -> str:
        return f"redfish:{self.base_url}{URL(path).path.rstrip('/')}"

    async def _optional(self, resource: Resource, key: str) -> Resource | None:
        """The linked resource, or None if there is no link or the BMC says 404 for it."""
        path = odata_id(resource, key)
        if path is None:
            return None
        try:
            return await self.get(path)
        except RedfishError as e:
            if e.reason == "HTTP 404":
                self.last_skipped.append(Skipped(path, "linked but HTTP 404"))
                return None
            raise

    async def _psu_metrics(self, chassis: Resource) -> dict[str, Resource]:
        subsystem = await self._optional(chassis, "PowerSubsystem")
        if subsystem is None:
            return {}
        supplies = odata_id(subsystem, "PowerSupplies")
        out: dict[str, Resource] = {}
        for path in await self._collection(supplies):
            psu = await self.get(path)
            status = psu.get("Status")
            if isinstance(status, Mapping) and status.get("State") == "Absent":
                continue
            metrics = await self._optional(psu, "Metrics")
            if metrics is not None:
                out[str(psu.get("Id") or URL(path).name)] = metrics
        return out

    async def read_chassis(self, path: str) -> list[Reading]:
        chassis = await self.get(path)
        environment = await self._optional(chassis, "EnvironmentMetrics")
        psus = await self._psu_metrics(chassis)
        power = await self._optional(chassis, "Power")
        thermal_sub = await self._optional(chassis, "ThermalSubsystem")
        thermal_metrics = (
            await self._optional(thermal_sub, "ThermalMetrics") if thermal_sub else None
        )
        thermal = await self._optional(chassis, "Thermal")
        at_ms = self._clock_ms()
        res = ChassisResources(environment, psus, power, thermal_metrics, thermal)
        return self._keep(map_chassis(res, self.source(path), at_ms), path)

    async def read_pdu(self, path: str) -> list[Reading]:
        pdu = await self.get(path)
        metrics = await self._optional(pdu, "Metrics")
        if metrics is None:
            self.last_skipped.append(Skipped(path, "rack PDU has no Metrics"))
            return []
        return self._keep(map_pdu_metrics(metrics, self.source(path), self._clock_ms()), path)

    def _keep(self, mapped: Mapped, path: str) -> list[Reading]:
        for skip in mapped.skipped:
            log.warning(
                "redfish %s%s: %s skipped: %s", self.base_url, path, skip.where, skip.reason
            )
        self.last_skipped.extend(mapped.skipped)
        return mapped.readings

    async def read(self, chassis_id: str | None = None) -> list[Reading]:
        """Every chassis's and rack PDU's readings, or only chassis `chassis_id`'s."""
        self.last_skipped = []
        found = await self.discover()
        chassis = found.chassis
        if chassis_id is not None:
            chassis = [
                p for p in found.chassis if URL(p).path.rstrip("/").endswith(f"/{chassis_id}")
            ]
            if not chassis:
                ids = ", ".join(URL(p).name for p in found.chassis) or "none"
                raise RedfishError(self.base_url, f"no chassis {chassis_id!r} (has: {ids})")
        readings: list[Reading] = []
        for path in chassis:
            readings += await self.read_chassis(path)
        if chassis_id is None:
            for path in found.rack_pdus:
                readings += await self.read_pdu(path)
        return readings

    async def close(self) -> None:
        """Delete the session (if any) and close the connection pool."""
        try:
            if self._session_url is not None and self._token is not None:
                session_url, self._session_url = self._session_url, None
                try:
                    await self._request("DELETE", session_url)
                except RedfishError as e:
                    log.warning("redfish %s: could not delete session: %s", self.base_url, e)
        finally:
            self._token = None
            if self._http is not None:
                await self._http.close()
                self._http = None
