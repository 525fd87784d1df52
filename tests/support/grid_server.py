"""A small real HTTP server on 127.0.0.1 that answers like the four carbon-intensity services,
for the grid client tests (`pipeline.collect.grid_http`). No network: point a source's `url`
at `server.url`.

What it serves, in each provider's documented shape:

- Electricity Maps v3 (header `auth-token` must be `em_key`): `/v3/carbon-intensity/latest`
  is the recorded `electricitymaps_latest.json` (its `zone` and `emissionFactorType` those
  asked for); `/v3/carbon-intensity/past-range` one item per hour from `start` to `end`, both
  included, `carbonIntensity = 300 + UTC hour`; more than 10 days is a 400 as the API says.
- WattTime v3: `/login` checks HTTP basic auth (`wt_user`, `wt_password`) and issues a token;
  `/v3/historical` needs `Authorization: Bearer <token>` and answers 5-minute points from
  `start` to `end`, both included (as the API does), `value = 800 + minute` lbs/MWh; more than
  32 days is a 400. `expire_tokens()` forgets every token issued so far (the 30-minute expiry,
  once); `refuse_tokens = True` refuses every token, even a fresh one.
- UK Carbon Intensity: `/intensity` is `uk_intensity_latest.json`; `/intensity/{from}/{to}`
  the half hours from the one that ends at `from` (the public API returns it too) to `to`,
  `forecast = 150 + hour`, `actual = 145 + hour`; `/regional/regionid/{id}` is
  `uk_regional_regionid.json`; `/regional/intensity/{from}/{to}/regionid/{id}` the region as
  one object (not a list), `forecast = 200 + hour`; more than 14 days is a 400.
- XM: `POST /hourly` checks the body (`MetricId` factorEmisionCO2e, `Entity` Sistema, dates
  `YYYY-MM-DD`, a `Filter` list) and answers one item per local day from `StartDate` to
  `EndDate`, both included, `HourNN = 90 + NN + day / 10`; more than 31 days is a 400.

Every request is recorded in `requests` (method, path, query, JSON body, headers). Hooks:
`fail(prefix, status)` answers a status (for `times` requests, or always), `slow(prefix, s)`
delays, `garbage(prefix, body)` answers raw bytes with 200, `canned(path, payload)` answers a
recorded payload for one path. It runs its own event loop in a thread, so the client under test
can `asyncio.run` in the test's thread; `grid_server()` stops it at the end of the `with`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "grid"

EM_MAX = timedelta(days=10)
WT_MAX = timedelta(days=32)
UK_MAX = timedelta(days=14)
XM_MAX_DAYS = 31
HOUR = timedelta(hours=1)
HALF_HOUR = timedelta(minutes=30)
FIVE_MINUTES = timedelta(minutes=5)

_UK_RANGE = re.compile(r"^/intensity/([^/]+)/([^/]+)$")
_UK_REGION = re.compile(r"^/regional/regionid/(\d+)$")
_UK_REGION_RANGE = re.compile(r"^/regional/intensity/([^/]+)/([^/]+)/regionid/(\d+)$")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _time(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return when.astimezone(UTC)


def _z(when: datetime, seconds: bool = True) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%dT%H:%MZ")


def _floor(when: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (when - epoch) // step * step


def _ceil(when: datetime, step: timedelta) -> datetime:
    floor = _floor(when, step)
    return floor if floor == when else floor + step


@dataclass
class Seen:
    """One request the server got."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fail:
    status: int
    times: int | None
    body: bytes
    headers: dict[str, str]


class GridServer:
    def __init__(
        self,
        *,
        em_key: str = "em-key-5e3cr3t-0001",
        wt_user: str = "wt-user",
        wt_password: str = "wt-pa55-s3cret",
    ) -> None:
        self.em_key = em_key
        self.wt_user = wt_user
        self.wt_password = wt_password
        self.tokens: set[str] = set()
        self.refuse_tokens = False
        self.logins = 0
        self.requests: list[Seen] = []
        self._fail: dict[str, _Fail] = {}
        self._slow: dict[str, float] = {}
        self._garbage: dict[str, bytes] = {}
        self._canned: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- hooks -------------------------------------------------------------------------------

    def fail(
        self,
        prefix: str,
        status: int,
        *,
        times: int | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer `status` to requests whose path starts with `prefix` (`times` of them)."""
        self._fail[prefix] = _Fail(status, times, body, headers or {})

    def slow(self, prefix: str, seconds: float) -> None:
        self._slow[prefix] = seconds

    def garbage(self, prefix: str, body: bytes) -> None:
        self._garbage[prefix] = body

    def canned(self, path: str, payload: Any) -> None:
        """Answer `payload` (JSON) to `path`, whatever the query (auth is still checked)."""
        self._canned[path] = payload

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def seen(self, prefix: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    # -- HTTP --------------------------------------------------------------------------------

    @staticmethod
    def _hook(table: dict[str, Any], path: str) -> Any:
        for prefix, value in table.items():
            if path.startswith(prefix):
                return value
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        path = request.path
        self.requests.append(
            Seen(request.method, path, dict(request.query), body, dict(request.headers))
        )
        delay = self._hook(self._slow, path)
        if delay and self._stopping is not None:
            with contextlib.suppress(TimeoutError):  # or until the server stops
                await asyncio.wait_for(self._stopping.wait(), delay)
        for prefix, failure in list(self._fail.items()):
            if path.startswith(prefix):
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        del self._fail[prefix]
                return web.Response(
                    status=failure.status, body=failure.body, headers=failure.headers
                )
        garbage = self._hook(self._garbage, path)
        if garbage is not None:
            return web.Response(body=garbage, content_type="application/json")
        try:
            return await self._route(request, path, body)
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)

    async def _route(self, request: web.Request, path: str, body: Any) -> web.StreamResponse:
        q = request.query
        if path.startswith("/v3/carbon-intensity/"):
            if request.headers.get("auth-token") != self.em_key:
                return web.json_response({"message": "Invalid or missing auth-token"}, status=401)
            if path in self._canned:
                return web.json_response(self._canned[path])
            if path == "/v3/carbon-intensity/latest":
                return web.json_response(self._em_latest(q["zone"], q["emissionFactorType"]))
            if path == "/v3/carbon-intensity/past-range":
                start, end = _time(q["start"]), _time(q["end"])
                if end - start > EM_MAX:
                    return web.json_response(
                        {"message": "Date range exceeded 10 days limit for hourly data"},
                        status=400,
                    )
                return web.json_response(
                    self._em_range(q["zone"], q["emissionFactorType"], start, end)
                )
        if path == "/login":
            return self._login(request)
        if path.startswith("/v3/"):
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ")
            if self.refuse_tokens or not header.startswith("Bearer ") or token not in self.tokens:
                return web.json_response({"error": "unauthorized"}, status=401)
            if path in self._canned:
                return web.json_response(self._canned[path])
            if path == "/v3/historical":
                start, end = _time(q["start"]), _time(q["end"])
                if end - start > WT_MAX:
                    return web.json_response({"error": "range over 32 days"}, status=400)
                return web.json_response(self._wt_range(q["region"], q["signal_type"], start, end))
        if path in self._canned:
            return web.json_response(self._canned[path])
        if path == "/intensity":
            return web.json_response(fixture("uk_intensity_latest.json"))
        if match := _UK_REGION.match(path):
            payload = fixture("uk_regional_regionid.json")
            payload["data"][0]["regionid"] = int(match[1])
            return web.json_response(payload)
        if match := _UK_RANGE.match(path):
            start, end = _time(match[1]), _time(match[2])
            if end - start > UK_MAX:
                return web.json_response({"error": {"message": "range over 14 days"}}, status=400)
            return web.json_response({"data": self._uk_periods(start, end, regional=False)})
        if match := _UK_REGION_RANGE.match(path):
            start, end = _time(match[1]), _time(match[2])
            if end - start > UK_MAX:
                return web.json_response({"error": {"message": "range over 14 days"}}, status=400)
            region = {
                "regionid": int(match[3]),
                "dnoregion": "UKPN London",
                "shortname": "London",
                "data": self._uk_periods(start, end, regional=True),
            }
            return web.json_response({"data": region})
        if path == "/hourly" and request.method == "POST":
            return self._xm(body)
        return web.json_response({"error": f"{path} not found"}, status=404)

    # -- Electricity Maps --------------------------------------------------------------------

    @staticmethod
    def _em_item(zone: str, factor: str, hour: datetime) -> dict[str, Any]:
        return {
            "zone": zone,
            "carbonIntensity": 300 + hour.hour,
            "datetime": hour.strftime("%Y-%m-%dT%H:00:00.000Z"),
            "updatedAt": "2026-12-04T09:58:11.257Z",
            "createdAt": "2026-12-01T10:01:42.916Z",
            "emissionFactorType": factor,
            "isEstimated": False,
            "estimationMethod": None,
        }

    def _em_latest(self, zone: str, factor: str) -> dict[str, Any]:
        payload = dict(fixture("electricitymaps_latest.json"))
        payload.update(zone=zone, emissionFactorType=factor)
        return payload

    def _em_range(self, zone: str, factor: str, start: datetime, end: datetime) -> dict[str, Any]:
        hour = _ceil(start, HOUR)
        items = []
        while hour <= end:
            items.append(self._em_item(zone, factor, hour))
            hour += HOUR
        return {"zone": zone, "temporalGranularity": "hourly", "data": items}

    # -- WattTime ----------------------------------------------------------------------------

    def _login(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        ok = False
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user = password = ""
            ok = secrets.compare_digest(f"{user}:{password}", f"{self.wt_user}:{self.wt_password}")
        if not ok:
            return web.json_response({"error": "invalid credentials"}, status=401)
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        self.logins += 1
        return web.json_response({"token": token})

    @staticmethod
    def _wt_range(region: str, signal: str, start: datetime, end: datetime) -> dict[str, Any]:
        at = _ceil(start, FIVE_MINUTES)
        points = []
        while at <= end:
            points.append(
                {
                    "point_time": at.isoformat(),
                    "value": 800.0 + at.minute,
                    "version": "3.2-2024-09-01",
                }
            )
            at += FIVE_MINUTES
        meta = {
            "data_point_period_seconds": 300,
            "region": region,
            "warnings": [],
            "signal_type": signal,
            "model": {"date": "2024-09-01", "type": "binned_regression"},
            "units": "lbs_co2_per_mwh",
        }
        return {"data": points, "meta": meta}

    # -- UK Carbon Intensity -----------------------------------------------------------------

    @staticmethod
    def _uk_periods(start: datetime, end: datetime, *, regional: bool) -> list[dict[str, Any]]:
        at = _floor(start, HALF_HOUR) - HALF_HOUR  # the half hour that ends at `from` too
        periods = []
        while at <= end:
            if regional:
                intensity: dict[str, Any] = {"forecast": 200 + at.hour, "index": "moderate"}
            else:
                intensity = {"forecast": 150 + at.hour, "actual": 145 + at.hour, "index": "low"}
            periods.append(
                {"from": _z(at, False), "to": _z(at + HALF_HOUR, False), "intensity": intensity}
            )
            at += HALF_HOUR
        return periods

    # -- XM ----------------------------------------------------------------------------------

    def _xm(self, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return web.json_response({"Message": "body is not a JSON object"}, status=400)
        problems = []
        if body.get("MetricId") != "factorEmisionCO2e":
            problems.append("MetricId")
        if body.get("Entity") != "Sistema":
            problems.append("Entity")
        if not isinstance(body.get("Filter"), list):
            problems.append("Filter")
        try:
            first = date.fromisoformat(str(body.get("StartDate")))
            last = date.fromisoformat(str(body.get("EndDate")))
        except ValueError:
            problems.append("StartDate/EndDate")
        if problems:
            return web.json_response({"Message": f"bad {', '.join(problems)}"}, status=400)
        if (last - first).days + 1 > XM_MAX_DAYS or last < first:
            return web.json_response({"Message": "range over 31 days"}, status=400)
        items = []
        day = first
        while day <= last:
            values: dict[str, Any] = {"code": "Sistema"}
            for hour in range(1, 25):
                values[f"Hour{hour:02d}"] = round(90 + hour + day.day / 10, 1)
            items.append(
                {
                    "MetricId": "factorEmisionCO2e",
                    "Date": day.isoformat(),
                    "Entity": "Sistema",
                    "HourlyEntities": [{"Id": "Sistema", "Values": values}],
                }
            )
            day += timedelta(days=1)
        return web.json_response({"Items": items})

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> int:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port: int = self._runner.addresses[0][1]
        return port

    def start(self) -> GridServer:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def grid_server(**kwargs: Any) -> Iterator[GridServer]:
    server = GridServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
