"""HTTP clients of the carbon-intensity services: latest values for the live poller, ranges for
backfill. The payloads are parsed by the pure readers of `pipeline.collect.grid`.

`grid_client(source)` builds the client of one `grid:` source of the collector file. Its
credentials are read from the environment then (a variable that is not set is a `ConfigError`
naming it, never a value). Each call is one attempt per HTTP request, bounded by the source's
`timeout_s`; retrying is the collector service's job (it backs off). Failures:

- `GridHttpError`: the service is down, slow, refuses the connection, answers 401/403
  (`GridAuthError`: "check $VARIABLE", never the key), 429 (rate limited; `retry_after_s` when
  the service says), 5xx or another error status. Not the data's fault: back off and retry.
- `grid.GridError` (a `ValueError`): the service answered 200 with a body that is not JSON or
  not of the documented shape: the caller dead-letters it.

Every record returned has `zone = source.zone` (the fleet's `grid_zone`), whatever the
provider calls its zone (`provider_zone`, default `zone`). `history(start, end)` takes
UTC-aware datetimes and returns the values whose `valid_from` is in `[start, end)`: the range
is split into the provider's longest range per request, the answers are concatenated in time
order, and a value two neighbouring answers both hold is kept once (WattTime's end is
inclusive, UK Carbon Intensity also returns the half hour that ends at `from`, XM answers whole
local days: each answer is cut to the range). Skipped values are prefixed with the request
they came from.

Providers (`url` of the source replaces the base URL: a proxy, a test server):

- Electricity Maps v3, `https://api.electricitymap.org`, header `auth-token: <key>` (key from
  `api_key_env`). latest: `GET /v3/carbon-intensity/latest?zone=&emissionFactorType=` (the
  current hour). Range: `GET /v3/carbon-intensity/past-range?zone=&start=&end=
  &emissionFactorType=` (ISO 8601 UTC), at most 10 days of hourly data per request (a longer
  one is refused with "Date range exceeded 10 days limit for hourly data"). An item without
  `emissionFactorType` is the type that was asked for.
- WattTime v3, `https://api.watttime.org`: `GET /login` with HTTP basic auth (`username_env`,
  `password_env`) gives `{"token"}`, sent as `Authorization: Bearer`; it lasts 30 minutes: the
  client logs in again after 29 minutes, and once more (then retries once) on a 401. latest:
  `GET /v3/historical?region=&signal_type=&start=&end=` over the last hour (or two poll
  intervals, if longer): measured values (`is_estimated=False`), not `/v3/forecast`'s
  `horizon_hours=0` nowcast, and overlapping polls so a slow poll leaves no gap of 5-minute
  points. Range: the same endpoint, 30 days per request (the official SDK's chunk; its end is
  inclusive).
- UK Carbon Intensity (NESO, no key), `https://api.carbonintensity.org.uk`, times
  `YYYY-MM-DDThh:mmZ`, at most 14 days per request. National: latest `GET /intensity` (the
  current half hour), range `GET /intensity/{from}/{to}`. A region (`region_id`): latest
  `GET /regional/regionid/{id}`, range `GET /regional/intensity/{from}/{to}/regionid/{id}`,
  whose `data` is one region object rather than a list (normalised here for the parser).
  Regional values are forecasts only. `provider_zone` is not used.
- XM (Colombia, no key), `https://servapibi.xm.com.co`: `POST /hourly` with
  `{"MetricId": "factorEmisionCO2e", "StartDate": "YYYY-MM-DD", "EndDate": "YYYY-MM-DD",
  "Entity": "Sistema", "Filter": []}` (what pydataxm's `ReadDB.request_data` sends), answered
  `{"Items": [{"Date", "HourlyEntities": [{"Id", "Values": {"code", "Hour01".."Hour24"}}]}]}`,
  flattened as pydataxm does (`Id`, `Date`, `Values_code`, `Values_HourNN`). Days are
  Colombia's (UTC-5) and both ends are inclusive; at most 30 days per request (pydataxm splits
  longer ranges). latest: the last 7 local days, today included (XM publishes days late).
  `provider_zone` is not used.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from pipeline.collect import grid
from pipeline.collect.config import (
    ElectricityMapsSource,
    GridSource,
    UkCarbonIntensitySource,
    WattTimeSource,
    XmSource,
)
from pipeline.collect.grid import Parsed, Skipped
from pipeline.contracts.records import GridIntensity
from pipeline.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

ELECTRICITY_MAPS_URL = "https://api.electricitymap.org"
WATTTIME_URL = "https://api.watttime.org"
UK_CARBON_INTENSITY_URL = "https://api.carbonintensity.org.uk"
XM_URL = "https://servapibi.xm.com.co"

#: Longest range per request, per provider.
ELECTRICITY_MAPS_MAX_RANGE = timedelta(days=10)
WATTTIME_MAX_RANGE = timedelta(days=30)
UK_MAX_RANGE = timedelta(days=14)
XM_MAX_DAYS = 30
#: XM's latest: this many local days, today included.
XM_LATEST_DAYS = 7
#: WattTime's latest covers at least this much (and two poll intervals if that is longer).
WATTTIME_LATEST_WINDOW = timedelta(hours=1)
#: WattTime tokens last 30 minutes; log in again a little before.
WATTTIME_TOKEN_TTL_S = 29 * 60

XM_METRIC = "factorEmisionCO2e"
XM_ENTITY = "Sistema"

_MAX_BODY_BYTES = 64 * 1024 * 1024
_EXCERPT = 200

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class GridHttpError(PipelineError):
    """A grid service request failed: down, slow, refused, rate limited, an error status.

    `status` is the HTTP status (None when there was no answer); `retry_after_s` is the
    service's `Retry-After` in seconds for a 429 or 503, when it gave one."""

    def __init__(
        self,
        where: str,
        reason: str | None = None,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        # GridHttpError("whole message") is allowed too (test doubles, other callers).
        self.where = where if reason is not None else ""
        self.reason = reason if reason is not None else where
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(f"grid {where}: {reason}" if reason is not None else where)


class GridAuthError(GridHttpError):
    """The service refused the credentials (401/403): the message names the variables to check."""


# --------------------------------------------------------------------------- helpers


def split_range(start: datetime, end: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    """`[start, end)` as consecutive spans of at most `step`."""
    spans: list[tuple[datetime, datetime]] = []
    at = start
    while at < end:
        upto = min(at + step, end)
        spans.append((at, upto))
        at = upto
    return spans


def local_days(start: datetime, end: datetime, tz: Any = grid.COLOMBIA_TZ) -> list[date]:
    """The local days (in `tz`) that `[start, end)` touches."""
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def xm_rows(payload: object) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """XM's `/hourly` answer -> pydataxm's flat rows (`Id`, `Date`, `Values_code`,
    `Values_Hour01`..), as `pd.json_normalize(Items, "HourlyEntities", "Date", sep="_")` makes
    them; a malformed item or entity is skipped with where and why."""
    if not isinstance(payload, Mapping):
        raise grid.GridError(
            grid.SOURCE_XM, f"payload is not a JSON object (got {type(payload).__name__})"
        )
    items = payload.get("Items")
    if not isinstance(items, list):
        raise grid.GridError(grid.SOURCE_XM, "payload has no `Items` list")
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for i, item in enumerate(items):
        where = f"Items[{i}]"
        if not isinstance(item, Mapping):
            skipped.append(Skipped(where, f"not an object: {item!r}"))
            continue
        entities = item.get("HourlyEntities")
        if not isinstance(entities, list):
            skipped.append(Skipped(where, "no `HourlyEntities` list"))
            continue
        for j, entity in enumerate(entities):
            values = entity.get("Values") if isinstance(entity, Mapping) else None
            if not isinstance(entity, Mapping) or not isinstance(values, Mapping):
                skipped.append(Skipped(f"{where}.HourlyEntities[{j}]", "no `Values` object"))
                continue
            row: dict[str, Any] = {k: v for k, v in entity.items() if k != "Values"}
            row.update({f"Values_{k}": v for k, v in values.items()})
            row["Date"] = item.get("Date")
            rows.append(row)
    return rows, skipped


def uk_regional_as_list(payload: object) -> object:
    """A regional range answer (`{"data": {regionid, .., "data": [..]}}`, one region object) in
    the list form the parser reads (`{"data": [{regionid, .., "data": [..]}]}`)."""
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), Mapping):
        return {**payload, "data": [payload["data"]]}
    return payload


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uk_time(when: datetime, *, up: bool = False) -> str:
    """`YYYY-MM-DDThh:mmZ`; `up` rounds a time with seconds up to the next minute."""
    when = when.astimezone(UTC)
    if up and (when.second or when.microsecond):
        when += timedelta(minutes=1)
    return when.strftime("%Y-%m-%dT%H:%MZ")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _check_zone(kind: str, zone: str) -> None:
    """The fleet zone must be a valid record id (records get it): a ConfigError now if not."""
    probe = {
        "valid_from": datetime(2000, 1, 1, tzinfo=UTC),
        "valid_to": datetime(2000, 1, 1, 1, tzinfo=UTC),
        "zone": zone,
        "carbon_intensity_gco2e_per_kwh": 0.0,
        "emission_factor_type": "direct",
        "signal": "average",
        "source": "probe",
        "is_estimated": False,
    }
    try:
        msgspec.convert(probe, GridIntensity)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"grid {kind}: zone {zone!r} is not a valid id: {exc}") from None


def _env(kind: str, zone: str, name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"grid {kind} {zone}: {what}: ${name} is not set")
    return value


# --------------------------------------------------------------------------- the clients


class GridClient:
    """One grid source's HTTP client (a connection pool kept across polls); `close()` it."""

    #: The parser's name of the provider (`GridIntensity.source`, `GridError.source`).
    provider = ""
    max_range = timedelta(days=1)
    default_url = ""

    def __init__(self, source: GridSource, *, clock: Clock = _now) -> None:
        url = URL(source.url or self.default_url)
        if url.user or url.password:
            raise ConfigError(
                f"grid {source.kind} {source.zone}: put credentials in the environment, "
                "not in the url"
            )
        if not url.is_absolute() or url.scheme not in ("http", "https"):
            raise ConfigError(f"grid {source.kind} {source.zone}: need an http(s):// url")
        _check_zone(source.kind, source.zone)
        self.source = source
        self.base_url = str(url.with_query(None).with_fragment(None)).rstrip("/")
        self._base = URL(self.base_url)
        self.label = f"{source.kind}:{source.zone}@{self.base_url}"
        self.timeout_s = source.timeout_s
        self._timeout = aiohttp.ClientTimeout(total=source.timeout_s)
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None
        #: Values never to appear in an error message (keys, passwords, tokens).
        self._secrets: list[str] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"

    @property
    def provider_zone(self) -> str:
        return self.source.provider_zone or self.source.zone

    # -- public API ----------------------------------------------------------------------

    async def latest(self) -> Parsed:
        """The newest value(s), what the live poller sends every `poll_interval_s`."""
        raise NotImplementedError

    async def history(self, start: datetime, end: datetime) -> Parsed:
        """Every value with `valid_from` in `[start, end)` (UTC-aware), split into the
        provider's longest range per request and concatenated in time order."""
        for name, when in (("start", start), ("end", end)):
            if when.tzinfo is None or when.utcoffset() is None:
                raise ValueError(f"{name} {when.isoformat()} has no time zone: give UTC")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        records: list[GridIntensity] = []
        skipped: list[Skipped] = []
        seen: set[tuple[datetime, datetime, str, str]] = set()
        for part_start, part_end in self.chunks(start, end):
            part, part_skipped = await self._range(part_start, part_end)
            span = f"{_iso(part_start)}..{_iso(part_end)}"
            skipped += [Skipped(f"{span} {s.where}", s.reason) for s in part_skipped]
            for record in sorted(part, key=lambda r: r.valid_from):
                key = (
                    record.valid_from,
                    record.valid_to,
                    record.signal,
                    record.emission_factor_type,
                )
                if start <= record.valid_from < end and key not in seen:
                    seen.add(key)
                    records.append(record)
        return records, skipped

    def chunks(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The requests `history(start, end)` makes, as UTC spans."""
        return split_range(start, end, self.max_range)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- for the providers ---------------------------------------------------------------

    async def _range(self, start: datetime, end: datetime) -> Parsed:
        raise NotImplementedError

    def _auth_hint(self) -> str:
        """What to check when the service refuses the credentials."""
        return "this service needs no key: is a proxy in the way?"

    def _own(self, parsed: Parsed) -> Parsed:
        """Records with the fleet's zone, whatever the provider called it."""
        records, skipped = parsed
        zone = self.source.zone
        owned = [r if r.zone == zone else msgspec.structs.replace(r, zone=zone) for r in records]
        return owned, skipped

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": "microdc-pipeline"},
            )
        return self._http

    def _where(self, path: str) -> str:
        return f"{self.label} {path}"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request: (status, headers, body). Never follows a redirect (credentials stay
        with this host); no answer in time or no connection is a `GridHttpError`."""
        url = self._base.with_path(self._base.path.rstrip("/") + path)
        where = self._where(path)
        log.debug("grid %s %s %s", self.label, method, path)
        try:
            async with self._client().request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > _MAX_BODY_BYTES:
                        raise grid.GridError(
                            self.provider, f"{path}: body over {_MAX_BODY_BYTES} bytes"
                        )
                return resp.status, dict(resp.headers), bytes(data)
        except TimeoutError as exc:
            raise GridHttpError(where, f"no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientSSLError as exc:
            raise GridHttpError(where, f"TLS: {self._scrub(str(exc))}") from exc
        except aiohttp.ClientError as exc:
            reason = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            raise GridHttpError(where, reason) from exc

    def _decode(self, path: str, status: int, headers: Mapping[str, str], data: bytes) -> object:
        """A 200's JSON body; an error status is a `GridHttpError`, a body that is not JSON a
        `grid.GridError`."""
        where = self._where(path)
        if status in (401, 403):
            raise GridAuthError(
                where, f"HTTP {status}: credentials refused; {self._auth_hint()}", status=status
            )
        if status == 429:
            retry = _retry_after(headers)
            after = f" (retry after {retry:g} s)" if retry is not None else ""
            raise GridHttpError(
                where, f"HTTP 429: rate limited{after}", status=status, retry_after_s=retry
            )
        if status >= 500:
            raise GridHttpError(
                where,
                f"HTTP {status}: server error",
                status=status,
                retry_after_s=_retry_after(headers),
            )
        if 300 <= status < 400:
            location = self._scrub(headers.get("Location", "?"))
            raise GridHttpError(where, f"HTTP {status}: redirect to {location} not followed")
        if status != 200:
            excerpt = self._scrub(data[:_EXCERPT].decode("utf-8", "replace")).strip()
            raise GridHttpError(where, f"HTTP {status}: {excerpt or 'no body'}", status=status)
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise grid.GridError(self.provider, f"{path}: body is not JSON ({exc})") from None

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> object:
        status, headers, data = await self._call("GET", path, params=params)
        return self._decode(path, status, headers, data)


class ElectricityMapsClient(GridClient):
    provider = grid.SOURCE_ELECTRICITY_MAPS
    max_range = ELECTRICITY_MAPS_MAX_RANGE
    default_url = ELECTRICITY_MAPS_URL

    def __init__(self, source: ElectricityMapsSource, *, clock: Clock = _now) -> None:
        super().__init__(source, clock=clock)
        self.em = source
        self._key = _env(source.kind, source.zone, source.api_key_env, "the API key")
        self._secrets.append(self._key)

    def _auth_hint(self) -> str:
        return f"check ${self.em.api_key_env} (the Electricity Maps API key)"

    def _params(self, **more: str) -> dict[str, str]:
        return {
            "zone": self.provider_zone,
            **more,
            "emissionFactorType": self.em.emission_factor_type,
        }

    def _typed(self, payload: object) -> object:
        """Items without `emissionFactorType` are of the type that was asked for."""
        factor = self.em.emission_factor_type
        if not isinstance(payload, Mapping):
            return payload
        out: dict[str, Any] = dict(payload)
        out.setdefault("emissionFactorType", factor)
        data = out.get("data")
        if isinstance(data, list):
            out["data"] = [
                {"emissionFactorType": factor, **item} if isinstance(item, Mapping) else item
                for item in data
            ]
        return out

    async def _em_get(self, path: str, params: Mapping[str, str]) -> object:
        status, headers, data = await self._call(
            "GET", path, params=params, headers={"auth-token": self._key}
        )
        return self._typed(self._decode(path, status, headers, data))

    async def latest(self) -> Parsed:
        payload = await self._em_get("/v3/carbon-intensity/latest", self._params())
        return self._own(grid.electricity_maps_latest(payload, zone_override=self.source.zone))

    async def _range(self, start: datetime, end: datetime) -> Parsed:
        params = self._params(start=_iso(start), end=_iso(end))
        payload = await self._em_get("/v3/carbon-intensity/past-range", params)
        return self._own(grid.electricity_maps_history(payload, zone_override=self.source.zone))


class WattTimeClient(GridClient):
    provider = grid.SOURCE_WATTTIME
    max_range = WATTTIME_MAX_RANGE
    default_url = WATTTIME_URL

    def __init__(
        self,
        source: WattTimeSource,
        *,
        clock: Clock = _now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(source, clock=clock)
        self.wt = source
        self._username = _env(source.kind, source.zone, source.username_env, "the username")
        self._password = _env(source.kind, source.zone, source.password_env, "the password")
        self._secrets += [self._password]
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_at = 0.0
        #: Logins made (for tests and logs).
        self.logins = 0

    def _auth_hint(self) -> str:
        return f"check ${self.wt.username_env} and ${self.wt.password_env}"

    async def _login(self) -> None:
        path = "/login"
        where = self._where(path)
        pair = base64.b64encode(f"{self._username}:{self._password}".encode()).decode("ascii")
        status, headers, data = await self._call(
            "GET", path, headers={"Authorization": f"Basic {pair}"}
        )
        if status in (401, 403):
            raise GridAuthError(
                where, f"HTTP {status}: login refused; {self._auth_hint()}", status=status
            )
        try:
            answer = self._decode(path, status, headers, data)
        except grid.GridError as exc:
            raise GridHttpError(where, f"login answer unusable: {exc.reason}") from None
        token = answer.get("token") if isinstance(answer, Mapping) else None
        if not isinstance(token, str) or not token:
            raise GridHttpError(where, "login answered without a token")
        self._token = token
        self._token_at = self._monotonic()
        self._secrets.append(token)
        self.logins += 1

    def _token_fresh(self) -> bool:
        age = self._monotonic() - self._token_at
        return self._token is not None and age < WATTTIME_TOKEN_TTL_S

    async def _wt_get(self, path: str, params: Mapping[str, str]) -> object:
        """GET with the bearer token: logs in when there is none (or it is old), and once
        more on a 401 (an expired token), retrying once."""
        for attempt in (1, 2):
            if not self._token_fresh():
                await self._login()
            headers = {"Authorization": f"Bearer {self._token}"}
            status, answer_headers, data = await self._call(
                "GET", path, params=params, headers=headers
            )
            if status == 401 and attempt == 1:
                log.info("grid %s: token refused (expired?): logging in again", self.label)
                self._token = None
                continue
            if status == 401:
                raise GridAuthError(
                    self._where(path),
                    f"HTTP 401 again after logging in again; {self._auth_hint()}",
                    status=status,
                )
            if status == 403:
                raise GridAuthError(
                    self._where(path),
                    f"HTTP 403: no access to region {self.provider_zone} signal "
                    f"{self.wt.signal_type} for this account; {self._auth_hint()}",
                    status=status,
                )
            return self._decode(path, status, answer_headers, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _historical_params(self, start: datetime, end: datetime) -> dict[str, str]:
        return {
            "region": self.provider_zone,
            "signal_type": self.wt.signal_type,
            "start": _iso(start),
            "end": _iso(end),
        }

    async def latest(self) -> Parsed:
        window = max(WATTTIME_LATEST_WINDOW, timedelta(seconds=2 * self.source.poll_interval_s))
        end = self._clock().astimezone(UTC)
        start = end - min(window, self.max_range)
        payload = await self._wt_get("/v3/historical", self._historical_params(start, end))
        return self._own(grid.watttime_v3(payload))

    async def _range(self, start: datetime, end: datetime) -> Parsed:
        payload = await self._wt_get("/v3/historical", self._historical_params(start, end))
        return self._own(grid.watttime_v3(payload))


class UkCarbonIntensityClient(GridClient):
    provider = grid.SOURCE_UK
    max_range = UK_MAX_RANGE
    default_url = UK_CARBON_INTENSITY_URL

    def __init__(self, source: UkCarbonIntensitySource, *, clock: Clock = _now) -> None:
        super().__init__(source, clock=clock)
        self.region_id = source.region_id

    def _parse(self, payload: object) -> Parsed:
        return self._own(grid.uk_carbon_intensity(payload, zone=self.source.zone))

    async def latest(self) -> Parsed:
        if self.region_id is None:
            return self._parse(await self._get_json("/intensity"))
        return self._parse(await self._get_json(f"/regional/regionid/{self.region_id}"))

    async def _range(self, start: datetime, end: datetime) -> Parsed:
        span = f"{_uk_time(start)}/{_uk_time(end, up=True)}"
        if self.region_id is None:
            return self._parse(await self._get_json(f"/intensity/{span}"))
        path = f"/regional/intensity/{span}/regionid/{self.region_id}"
        return self._parse(uk_regional_as_list(await self._get_json(path)))


class XmClient(GridClient):
    provider = grid.SOURCE_XM
    max_range = timedelta(days=XM_MAX_DAYS)
    default_url = XM_URL

    def __init__(self, source: XmSource, *, clock: Clock = _now) -> None:
        super().__init__(source, clock=clock)

    def chunks(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Runs of at most 30 Colombian days, as UTC spans from local midnight to midnight."""
        if start >= end:
            return []
        days = local_days(start, end)
        spans: list[tuple[datetime, datetime]] = []
        for i in range(0, len(days), XM_MAX_DAYS):
            run = days[i : i + XM_MAX_DAYS]
            spans.append((self._midnight(run[0]), self._midnight(run[-1] + timedelta(days=1))))
        return spans

    @staticmethod
    def _midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=grid.COLOMBIA_TZ).astimezone(UTC)

    async def _days(self, first: date, last: date) -> Parsed:
        body = {
            "MetricId": XM_METRIC,
            "StartDate": first.isoformat(),
            "EndDate": last.isoformat(),
            "Entity": XM_ENTITY,
            "Filter": [],
        }
        status, headers, data = await self._call("POST", "/hourly", body=body)
        rows, skipped = xm_rows(self._decode("/hourly", status, headers, data))
        records, row_skipped = self._own(grid.xm_emission_factor(rows, zone=self.source.zone))
        return records, skipped + row_skipped

    async def latest(self) -> Parsed:
        today = self._clock().astimezone(grid.COLOMBIA_TZ).date()
        return await self._days(today - timedelta(days=XM_LATEST_DAYS - 1), today)

    async def _range(self, start: datetime, end: datetime) -> Parsed:
        days = local_days(start, end)
        return await self._days(days[0], days[-1])


def grid_client(source: GridSource, *, clock: Clock = _now) -> GridClient:
    """The client of `source`; its credentials are read now (a missing one is a ConfigError)."""
    if isinstance(source, ElectricityMapsSource):
        return ElectricityMapsClient(source, clock=clock)
    if isinstance(source, WattTimeSource):
        return WattTimeClient(source, clock=clock)
    if isinstance(source, UkCarbonIntensitySource):
        return UkCarbonIntensityClient(source, clock=clock)
    return XmClient(source, clock=clock)
