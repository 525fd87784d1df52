"""The OTLP/HTTP receiver on a real socket, fed by the real OpenTelemetry Python SDK and its
OTLP/HTTP exporter (protobuf, plain and gzip) and by raw aiohttp POSTs (JSON, garbage, the wrong
type, too large): the records `accept` gets, and the status codes and bodies the spec asks for.

No Kafka here. The receiver runs on the test's event loop; the SDK's exporter is synchronous
(requests), so it runs in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from pipeline.collect.access_log import AccessMapping, NodeRule, ServiceRule
from pipeline.collect.otlp import JSON, PROTOBUF, OtlpBatch, OtlpReceiver
from pipeline.fleet import Fleet, load_fleet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: 2026-03-02T12:00:00Z in Unix nanoseconds.
T0_NS = 1_772_452_800_000_000_000
RECEIVED_MS = 1_772_452_900_000

MAPPING = AccessMapping(
    nodes=[
        NodeRule(match="web-01", node_id="bog1-r1-n01"),
        NodeRule(match="web-02", node_id="sao1-r2-n01"),
    ],
    services=[
        ServiceRule(service="checkout-api", host="shop.example.co", route_prefix="/checkout"),
        ServiceRule(service="catalog-search", host="shop.example.co", route_prefix="/search"),
    ],
)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(None)


class Accepted:
    """An `accept` that records every batch and answers `answer`."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.batches: list[OtlpBatch] = []

    async def __call__(self, batch: OtlpBatch) -> bool:
        self.batches.append(batch)
        return self.answer


@asynccontextmanager
async def receiver(
    fleet: Fleet, accept: Callable[[OtlpBatch], Awaitable[bool]], **kw: Any
) -> AsyncIterator[str]:
    """A started receiver on a free port; yields its traces URL."""
    otlp = OtlpReceiver(accept, MAPPING, fleet, port=0, clock_ms=lambda: RECEIVED_MS, **kw)
    port = await otlp.start()
    assert port != 0 and otlp.label == f"otlp 127.0.0.1:{port}"
    try:
        yield f"http://127.0.0.1:{port}/v1/traces"
    finally:
        await otlp.stop()


def exporter(url: str, session: requests.Session | None = None, **kw: Any) -> OTLPSpanExporter:
    session = session or requests.Session()
    session.trust_env = False  # no proxy from the environment between the SDK and 127.0.0.1
    return OTLPSpanExporter(endpoint=url, session=session, **{"timeout": 5, **kw})


def provider(host_name: str) -> TracerProvider:
    return TracerProvider(
        resource=Resource.create({"service.name": "shop-frontend", "host.name": host_name})
    )


def server_span(
    tp: TracerProvider, route: str, start_ns: int, duration_ns: int, status: int = 200
) -> ReadableSpan:
    """One ended SERVER span with current HTTP semantic conventions and explicit times."""
    span = tp.get_tracer("tests.otlp").start_span(
        f"GET {route}",
        kind=SpanKind.SERVER,
        start_time=start_ns,
        attributes={
            "http.request.method": "GET",
            "http.route": route,
            "url.path": route,
            "http.response.status_code": status,
            "server.address": "shop.example.co",
            "server.port": 443,
            "client.address": "203.0.113.9",
            "http.response.body.size": 1500,
        },
    )
    span.end(end_time=start_ns + duration_ns)
    assert isinstance(span, ReadableSpan)
    return span


def request_id(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}-{context.span_id:016x}"


def test_sdk_server_spans_arrive_as_the_hand_computed_request_logs(fleet: Fleet) -> None:
    # (host.name, route, start offset, duration, status): three on web-01, one on web-02
    plan = [
        ("web-01", "/checkout/cart", 0, 12_500_000, 200),
        ("web-01", "/checkout/pay", 1_000_000_000, 250_000_000, 502),
        ("web-01", "/search", 2_000_000_000, 3_000_001, 200),
        ("web-02", "/search", 3_000_000_000, 1_000_000, 404),
    ]

    def send(url: str) -> list[ReadableSpan]:
        sent = []
        for host in ("web-01", "web-02"):
            tp = provider(host)
            tp.add_span_processor(BatchSpanProcessor(exporter(url)))
            for h, route, offset, duration, status in plan:
                if h == host:
                    sent.append(server_span(tp, route, T0_NS + offset, duration, status))
            # a client span in the same trace provider: counted, not a request
            client = tp.get_tracer("tests.otlp").start_span(
                "GET upstream", kind=SpanKind.CLIENT, start_time=T0_NS
            )
            client.end(end_time=T0_NS + 1000)
            assert tp.force_flush(10_000)
            tp.shutdown()
        return sent

    async def scenario() -> list[ReadableSpan]:
        async with receiver(fleet, accepted) as url:
            return await asyncio.to_thread(send, url)

    accepted = Accepted()
    sent = asyncio.run(scenario())
    assert [b.spans for b in accepted.batches] == [4, 2]  # one export per provider
    records = [r for b in accepted.batches for r in b.records]
    assert all(b.dead_letters == [] for b in accepted.batches)
    assert len(records) == 4
    assert [r.request_id for r in records] == [request_id(s) for s in sent]
    assert len({r.request_id for r in records}) == 4
    for record, (_, route, offset, duration, status) in zip(records, plan, strict=True):
        assert record.latency_ms == duration / 1e6
        assert record.finished_at == EPOCH + timedelta(
            microseconds=(T0_NS + offset + duration) // 1000
        )
        assert (record.route, record.status, record.bytes_out) == (route, status, 1500)
        assert record.client_ip == "203.0.113.9"
    assert [(r.node_id, r.site_id, r.service, r.team) for r in records] == [
        ("bog1-r1-n01", "bog1", "checkout-api", "payments"),
        ("bog1-r1-n01", "bog1", "checkout-api", "payments"),
        ("bog1-r1-n01", "bog1", "catalog-search", "search"),
        ("sao1-r2-n01", "sao1", "catalog-search", "search"),
    ]


def test_the_exporters_gzip_is_decompressed(fleet: Fleet) -> None:
    encodings: list[str | None] = []

    def send(url: str) -> tuple[SpanExportResult, str]:
        tp = provider("web-01")
        span = server_span(tp, "/checkout/cart", T0_NS, 7_000_000)
        session = requests.Session()
        session.hooks["response"].append(
            lambda r, *a, **k: encodings.append(r.request.headers.get("Content-Encoding"))
        )
        out = exporter(url, session, compression=Compression.Gzip)
        return out.export([span]), request_id(span)

    async def scenario() -> tuple[SpanExportResult, str]:
        async with receiver(fleet, accepted) as url:
            return await asyncio.to_thread(send, url)

    accepted = Accepted()
    result, rid = asyncio.run(scenario())
    assert result is SpanExportResult.SUCCESS
    assert encodings == ["gzip"]
    [batch] = accepted.batches
    assert [(r.request_id, r.latency_ms, r.service) for r in batch.records] == [
        (rid, 7.0, "checkout-api")
    ]


def test_a_refusing_accept_is_a_503_the_exporter_reports_as_failure(fleet: Fleet) -> None:
    def send(url: str) -> SpanExportResult:
        # Retry-After 5 s is longer than the exporter's 2 s timeout: it gives up after one try
        out = exporter(url, timeout=2)
        return out.export([server_span(provider("web-01"), "/checkout", T0_NS, 1_000_000)])

    async def scenario() -> tuple[SpanExportResult, int, str | None]:
        async with receiver(fleet, accepted) as url:
            result = await asyncio.to_thread(send, url)
            async with aiohttp.ClientSession() as http:
                body = (FIXTURES / "current_semconv.json").read_bytes()
                async with http.post(url, data=body, headers={"Content-Type": JSON}) as resp:
                    status = json.loads(await resp.read())
                    assert status == {"code": 14, "message": status["message"]}
                    return result, resp.status, resp.headers.get("Retry-After")

    accepted = Accepted(answer=False)
    result, status, retry_after = asyncio.run(scenario())
    assert result is SpanExportResult.FAILURE
    assert (status, retry_after) == (503, "5")
    assert len(accepted.batches) == 2  # offered once by the exporter, once by the POST


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, content_type: str, **headers: str
) -> tuple[int, str, bytes]:
    async with http.post(url, data=body, headers={"Content-Type": content_type, **headers}) as r:
        return r.status, r.content_type, await r.read()


def test_json_posts_get_json_answers_with_partial_success(fleet: Fleet) -> None:
    async def scenario() -> list[tuple[int, str, bytes]]:
        async with receiver(fleet, accepted) as url, aiohttp.ClientSession() as http:
            return [
                await post(http, url, (FIXTURES / f"{name}.json").read_bytes(), JSON)
                for name in ("current_semconv", "rejected_spans")
            ]

    accepted = Accepted()
    (ok_status, ok_type, ok_body), (part_status, part_type, part_body) = asyncio.run(scenario())
    assert (ok_status, ok_type, json.loads(ok_body)) == (200, JSON, {})  # partial_success unset
    assert (part_status, part_type) == (200, JSON)
    partial = json.loads(part_body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"  # int64: a string in JSON
    assert "no service rule matches host 'intranet.example.co'" in partial["errorMessage"]
    first, second = accepted.batches
    assert [r.request_id for r in first.records] == [
        "5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174"
    ]
    assert (len(second.records), len(second.dead_letters)) == (1, 2)
    assert {d.offset for d in second.dead_letters} == {RECEIVED_MS}


def test_a_protobuf_partial_success_is_a_protobuf_response(fleet: Fleet) -> None:
    from pipeline.collect.otlp import decode_traces

    body = decode_traces((FIXTURES / "rejected_spans.json").read_bytes(), JSON).SerializeToString()

    async def scenario() -> tuple[int, str, bytes]:
        async with receiver(fleet, Accepted()) as url, aiohttp.ClientSession() as http:
            return await post(
                http, url, gzip.compress(body), PROTOBUF, **{"Content-Encoding": "gzip"}
            )

    status, content_type, answer = asyncio.run(scenario())
    assert (status, content_type) == (200, PROTOBUF)
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer)
    assert response.partial_success.rejected_spans == 2


def test_undecodable_bodies_are_400_with_a_status_and_nothing_is_accepted(fleet: Fleet) -> None:
    async def scenario() -> list[tuple[int, str, bytes]]:
        async with receiver(fleet, accepted) as url, aiohttp.ClientSession() as http:
            return [
                await post(http, url, b"not a protobuf", PROTOBUF),
                await post(http, url, b'{"resourceSpans": [', JSON),
                await post(
                    http, url, b"\x1f\x8b not gzip", PROTOBUF, **{"Content-Encoding": "gzip"}
                ),
                await post(
                    http, url, gzip.compress(b"x" * 100)[:-8], JSON, **{"Content-Encoding": "gzip"}
                ),
            ]

    accepted = Accepted()
    (pb, pb_type, pb_body), (js, js_type, js_body), (gz, _, gz_body), (cut, _, cut_body) = (
        asyncio.run(scenario())
    )
    assert accepted.batches == []
    assert (pb, pb_type, js, js_type, gz, cut) == (400, PROTOBUF, 400, JSON, 400, 400)
    status = status_pb2.Status()
    status.ParseFromString(pb_body)
    assert status.code == 3
    assert status.message.startswith("not an OTLP protobuf ExportTraceServiceRequest")
    as_json = json_format.Parse(js_body, status_pb2.Status())
    assert (as_json.code, as_json.message[:8]) == (3, "not JSON")
    status.ParseFromString(gz_body)
    assert status.message.startswith("the body is not valid gzip data")
    assert json.loads(cut_body)["message"] == "the gzip body is truncated"


def test_other_types_sizes_paths_and_methods(fleet: Fleet) -> None:
    big = b'{"resourceSpans": []' + b" " * 4096 + b"}"

    async def scenario() -> dict[str, int]:
        async with (
            receiver(fleet, accepted, max_body_bytes=2048) as url,
            aiohttp.ClientSession() as http,
        ):
            got = {
                "text/plain": (await post(http, url, b"hello", "text/plain"))[0],
                "brotli": (await post(http, url, b"x", JSON, **{"Content-Encoding": "br"}))[0],
                "too large": (await post(http, url, big, JSON))[0],
                # 4 KiB of JSON in ~60 gzip bytes: too large once decompressed
                "gzip bomb": (
                    await post(http, url, gzip.compress(big), JSON, **{"Content-Encoding": "gzip"})
                )[0],
                "empty": (await post(http, url, b"", PROTOBUF))[0],
                "other path": (await post(http, url.replace("traces", "logs"), b"", PROTOBUF))[0],
            }
            async with http.get(url) as resp:
                got["GET"] = resp.status
            return got

    accepted = Accepted()
    assert asyncio.run(scenario()) == {
        "text/plain": 415,
        "brotli": 415,
        "too large": 413,
        "gzip bomb": 413,
        "empty": 200,  # an empty request is a success, with nothing to accept
        "other path": 404,
        "GET": 405,
    }
    assert accepted.batches == []


def test_a_port_in_use_is_a_clear_error(fleet: Fleet) -> None:
    from pipeline.errors import ConfigError

    async def scenario() -> None:
        first = OtlpReceiver(Accepted(), MAPPING, fleet, port=0)
        port = await first.start()
        try:
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
                await OtlpReceiver(Accepted(), MAPPING, fleet, port=port).start()
        finally:
            await first.stop()

    asyncio.run(scenario())


def test_an_accept_that_fails_keeps_nothing_and_asks_for_a_retry(fleet: Fleet) -> None:
    calls: list[OtlpBatch] = []

    async def broken(batch: OtlpBatch) -> bool:
        calls.append(batch)
        raise OSError(28, "No space left on device")

    async def scenario() -> tuple[int, str | None]:
        async with receiver(fleet, broken) as url, aiohttp.ClientSession() as http:
            body = (FIXTURES / "current_semconv.json").read_bytes()
            async with http.post(url, data=body, headers={"Content-Type": JSON}) as resp:
                return resp.status, resp.headers.get("Retry-After")

    assert asyncio.run(scenario()) == (503, "5")
    assert len(calls) == 1


def test_a_chunked_body_is_limited_too(fleet: Fleet) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024  # no Content-Length: the limit is found while reading

    async def scenario() -> int:
        async with (
            receiver(fleet, Accepted(), max_body_bytes=4096) as url,
            aiohttp.ClientSession() as http,
            http.post(url, data=chunks(), headers={"Content-Type": JSON}) as resp,
        ):
            return resp.status

    assert asyncio.run(scenario()) == 413


def test_deflate_zlib_wrapped_or_raw_is_read(fleet: Fleet) -> None:
    body = (FIXTURES / "current_semconv.json").read_bytes()
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = raw.compress(body) + raw.flush()

    async def scenario() -> list[int]:
        async with receiver(fleet, accepted) as url, aiohttp.ClientSession() as http:
            return [
                (await post(http, url, data, JSON, **{"Content-Encoding": "deflate"}))[0]
                for data in (zlib.compress(body), raw_deflate)
            ]

    accepted = Accepted()
    assert asyncio.run(scenario()) == [200, 200]
    assert [len(b.records) for b in accepted.batches] == [1, 1]
