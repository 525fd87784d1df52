"""OTLP trace payloads -> request records: protobuf built from the proto classes and OTLP/JSON
fixtures (hex ids, nanoseconds as strings), current and old HTTP semantic conventions, the spans
that are ignored, the ones that are dead letters, and the payloads that are refused whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from pipeline.collect.access_log import AccessMapping, NodeRule, ServiceRule
from pipeline.collect.otlp import (
    JSON,
    PROTOBUF,
    OtlpContentTypeError,
    OtlpPayloadError,
    decode_traces,
    export_response,
    requests_of,
    span_json,
    status_body,
)
from pipeline.fleet import Fleet, load_fleet

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "otlp"
RECEIVED_MS = 1_772_452_806_000
SERVER = Span.SpanKind.SPAN_KIND_SERVER
#: 2026-03-02T12:00:05.123Z in Unix nanoseconds.
START_NS = 1_772_452_805_123_000_000

MAPPING = AccessMapping(
    nodes=[
        NodeRule(match="web-01", node_id="bog1-r1-n01"),  # the resource's host.name
        NodeRule(match="10.20.0.12:*", node_id="bog1-r1-n02"),  # server.address:server.port
    ],
    services=[
        ServiceRule(service="checkout-api", host="shop.example.co", route_prefix="/checkout"),
        ServiceRule(service="fraud-score", route_prefix="/fraud"),
    ],
)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(None)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def attr(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def server_span(
    attributes: dict[str, str | int | float] | None = None,
    *,
    trace_id: bytes = bytes(range(1, 17)),
    span_id: bytes = bytes(range(1, 9)),
    start: int = START_NS,
    end: int = START_NS + 42_000_000,
    kind: Span.SpanKind.ValueType = SERVER,
) -> Span:
    attributes = (
        {
            "http.route": "/checkout/pay",
            "http.response.status_code": 200,
            "server.address": "shop.example.co",
        }
        if attributes is None
        else attributes
    )
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        name="span",
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[attr(k, v) for k, v in attributes.items()],
    )


def export(*spans: Span, host_name: str | None = "web-01") -> ExportTraceServiceRequest:
    resource = [attr("service.name", "checkout")]
    if host_name is not None:
        resource.append(attr("host.name", host_name))
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=resource),
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    )


def test_a_protobuf_request_gives_the_hand_checked_request_log(fleet: Fleet) -> None:
    span = server_span(
        {
            "http.request.method": "POST",
            "url.path": "/checkout/pay/7",
            "http.route": "/checkout/pay/{order}",
            "http.response.status_code": 201,
            "server.address": "shop.example.co",
            "server.port": 443,
            "client.address": "203.0.113.9",
            "http.request.body.size": 700,
            "http.response.body.size": 90,
        },
        start=START_NS,
        end=START_NS + 87_654_321,  # 87.654321 ms later
    )
    body = export(span).SerializeToString()
    batch = requests_of(decode_traces(body, PROTOBUF), MAPPING, fleet, received_ms=RECEIVED_MS)
    assert (batch.spans, batch.dead_letters) == (1, [])
    [record] = batch.records
    assert record.finished_at == datetime(2026, 3, 2, 12, 0, 5, 210_654, tzinfo=UTC)  # floored µs
    assert record.latency_ms == 87.654321
    assert record.request_id == "0102030405060708090a0b0c0d0e0f10-0102030405060708"
    assert (record.status, record.route) == (201, "/checkout/pay/{order}")  # the template
    # host.name web-01 is node bog1-r1-n01 (bog1); shop.example.co /checkout is checkout-api
    assert (record.node_id, record.site_id, record.service, record.team) == (
        "bog1-r1-n01",
        "bog1",
        "checkout-api",
        "payments",
    )
    assert (record.bytes_in, record.bytes_out, record.client_ip) == (700, 90, "203.0.113.9")


def test_the_json_fixture_reads_hex_ids_and_string_nanoseconds(fleet: Fleet) -> None:
    request = decode_traces(fixture("current_semconv"), "application/json; charset=utf-8")
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")  # not base64
    assert span.links[0].span_id == bytes.fromhex("b7ad6b7169203331")
    assert request.resource_spans[0].scope_spans[0].spans[1].parent_span_id == span.span_id
    batch = requests_of(request, MAPPING, fleet, received_ms=RECEIVED_MS)
    assert (batch.spans, len(batch.records), batch.dead_letters) == (3, 1, [])  # client, internal
    [record] = batch.records
    assert record.request_id == "5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174"
    # 1772452805.123 s start, 251.50025 ms to 1772452805.374500250 s
    assert record.finished_at == datetime(2026, 3, 2, 12, 0, 5, 374_500, tzinfo=UTC)
    assert record.latency_ms == 251.50025
    assert (record.status, record.route, record.node_id, record.service) == (
        503,
        "/checkout/cart/{cart_id}",
        "bog1-r1-n01",
        "checkout-api",
    )
    assert (record.bytes_in, record.bytes_out, record.client_ip) == (512, 2048, "203.0.113.9")


def test_json_and_protobuf_decode_to_the_same_message() -> None:
    from_json = decode_traces(fixture("current_semconv"), JSON)
    assert decode_traces(from_json.SerializeToString(), PROTOBUF) == from_json


def test_old_semantic_conventions_map_the_same(fleet: Fleet) -> None:
    batch = requests_of(decode_traces(fixture("old_semconv"), JSON), MAPPING, fleet, received_ms=0)
    [record] = batch.records
    assert record.request_id == "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
    assert record.finished_at == datetime(2026, 3, 2, 12, 0, 4, 937_000, tzinfo=UTC)
    assert (record.status, record.latency_ms) == (200, 37.0)  # http.status_code
    assert record.route == "/fraud/score"  # http.target without its query and fragment
    # no host.name on the resource: the upstream is net.host.name:net.host.port
    assert (record.node_id, record.service) == ("bog1-r1-n02", "fraud-score")
    assert (record.bytes_in, record.bytes_out) == (300, 120)  # http.*_content_length
    assert record.client_ip == "198.51.100.7"  # net.sock.peer.addr


def test_the_old_host_attribute_loses_its_port(fleet: Fleet) -> None:
    mapping = AccessMapping(
        nodes=[NodeRule(match="api.example.co", node_id="mex1-r1-n01")],  # matched by host
        services=[ServiceRule(service="auth", host="api.example.co")],
    )
    span = server_span({"http.status_code": "401", "http.host": "api.example.co:8443"})
    [record] = requests_of(export(span, host_name=None), mapping, fleet, received_ms=0).records
    assert (record.node_id, record.site_id, record.service, record.team) == (
        "mex1-r1-n01",
        "mex1",
        "auth",
        "identity",
    )
    assert (record.status, record.route, record.bytes_in, record.client_ip) == (401, None, 0, None)


def test_current_attributes_win_over_old_ones(fleet: Fleet) -> None:
    span = server_span(
        {
            "http.response.status_code": 204,
            "http.status_code": 500,
            "http.route": "/checkout/a",
            "http.target": "/fraud/b",
            "server.address": "shop.example.co",
            "http.host": "other.example.co",
            "http.response.body.size": 5,
            "http.response_content_length": 6,
        }
    )
    [record] = requests_of(export(span), MAPPING, fleet, received_ms=0).records
    assert (record.status, record.route, record.service, record.bytes_out) == (
        204,
        "/checkout/a",
        "checkout-api",
        5,
    )


def test_spans_of_other_kinds_are_counted_and_ignored(fleet: Fleet) -> None:
    kinds = [k for k in Span.SpanKind.values() if k != SERVER]
    assert len(kinds) == 5  # unspecified, internal, client, producer, consumer
    spans = [server_span(kind=k, span_id=bytes([9, 9, 9, 9, 9, 9, 9, k])) for k in kinds]
    batch = requests_of(export(*spans), MAPPING, fleet, received_ms=RECEIVED_MS)
    assert (batch.spans, batch.records, batch.dead_letters) == (5, [], [])
    assert not export_response(batch).HasField("partial_success")


def test_an_unmapped_server_span_is_a_dead_letter_with_the_reason(fleet: Fleet) -> None:
    request = decode_traces(fixture("rejected_spans"), JSON)
    batch = requests_of(request, MAPPING, fleet, received_ms=RECEIVED_MS)
    assert [r.request_id for r in batch.records] == [
        "11111111111111111111111111111111-1111111111111111"
    ]
    unmapped, no_status = batch.dead_letters
    assert unmapped.record_key == b"22222222222222222222222222222222-2222222222222222"
    assert unmapped.error_detail == (
        "no service rule matches host 'intranet.example.co' route '/admin'"
    )
    assert (unmapped.source_topic, unmapped.partition, unmapped.offset) == (
        "collect",
        -1,
        RECEIVED_MS,
    )
    assert unmapped.error_kind == "invalid"
    value = json.loads(unmapped.value)  # the span as OTLP/JSON, its IP left for the caller
    assert (value["traceId"], value["spanId"], value["kind"]) == ("2" * 32, "2" * 16, 2)
    assert {"key": "client.address", "value": {"stringValue": "192.0.2.44"}} in value["attributes"]
    assert no_status.error_detail == "no http.response.status_code (nor http.status_code)"
    response = export_response(batch)
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == (
        "2 of 3 server spans rejected (kept as dead letters): no service rule matches host "
        "'intranet.example.co' route '/admin'; no http.response.status_code (nor "
        "http.status_code)"
    )


def test_a_dead_letters_value_decodes_back_to_the_span() -> None:
    span = server_span()
    span.parent_span_id = bytes.fromhex("a0a1a2a3a4a5a6a7")
    span.links.add(trace_id=bytes(range(16)), span_id=bytes(range(8)))
    wrapped = {"resourceSpans": [{"scopeSpans": [{"spans": [json.loads(span_json(span))]}]}]}
    again = decode_traces(json.dumps(wrapped).encode(), JSON)
    assert again.resource_spans[0].scope_spans[0].spans[0] == span


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"end": 0}, "no end_time_unix_nano: the span never finished"),
        ({"start": 0}, "no start_time_unix_nano: no latency"),
        (
            {"end": START_NS - 1},
            f"end_time_unix_nano {START_NS - 1} is before start_time_unix_nano {START_NS}",
        ),
        ({"attributes": {"http.route": "/checkout"}}, "no http.response.status_code"),
        (
            {"attributes": {"http.response.status_code": 700}},
            "http.response.status_code is not an HTTP status: 700",
        ),
        (
            {"attributes": {"http.response.status_code": "OK"}},
            'http.response.status_code is not an integer: {"stringValue": "OK"}',
        ),
        ({"trace_id": bytes(16)}, "trace_id is not 16 bytes, not all zero"),
        ({"span_id": b"\x01\x02"}, "span_id is not 8 bytes, not all zero"),
        (
            {"attributes": {"http.response.status_code": 200, "server.address": "x.example"}},
            "no service rule matches host 'x.example' route '/'",
        ),
        (
            {"end": START_NS + 86_400_000_000_001},  # longer than a day: the contract's limit
            "outside the request-log contract",
        ),
    ],
)
def test_an_invalid_server_span_is_a_dead_letter(
    fleet: Fleet, changes: dict[str, Any], reason: str
) -> None:
    batch = requests_of(export(server_span(**changes)), MAPPING, fleet, received_ms=RECEIVED_MS)
    assert batch.records == []
    [dead] = batch.dead_letters
    assert dead.error_detail.startswith(reason)
    assert dead.error_kind == "invalid"


def test_a_span_from_a_machine_no_rule_names_is_a_dead_letter(fleet: Fleet) -> None:
    batch = requests_of(export(server_span(), host_name="web-99"), MAPPING, fleet, received_ms=0)
    [dead] = batch.dead_letters
    assert dead.error_detail == "no node rule matches upstream 'web-99' or host 'shop.example.co'"


def test_a_resent_batch_makes_the_same_request_ids(fleet: Fleet) -> None:
    body = fixture("current_semconv")
    first, again = (
        requests_of(decode_traces(body, JSON), MAPPING, fleet, received_ms=ms) for ms in (1, 2)
    )
    assert first.records == again.records  # same ids: the resend deduplicates downstream


def test_otlp_json_variants_the_spec_allows_are_read() -> None:
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "ABCDEF0123456789abcdef0123456789",
                                    "spanId": "0123456789ABCDEF",
                                    "kind": "SPAN_KIND_SERVER",  # a name, as protobuf's JSON allows
                                    "startTimeUnixNano": 1772452805123000000,  # a number
                                    "endTimeUnixNano": "1772452805124000000",
                                    "droppedEventsCount": 3,
                                    "someFutureField": [1, 2],
                                }
                            ]
                        }
                    ],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.27.0",
                }
            ],
            "someFutureTopLevelField": {},
        }
    ).encode()
    span = decode_traces(body, "Application/JSON").resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "abcdef0123456789abcdef0123456789"
    assert (span.kind, span.end_time_unix_nano - span.start_time_unix_nano) == (SERVER, 1_000_000)


def test_an_empty_request_is_valid_and_makes_nothing(fleet: Fleet) -> None:
    for body, media in ((b"", PROTOBUF), (b"{}", JSON), (b'{"resourceSpans": []}', JSON)):
        batch = requests_of(decode_traces(body, media), MAPPING, fleet, received_ms=0)
        assert (batch.spans, batch.records, batch.dead_letters) == (0, [], [])


@pytest.mark.parametrize(
    ("body", "media", "reason"),
    [
        (b"not a protobuf", PROTOBUF, "not an OTLP protobuf ExportTraceServiceRequest"),
        (b"\x0a\x05abc", PROTOBUF, "not an OTLP protobuf ExportTraceServiceRequest"),  # truncated
        (b'{"resourceSpans": [', JSON, "not JSON"),
        (b"\xff\xfe\x00garbage", JSON, "not JSON"),
        (b"[1, 2]", JSON, "a JSON object is expected, got list"),
        (b'{"resourceSpans": 5}', JSON, "not an OTLP/JSON ExportTraceServiceRequest"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            JSON,
            "not an OTLP/JSON ExportTraceServiceRequest",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": '
            b'"W47/95gDgQPSabYzgT/GDA=="}]}]}]}',  # base64, as plain protobuf JSON would have it
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId is not hex",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abc"}]}]}]}',  # odd length
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0].spanId is not hex",
        ),
        (b"[" * 100_000 + b"]" * 100_000, JSON, "JSON nested too deeply"),
    ],
)
def test_an_undecodable_payload_is_refused_whole(body: bytes, media: str, reason: str) -> None:
    with pytest.raises(OtlpPayloadError) as caught:
        decode_traces(body, media)
    assert reason in caught.value.reason
    assert len(caught.value.reason) <= 500


def test_an_unknown_content_type_is_its_own_error() -> None:
    with pytest.raises(OtlpContentTypeError) as caught:
        decode_traces(fixture("current_semconv"), "text/plain")
    assert not isinstance(caught.value, OtlpPayloadError)  # 415, not 400
    assert caught.value.reason == (
        "unsupported content type 'text/plain': send application/x-protobuf or application/json"
    )


def test_the_status_body_is_a_google_rpc_status_in_either_encoding() -> None:
    status = status_pb2.Status()
    status.ParseFromString(status_body(3, "bad span ✗" * 20, PROTOBUF))  # a 2-byte length
    assert (status.code, status.message) == (3, "bad span ✗" * 20)
    as_json = json_format.Parse(status_body(14, "retry", JSON), status_pb2.Status())
    assert (as_json.code, as_json.message) == (14, "retry")


VALID_PROTOBUF = decode_traces(fixture("current_semconv"), JSON).SerializeToString()


@settings(max_examples=300)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        # a valid request with a few bytes changed: often still decodes, to odd values
        st.lists(
            st.tuples(st.integers(0, len(VALID_PROTOBUF) - 1), st.integers(0, 255)), max_size=6
        ).map(lambda edits: _edited(VALID_PROTOBUF, edits)),
    ),
    media=st.sampled_from([PROTOBUF, JSON]),
)
def test_no_body_makes_anything_but_a_batch_or_a_payload_error(
    fleet: Fleet, body: bytes, media: str
) -> None:
    try:
        request = decode_traces(body, media)
    except OtlpPayloadError as exc:
        assert exc.reason
        return
    batch = requests_of(request, MAPPING, fleet, received_ms=RECEIVED_MS)
    assert batch.spans >= batch.server_spans
    assert all(d.error_kind == "invalid" for d in batch.dead_letters)
    export_response(batch).SerializeToString()


def _edited(body: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(body)
    for at, byte in edits:
        out[at] = byte
    return bytes(out)
