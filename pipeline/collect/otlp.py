"""OTLP/HTTP trace receiver: the HTTP server spans of instrumented services -> `RequestLog`s.

What it accepts: `POST /v1/traces` with an `ExportTraceServiceRequest`, binary protobuf
(`Content-Type: application/x-protobuf`, what the OpenTelemetry SDKs send by default) or OTLP/JSON
(`application/json`), optionally `Content-Encoding: gzip` (or `deflate`). OTLP/JSON is protobuf's
JSON mapping with OTLP's deviations: `traceId`/`spanId`/`parentSpanId` (also in links) are hex
strings, not base64; enums may be integers (or names); keys are lowerCamelCase; 64-bit times are
decimal strings (or numbers) of Unix nanoseconds; unknown fields are ignored.

Which spans make what. Only spans of kind SERVER are requests; every other kind (client,
internal, producer, consumer, unspecified) is counted in `OtlpBatch.spans` and otherwise
ignored - ignored, not rejected. Each server span becomes an `AccessEntry`, mapped to its node
and service by the same `AccessMapping` as the access logs (`RequestMapper`):

==============  ===========================================================================
field           span (attributes; the first one present wins; "old" = pre-1.20 semconv)
==============  ===========================================================================
finished_at     `end_time_unix_nano` (UTC, microsecond precision)
latency_ms      (`end_time_unix_nano` - `start_time_unix_nano`) / 1e6
request_id      f"{trace_id hex}-{span_id hex}": unique per span, the same when a batch is
                resent, so a resend deduplicates downstream
status          `http.response.status_code`, old `http.status_code`
route           `http.route`, `url.path`, old `http.target` (its path part)
host            `server.address`, old `net.host.name`, old `http.host` (a `:port` stripped)
upstream        the resource's `host.name` (the machine that served it), else
                `server.address`:`server.port` (old `net.host.name`:`net.host.port`)
bytes_in        `http.request.body.size`, old `http.request_content_length`, else 0
bytes_out       `http.response.body.size`, old `http.response_content_length`, else 0
client_ip       `client.address`, old `http.client_ip`, `network.peer.address`, old
                `net.sock.peer.addr`, old `net.peer.ip` (kept raw: the caller hashes it)
==============  ===========================================================================

A server span with no status, no or reversed times, or ids of the wrong length, or one the rules
do not map (`AccessLogError`), is a dead letter (`invalid`, the reason as its detail, the request
id as its key and the span in OTLP/JSON as its value; the caller redacts IPs from dead letters).
Such spans do not fail the request: the rest of it is used, and the response says how many spans
were rejected and why in OTLP's `partial_success`.

Status codes of `OtlpReceiver` (the OTLP/HTTP spec's meanings):

- 200: decoded, and `accept` kept the batch (records and dead letters) - with `partial_success`
  when server spans were rejected. A request with nothing to keep (no server span) is answered
  200 without calling `accept`.
- 400: the body cannot be decoded as an `ExportTraceServiceRequest` (corrupt protobuf or gzip,
  not JSON, the wrong shape, an id that is not hex); nothing of it is used. Not retryable.
- 413: the body is larger than `max_body_bytes`, compressed or once decompressed. Not retryable.
- 415: a content type other than the two above, or a content encoding other than gzip/deflate.
- 503 with `Retry-After: 5`: `accept` refused the batch (the collector's disk buffer is full) or
  failed; nothing of the request was kept, and the exporter retries it (503 is retryable).
- 500: a bug of ours while decoding (logged with its traceback; no input should cause one).
- 404 for other paths, 405 for other methods (aiohttp's plain answers).

Every 4xx/5xx body above is a `google.rpc.Status` (`code`: the gRPC code, `message`: the reason)
in the request's encoding: protobuf (encoded here by hand, fields 1 and 2, so that
googleapis-common-protos is not needed at run time) or JSON `{"code": 3, "message": "..."}`;
JSON when the request's own content type is not one of ours.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.collect.access_log import AccessEntry, AccessLogError, AccessMapping, RequestMapper
from pipeline.collect.service import COLLECT_TOPIC
from pipeline.contracts.outputs import DeadLetter, ErrorKind
from pipeline.contracts.records import EPOCH, RequestLog
from pipeline.errors import ConfigError
from pipeline.fleet.model import Fleet
from pipeline.stream.dead_letters import classify, dead_letter
from pipeline.wallclock import wall_clock_ms

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACES_PATH = "/v1/traces"
#: Largest request body, compressed or not (the spec recommends 20 MiB; ours is the default of
#: the collector file's `max_body_mb`).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Seconds a refused exporter is told to wait (`Retry-After` of a 503).
RETRY_AFTER_S = 5
#: Longest reason answered or kept (a hostile payload must not make them huge).
MAX_REASON = 500
#: Most distinct reasons quoted in `partial_success.error_message`.
MAX_REASONS_QUOTED = 3

#: gRPC status codes of the `google.rpc.Status` bodies, per HTTP status: INVALID_ARGUMENT,
#: RESOURCE_EXHAUSTED, INVALID_ARGUMENT, INTERNAL, UNAVAILABLE (clients only record them).
_GRPC_CODE = {400: 3, 413: 8, 415: 3, 500: 13, 503: 14}
_ENCODINGS = ("identity", "gzip", "deflate")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
#: OTLP/JSON's hex-encoded bytes fields (camelCase as the spec says; snake_case as protobuf's
#: JSON parser also accepts it, so that such a payload is not silently read as base64).
_SPAN_IDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_LINK_IDS = _SPAN_IDS[:2]


class OtlpPayloadError(ValueError):
    """A body that is no `ExportTraceServiceRequest`; `reason` says why (the 400's message)."""

    def __init__(self, reason: str) -> None:
        self.reason = _short(reason)
        super().__init__(self.reason)


class OtlpContentTypeError(ValueError):
    """A content type that is neither OTLP encoding (the server answers 415)."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.reason = _short(
            f"unsupported content type {content_type!r}: send {PROTOBUF} or {JSON}"
        )
        super().__init__(self.reason)


@dataclass
class OtlpBatch:
    """What one export request made: the server spans' records and dead letters, and how many
    spans of any kind it carried."""

    records: list[RequestLog]
    dead_letters: list[DeadLetter]
    spans: int

    @property
    def server_spans(self) -> int:
        return len(self.records) + len(self.dead_letters)


# --- decoding (pure) ---------------------------------------------------------------------------


def decode_traces(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The request in `body` (already decompressed). `content_type` may carry parameters
    (`; charset=utf-8`). Raises `OtlpPayloadError` (undecodable) or `OtlpContentTypeError`."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpPayloadError(
                f"not an OTLP protobuf ExportTraceServiceRequest: {exc}"
            ) from exc
        return request
    if media == JSON:
        return _from_json(body)
    raise OtlpContentTypeError(content_type)


def _from_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        tree = json.loads(body)
    except RecursionError:
        raise OtlpPayloadError("not an OTLP/JSON request: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise OtlpPayloadError(f"not JSON: {exc}") from exc
    if not isinstance(tree, dict):
        raise OtlpPayloadError(
            f"not an OTLP/JSON request: a JSON object is expected, got {type(tree).__name__}"
        )
    _hex_ids_to_base64(tree)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(tree, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpPayloadError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def _hex_ids_to_base64(tree: dict[str, Any]) -> None:
    """Rewrite OTLP/JSON's hex ids as the base64 protobuf's JSON parser reads (in place). Values
    of the wrong JSON type are left for the parser to refuse."""
    for i, resource_spans in _objects(tree, "resourceSpans", "resource_spans"):
        for j, scope_spans in _objects(resource_spans, "scopeSpans", "scope_spans"):
            for k, span in _objects(scope_spans, "spans"):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                _rewrite_ids(span, _SPAN_IDS, where)
                for m, link in _objects(span, "links"):
                    _rewrite_ids(link, _LINK_IDS, f"{where}.links[{m}]")


def _objects(obj: Mapping[str, Any], *names: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for name in names:
        items = obj.get(name)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    yield i, item


def _rewrite_ids(obj: dict[str, Any], fields: Iterable[tuple[str, str]], where: str) -> None:
    for names in fields:
        for name in names:
            value = obj.get(name)
            if not isinstance(value, str):
                continue
            if not _HEX.fullmatch(value):
                raise OtlpPayloadError(
                    f"{where}.{names[0]} is not hex: {value[:64]!r} (OTLP/JSON ids are hex "
                    "strings, not base64)"
                )
            obj[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


# --- spans -> records (pure) -------------------------------------------------------------------


def requests_of(
    request: ExportTraceServiceRequest,
    mapping: AccessMapping,
    fleet: Fleet,
    *,
    received_ms: int,
    hash_ip: Callable[[str | None], str | None] | None = None,
) -> OtlpBatch:
    """The records of the request's server spans, and a dead letter (stamped `received_ms`) for
    each server span that is invalid or unmapped. Never raises. With `hash_ip` the records are
    `CollectedRequestLog`s (`RequestMapper.collected`: the client IP hashed, never kept)."""
    batch = OtlpBatch(records=[], dead_letters=[], spans=0)
    mapper = RequestMapper(mapping, fleet)
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                batch.spans += 1
                if span.kind != Span.SpanKind.SPAN_KIND_SERVER:
                    continue
                request_id = _request_id(span)
                try:
                    entry = _entry_of(span, request_id, resource)
                    batch.records.append(
                        mapper.record(entry)
                        if hash_ip is None
                        else mapper.collected(entry, hash_ip)
                    )
                except AccessLogError as exc:
                    batch.dead_letters.append(_dead(span, request_id, received_ms, exc.reason))
                except Exception as exc:  # defence in depth: one span never fails the batch
                    log.exception("OTLP span %s could not be mapped", request_id)
                    kind, detail = classify(exc)
                    batch.dead_letters.append(
                        _dead(span, request_id, received_ms, detail, kind=kind)
                    )
    return batch


def export_response(batch: OtlpBatch) -> ExportTraceServiceResponse:
    """The 200's body: `partial_success` set only when server spans were rejected."""
    response = ExportTraceServiceResponse()
    rejected = batch.dead_letters
    if rejected:
        reasons = list(dict.fromkeys(d.error_detail for d in rejected))
        quoted = "; ".join(reasons[:MAX_REASONS_QUOTED])
        more = len(reasons) - MAX_REASONS_QUOTED
        response.partial_success.rejected_spans = len(rejected)
        response.partial_success.error_message = (
            f"{len(rejected)} of {batch.server_spans} server spans rejected (kept as dead "
            f"letters): {quoted}" + (f"; and {more} other reasons" if more > 0 else "")
        )
    return response


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, AnyValue]:
    out: dict[str, AnyValue] = {}
    for pair in pairs:
        out.setdefault(pair.key, pair.value)  # a repeated key is invalid OTLP: the first wins
    return out


def _request_id(span: Span) -> str:
    return f"{span.trace_id.hex()}-{span.span_id.hex()}"


def _entry_of(span: Span, request_id: str, resource: Mapping[str, AnyValue]) -> AccessEntry:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise AccessLogError(f"trace_id is not 16 bytes, not all zero: {span.trace_id.hex()!r}")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise AccessLogError(f"span_id is not 8 bytes, not all zero: {span.span_id.hex()!r}")
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if end == 0:
        raise AccessLogError("no end_time_unix_nano: the span never finished")
    if start == 0:
        raise AccessLogError("no start_time_unix_nano: no latency")
    if end < start:
        raise AccessLogError(f"end_time_unix_nano {end} is before start_time_unix_nano {start}")
    attrs = _attributes(span.attributes)
    status = _integer(attrs, "http.response.status_code", "http.status_code")
    if status is None:
        raise AccessLogError("no http.response.status_code (nor http.status_code)")
    if not 100 <= status <= 599:
        raise AccessLogError(f"http.response.status_code is not an HTTP status: {status}")
    route = _text(attrs, "http.route", "url.path")
    if route is None:
        target = _text(attrs, "http.target")
        route = None if target is None else target.split("?", 1)[0].split("#", 1)[0] or None
    host = _text(attrs, "server.address", "net.host.name", "http.host")
    host = None if host is None else _without_port(host)
    upstream = _text(resource, "host.name")
    if upstream is None:
        address, port = _text(attrs, "server.address"), _integer(attrs, "server.port")
        if address is None or port is None:
            address, port = _text(attrs, "net.host.name"), _integer(attrs, "net.host.port")
        if address is not None and port is not None:
            upstream = f"{address}:{port}"
    return AccessEntry(
        finished_at=EPOCH + timedelta(microseconds=end // 1000),
        request_id=request_id,
        status=status,
        latency_ms=(end - start) / 1e6,
        bytes_in=_integer(attrs, "http.request.body.size", "http.request_content_length") or 0,
        bytes_out=_integer(attrs, "http.response.body.size", "http.response_content_length") or 0,
        host=host,
        route=route,
        upstream=upstream,
        client_ip=_text(
            attrs,
            "client.address",
            "http.client_ip",
            "network.peer.address",
            "net.sock.peer.addr",
            "net.peer.ip",
        ),
    )


def _present(attrs: Mapping[str, AnyValue], names: tuple[str, ...]) -> tuple[str, AnyValue]:
    """The first attribute of `names` with a value (an empty string is no value)."""
    for name in names:
        value = attrs.get(name)
        if value is None:
            continue
        kind = value.WhichOneof("value")
        if kind is not None and (kind != "string_value" or value.string_value):
            return name, value
    return "", AnyValue()


def _text(attrs: Mapping[str, AnyValue], *names: str) -> str | None:
    _, value = _present(attrs, names)
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    return None


def _integer(attrs: Mapping[str, AnyValue], *names: str) -> int | None:
    """The first present attribute as an integer (int, integral double or decimal string)."""
    name, value = _present(attrs, names)
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "int_value":
        return value.int_value
    if kind == "double_value" and value.double_value.is_integer():
        return int(value.double_value)
    if kind == "string_value" and value.string_value.strip().isdecimal():
        return int(value.string_value)
    shown = json_format.MessageToJson(value, indent=None)
    raise AccessLogError(f"{name} is not an integer: {shown[:64]}")


def _without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


def _dead(
    span: Span, request_id: str, received_ms: int, reason: str, *, kind: ErrorKind = "invalid"
) -> DeadLetter:
    return dead_letter(
        COLLECT_TOPIC, -1, received_ms, request_id.encode(), span_json(span), kind, reason
    )


def span_json(span: Span) -> bytes:
    """The span in OTLP/JSON (hex ids, integer enums, lowerCamelCase), compact."""
    tree = json_format.MessageToDict(span, use_integers_for_enums=True)
    for obj, fields in [(tree, _SPAN_IDS), *((link, _LINK_IDS) for link in tree.get("links", []))]:
        for camel, _ in fields:
            if camel in obj:
                obj[camel] = base64.b64decode(obj[camel]).hex()
    return json.dumps(tree, separators=(",", ":")).encode()


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# --- the HTTP server ---------------------------------------------------------------------------


class _TooLargeError(Exception):
    pass


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` decoded from its `Content-Encoding` (gzip, possibly several members, or deflate:
    zlib-wrapped or raw), refusing more than `limit` bytes of output."""
    if encoding == "identity":
        return raw
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:  # deflate: RFC 9110 says zlib-wrapped; some clients send raw deflate
        wbits = zlib.MAX_WBITS if raw[:1] and raw[0] & 0x0F == 8 else -zlib.MAX_WBITS
    out = bytearray()
    data = raw
    try:
        while True:
            decoder = zlib.decompressobj(wbits)
            out += decoder.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise _TooLargeError
            if not decoder.eof:
                raise OtlpPayloadError(f"the {encoding} body is truncated")
            data = decoder.unused_data
            if encoding != "gzip" or not data:
                return bytes(out)
    except zlib.error as exc:
        raise OtlpPayloadError(f"the body is not valid {encoding} data: {exc}") from exc


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def status_body(code: int, message: str, media: str) -> bytes:
    """A `google.rpc.Status` (code, message) in protobuf or JSON, without googleapis-common-protos:
    `code` is field 1 (varint), `message` field 2 (string); `details` are not sent."""
    if media == PROTOBUF:
        text = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}).encode()


def _encode(message: ExportTraceServiceResponse, media: str) -> bytes:
    if media == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


class OtlpReceiver:
    """`POST /v1/traces` on `bind:port`: each decoded request's `OtlpBatch` is handed to
    `accept`, awaited one request at a time (never concurrently); it returns whether the batch is
    kept (False: refused, e.g. the disk buffer is full; the exporter is told to retry)."""

    def __init__(
        self,
        accept: Callable[[OtlpBatch], Awaitable[bool]],
        mapping: AccessMapping,
        fleet: Fleet,
        *,
        bind: str = "127.0.0.1",
        port: int = 4318,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock_ms: Callable[[], int] = wall_clock_ms,
        hash_ip: Callable[[str | None], str | None] | None = None,
    ) -> None:
        self.accept = accept
        self.hash_ip = hash_ip
        self.mapping = mapping
        self.fleet = fleet
        self.bind = bind
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.clock_ms = clock_ms
        self._runner: web.AppRunner | None = None
        self._accepting = asyncio.Lock()

    @property
    def label(self) -> str:
        """`otlp host:port` (the bound port once started), for logs and metrics."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"otlp {host}:{self.port}"

    async def start(self) -> int:
        """Listen; returns the bound port (`port` 0 picks a free one). `ConfigError` if the
        address cannot be bound."""
        if self._runner is not None:
            return self.port
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post(TRACES_PATH, self._traces)
        # auto_decompress off: _decompress bounds the decompressed size and answers 400/413
        runner = web.AppRunner(app, access_log=None, auto_decompress=False, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.bind, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"the OTLP receiver cannot listen on {self.bind}:{self.port} "
                f"({exc.strerror or exc}); give the otlp source another port"
            ) from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("%s: receiving traces on %s", self.label, TRACES_PATH)
        return self.port

    async def stop(self) -> None:
        """Stop listening (requests in flight are finished first, within aiohttp's grace)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        media = request.content_type.lower()
        if media not in (PROTOBUF, JSON):
            raw_type = request.headers.get("Content-Type", "")
            return _failure(415, OtlpContentTypeError(raw_type).reason, JSON)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding not in _ENCODINGS:
            return _failure(
                415, f"unsupported content encoding {encoding!r}: send gzip or none", media
            )
        too_large = f"the body is larger than {self.max_body_bytes} bytes"
        if (request.content_length or 0) > self.max_body_bytes:
            return _failure(413, too_large, media)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _failure(413, too_large, media)
        received_ms = self.clock_ms()
        try:
            batch = await asyncio.to_thread(self._batch_of, raw, encoding, media, received_ms)
        except _TooLargeError:
            return _failure(413, f"{too_large} once decompressed", media)
        except (OtlpPayloadError, OtlpContentTypeError) as exc:
            return _failure(400, exc.reason, media)
        except Exception:  # never crash on input: a bug here is logged and answered 500
            log.exception("%s: a request could not be decoded", self.label)
            return _failure(500, "internal error decoding the request", media)
        if batch.records or batch.dead_letters:
            async with self._accepting:
                try:
                    kept = await self.accept(batch)
                except Exception:  # not kept: the exporter retries, the cause is logged
                    log.exception("%s: a batch could not be kept", self.label)
                    kept = False
            if not kept:
                response = _failure(503, "the collector cannot keep this batch now: retry", media)
                response.headers["Retry-After"] = str(RETRY_AFTER_S)
                return response
        return web.Response(body=_encode(export_response(batch), media), content_type=media)

    def _batch_of(self, raw: bytes, encoding: str, media: str, received_ms: int) -> OtlpBatch:
        """Decompress, decode and map (in a worker thread: a 16 MiB body takes a while)."""
        body = _decompress(raw, encoding, self.max_body_bytes)
        request = decode_traces(body, media)
        return requests_of(
            request, self.mapping, self.fleet, received_ms=received_ms, hash_ip=self.hash_ip
        )


def _failure(status: int, reason: str, media: str) -> web.Response:
    body = status_body(_GRPC_CODE.get(status, 2), reason, media)
    return web.Response(status=status, body=body, content_type=media)
