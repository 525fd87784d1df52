"""Access-log lines -> `RequestLog` records (pure): nginx and Envoy JSON, and the mapping rules.

A line is parsed into an `AccessEntry` (what the proxy knows), then `AccessMapping` says which
node served it (by upstream address, else host) and which service it belongs to (by host and
route prefix; the team is the fleet's owner of the service). A line that cannot be parsed or
mapped raises `AccessLogError` with the reason, for the caller to dead-letter: nothing is
guessed.

nginx: paste `NGINX_LOG_FORMAT` into the `http` block and `access_log <file> microdc;`. `$msec`
is when the log line was written, i.e. when the request finished (`time_iso8601` is the same
moment at second precision, used only when `msec` is absent); `request_time` is the whole
request, in seconds with millisecond resolution; a retried request's `upstream_addr` lists every
upstream tried ("a:80, b:80", " : " between internal redirects): the last one served it.

Envoy: its default JSON access-log keys (`start_time`, `duration`, `response_code`,
`bytes_received`, `bytes_sent`, `x-request-id`, `upstream_host`, `authority`, `path`) or the
command operators as keys (`START_TIME`, `DURATION`, `RESPONSE_CODE`, ...). The request
finished at `start_time + duration`.

nginx's default `combined` format is not accepted: it has no request time (latency), no request
id and no upstream address, so neither a latency SLO nor the node could be known.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from pipeline.contracts.records import CollectedRequestLog, RequestLog
from pipeline.fleet.model import Fleet

#: The nginx `log_format` to paste (escape=json: every value a valid JSON string or number).
NGINX_LOG_FORMAT = (
    "log_format microdc escape=json '{"
    '"msec":"$msec","time_iso8601":"$time_iso8601","request_id":"$request_id",'
    '"status":"$status","request_time":"$request_time",'
    '"upstream_response_time":"$upstream_response_time","upstream_addr":"$upstream_addr",'
    '"bytes_sent":"$bytes_sent","request_length":"$request_length","uri":"$uri",'
    '"host":"$host","remote_addr":"$remote_addr"'
    "}';"
)


class AccessLogError(ValueError):
    """A line that makes no request record; `reason` says why (for its dead letter)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AccessEntry(msgspec.Struct, frozen=True, kw_only=True):
    """What a proxy logged about one finished request."""

    finished_at: datetime
    request_id: str
    status: int
    latency_ms: float
    bytes_in: int
    bytes_out: int
    host: str | None
    route: str | None
    upstream: str | None
    client_ip: str | None


_decode = msgspec.json.Decoder(dict[str, Any]).decode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _object(line: bytes | str) -> dict[str, Any]:
    try:
        return _decode(line)
    except msgspec.DecodeError as exc:
        raise AccessLogError(f"not a JSON object: {exc}") from exc
    except msgspec.ValidationError as exc:
        raise AccessLogError(f"not a JSON object: {exc}") from exc


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = obj.get(name)
        if value not in (None, "", "-"):
            return value
    return None


def _number(obj: Mapping[str, Any], *names: str, required: bool = True) -> float | None:
    value = _field(obj, *names)
    if value is None:
        if required:
            raise AccessLogError(f"no {names[0]}")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AccessLogError(f"{names[0]} is not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise AccessLogError(f"{names[0]} out of range: {value!r}")
    return number


def _text(obj: Mapping[str, Any], *names: str) -> str | None:
    value = _field(obj, *names)
    return None if value is None else str(value)


def _time(text: str, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AccessLogError(f"{name} is not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise AccessLogError(f"{name} has no UTC offset: {text!r}")
    return when.astimezone(UTC)


def parse_nginx_json(line: bytes | str) -> AccessEntry:
    """One line of `NGINX_LOG_FORMAT` (or any nginx JSON format with those variables)."""
    obj = _object(line)
    msec = _number(obj, "msec", required=False)
    if msec is not None:
        finished = _EPOCH + timedelta(milliseconds=round(msec * 1000))
    else:
        iso = _text(obj, "time_iso8601")
        if iso is None:
            raise AccessLogError("no msec or time_iso8601: cannot tell when it finished")
        finished = _time(iso, "time_iso8601")
    request_time = _number(obj, "request_time")
    assert request_time is not None
    upstream = _text(obj, "upstream_addr")
    if upstream is not None:
        # retries are ", "-separated, internal redirects " : "-separated: the last one served
        upstream = upstream.split(",")[-1].split(" : ")[-1].strip() or None
    return AccessEntry(
        finished_at=finished,
        request_id=_required_text(obj, "request_id"),
        status=_status(obj, "status"),
        latency_ms=request_time * 1000,
        bytes_in=int(_number(obj, "request_length", required=False) or 0),
        bytes_out=int(_number(obj, "bytes_sent", required=False) or 0),
        host=_text(obj, "host"),
        route=_text(obj, "uri"),
        upstream=upstream,
        client_ip=_text(obj, "remote_addr"),
    )


def parse_envoy_json(line: bytes | str) -> AccessEntry:
    """One line of Envoy's JSON access log (default keys or command operators as keys)."""
    obj = _object(line)
    start = _text(obj, "start_time", "START_TIME")
    if start is None:
        raise AccessLogError("no start_time")
    duration = _number(obj, "duration", "DURATION")
    assert duration is not None
    return AccessEntry(
        finished_at=_time(start, "start_time") + timedelta(milliseconds=duration),
        request_id=_required_text(obj, "x-request-id", "X-REQUEST-ID", "request_id"),
        status=_status(obj, "response_code", "RESPONSE_CODE"),
        latency_ms=duration,
        bytes_in=int(_number(obj, "bytes_received", "BYTES_RECEIVED", required=False) or 0),
        bytes_out=int(_number(obj, "bytes_sent", "BYTES_SENT", required=False) or 0),
        host=_text(obj, "authority", ":AUTHORITY", "AUTHORITY"),
        route=_text(obj, "path", "PATH", ":PATH"),
        upstream=_text(obj, "upstream_host", "UPSTREAM_HOST"),
        client_ip=_text(obj, "downstream_remote_address", "DOWNSTREAM_REMOTE_ADDRESS"),
    )


def _required_text(obj: Mapping[str, Any], *names: str) -> str:
    value = _text(obj, *names)
    if value is None:
        raise AccessLogError(f"no {names[0]}: a request id is what makes a repeat count once")
    return value


def _status(obj: Mapping[str, Any], *names: str) -> int:
    value = _number(obj, *names)
    assert value is not None
    if not value.is_integer() or not 100 <= value <= 599:
        raise AccessLogError(f"{names[0]} is not an HTTP status: {value!r}")
    return int(value)


class NodeRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Requests whose upstream address (else host) matches `match` (a glob, e.g. 10.0.0.7:*)
    were served by `node_id`."""

    match: str
    node_id: str


class ServiceRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Requests to `host` (a glob; default any) whose route starts with `route_prefix` belong
    to `service`. The first rule that matches wins."""

    service: str
    host: str = "*"
    route_prefix: str = "/"


class AccessMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The rules that give a logged request its node and service."""

    nodes: list[NodeRule]
    services: list[ServiceRule]

    def problems(self, fleet: Fleet) -> list[tuple[str, str]]:
        """(path, reason) of every rule naming a node or service the fleet lacks."""
        out = []
        for i, rule in enumerate(self.nodes):
            if rule.node_id not in fleet.node_by_id:
                out.append((f"nodes[{i}].node_id", f"{rule.node_id!r} is not in the fleet"))
        for i, srule in enumerate(self.services):
            if srule.service not in fleet.service_by_name:
                out.append((f"services[{i}].service", f"{srule.service!r} is not in the fleet"))
        return out


def to_request_log(entry: AccessEntry, mapping: AccessMapping, fleet: Fleet) -> RequestLog:
    """The `RequestLog` of a mapped entry (client IP kept for the lake to hash or drop)."""
    return RequestMapper(mapping, fleet).record(entry)


R = TypeVar("R", bound=RequestLog)


def _convert(fields: dict[str, Any], kind: type[R]) -> R:
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise AccessLogError(f"outside the request-log contract: {exc}") from exc


#: Distinct upstream/host keys a mapper remembers the node of (cleared when full).
_CACHE_MAX = 65_536


class RequestMapper:
    """`AccessMapping` applied to entries, remembering the answer per upstream and per host
    (a log has few of each), so a line costs dictionary lookups, not a pass over the globs."""

    def __init__(self, mapping: AccessMapping, fleet: Fleet) -> None:
        self.mapping = mapping
        self.fleet = fleet
        self._nodes: dict[str | None, str | None] = {}
        self._hosts: dict[str, list[ServiceRule]] = {}

    def record(self, entry: AccessEntry) -> RequestLog:
        """The entry's record, its client IP as logged (for the lake to hash or drop)."""
        return _convert({**self._fields(entry), "client_ip": entry.client_ip}, RequestLog)

    def collected(
        self, entry: AccessEntry, hash_ip: Callable[[str | None], str | None]
    ) -> CollectedRequestLog:
        """The entry's record as a collector sends it: `client_ip_hmac` = `hash_ip(client_ip)`
        (the lake's keyed hash, or None), the raw IP not kept."""
        fields = {**self._fields(entry), "client_ip_hmac": hash_ip(entry.client_ip)}
        return _convert(fields, CollectedRequestLog)

    def _fields(self, entry: AccessEntry) -> dict[str, Any]:
        node_id = self._node_of(entry)
        service = self._service_of(entry)
        node = self.fleet.node_by_id[node_id]
        return {
            "finished_at": entry.finished_at,
            "request_id": entry.request_id,
            "site_id": node.site_id,
            "node_id": node_id,
            "service": service,
            "team": self.fleet.service_by_name[service].team,
            "status": entry.status,
            "latency_ms": entry.latency_ms,
            "bytes_in": entry.bytes_in,
            "bytes_out": entry.bytes_out,
            "route": entry.route[:256] if entry.route else None,
        }

    def _node_of(self, entry: AccessEntry) -> str:
        for key in (entry.upstream, entry.host):
            if key is None:
                continue
            if key not in self._nodes:
                if len(self._nodes) >= _CACHE_MAX:
                    self._nodes.clear()
                self._nodes[key] = next(
                    (r.node_id for r in self.mapping.nodes if fnmatch.fnmatchcase(key, r.match)),
                    None,
                )
            node_id = self._nodes[key]
            if node_id is not None:
                return node_id
        raise AccessLogError(
            f"no node rule matches upstream {entry.upstream!r} or host {entry.host!r}"
        )

    def _service_of(self, entry: AccessEntry) -> str:
        host, route = entry.host or "", entry.route or "/"
        rules = self._hosts.get(host)
        if rules is None:
            if len(self._hosts) >= _CACHE_MAX:
                self._hosts.clear()
            rules = self._hosts[host] = [
                r for r in self.mapping.services if fnmatch.fnmatchcase(host, r.host)
            ]
        for rule in rules:
            if route.startswith(rule.route_prefix):
                return rule.service
        raise AccessLogError(f"no service rule matches host {host!r} route {route!r}")
