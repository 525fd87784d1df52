"""Access-log lines -> request records: nginx JSON (our log_format), Envoy JSON (default keys
and command operators), the node and service rules, and the lines that must be dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from pipeline.collect.access_log import (
    NGINX_LOG_FORMAT,
    AccessLogError,
    AccessMapping,
    NodeRule,
    ServiceRule,
    parse_envoy_json,
    parse_nginx_json,
    to_request_log,
)
from pipeline.fleet import Fleet, load_fleet

#: What nginx 1.22 writes with NGINX_LOG_FORMAT (escape=json): every value a string.
NGINX_LINE = (
    '{"msec":"1772452805.123","time_iso8601":"2026-03-02T07:00:05-05:00",'
    '"request_id":"7f1c2a9e4b3d4c5e8f9a0b1c2d3e4f50","status":"503","request_time":"0.251",'
    '"upstream_response_time":"0.100, 0.150","upstream_addr":"10.20.0.11:8080, 10.20.0.12:8080",'
    '"bytes_sent":"2048","request_length":"512","uri":"/checkout/cart","host":"shop.example.co",'
    '"remote_addr":"203.0.113.9"}'
)
#: Envoy's default JSON access log (envoy.access_loggers.file, json_format default keys).
ENVOY_LINE = json.dumps(
    {
        "start_time": "2026-03-02T12:00:04.900Z",
        "method": "POST",
        "path": "/fraud/score",
        "protocol": "HTTP/1.1",
        "response_code": 200,
        "response_flags": "-",
        "bytes_received": 300,
        "bytes_sent": 120,
        "duration": 37,
        "x-envoy-upstream-service-time": "35",
        "x-forwarded-for": "-",
        "user-agent": "curl/7.88.1",
        "x-request-id": "b2a6c0a4-5d1e-4f8b-9a3c-1e2d3f4a5b6c",
        "authority": "api.example.co",
        "upstream_host": "10.20.0.12:9000",
    }
)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet()


MAPPING = AccessMapping(
    nodes=[
        NodeRule(match="10.20.0.11:*", node_id="bog1-r1-n01"),
        NodeRule(match="10.20.0.12:*", node_id="bog1-r1-n02"),
    ],
    services=[
        ServiceRule(service="checkout-api", host="shop.example.co", route_prefix="/checkout"),
        ServiceRule(service="fraud-score", route_prefix="/fraud"),
    ],
)


def test_the_log_format_to_paste_is_valid_nginx_json_shape() -> None:
    body = NGINX_LOG_FORMAT.split("'", 1)[1].rsplit("'", 1)[0]
    keys = json.loads(body.replace("$", "")).keys()  # values are "$var" strings
    assert {"msec", "request_id", "status", "request_time", "upstream_addr", "uri", "host"} <= keys
    assert "escape=json" in NGINX_LOG_FORMAT


def test_an_nginx_line_finishes_at_msec_and_the_last_upstream_served_it(fleet: Fleet) -> None:
    entry = parse_nginx_json(NGINX_LINE)
    assert entry.finished_at == datetime(2026, 3, 2, 12, 0, 5, 123_000, tzinfo=UTC)
    assert (entry.status, entry.latency_ms) == (503, 251.0)
    assert entry.upstream == "10.20.0.12:8080"  # retried: the second upstream answered
    record = to_request_log(entry, MAPPING, fleet)
    assert (record.node_id, record.site_id, record.service, record.team) == (
        "bog1-r1-n02",
        "bog1",
        "checkout-api",
        fleet.service_by_name["checkout-api"].team,
    )
    assert (record.bytes_in, record.bytes_out, record.route) == (512, 2048, "/checkout/cart")
    assert record.client_ip == "203.0.113.9"  # the lake hashes or drops it


def test_without_msec_the_iso_time_with_its_offset_is_used() -> None:
    line = json.loads(NGINX_LINE)
    del line["msec"]
    entry = parse_nginx_json(json.dumps(line))
    assert entry.finished_at == datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)


def test_an_envoy_line_finishes_at_start_plus_duration(fleet: Fleet) -> None:
    entry = parse_envoy_json(ENVOY_LINE)
    assert entry.finished_at == datetime(2026, 3, 2, 12, 0, 4, 937_000, tzinfo=UTC)
    assert (entry.status, entry.latency_ms, entry.bytes_in, entry.bytes_out) == (
        200,
        37.0,
        300,
        120,
    )
    record = to_request_log(entry, MAPPING, fleet)
    assert (record.node_id, record.service) == ("bog1-r1-n02", "fraud-score")


def test_envoy_command_operators_as_keys_read_the_same() -> None:
    operators = {
        "START_TIME": "2026-03-02T12:00:04.900Z",
        "DURATION": "37",
        "RESPONSE_CODE": "200",
        "BYTES_RECEIVED": "300",
        "BYTES_SENT": "120",
        "X-REQUEST-ID": "b2a6c0a4-5d1e-4f8b-9a3c-1e2d3f4a5b6c",
        "UPSTREAM_HOST": "10.20.0.12:9000",
        ":AUTHORITY": "api.example.co",
        "PATH": "/fraud/score",
    }
    assert parse_envoy_json(json.dumps(operators)) == parse_envoy_json(ENVOY_LINE)


def _nginx(**changes: object) -> str:
    line = json.loads(NGINX_LINE)
    line.update(changes)
    return json.dumps({k: v for k, v in line.items() if v is not None})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json at all", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        (_nginx(request_time="-"), "no request_time"),
        (_nginx(request_time="abc"), "request_time is not a number"),
        (_nginx(request_time="-1"), "request_time out of range"),
        (_nginx(status="999"), "not an HTTP status"),
        (_nginx(request_id=""), "no request_id"),
        (_nginx(msec=None, time_iso8601="2026-03-02T12:00:05"), "no UTC offset"),
        (_nginx(msec=None, time_iso8601=None), "cannot tell when it finished"),
        (_nginx(request_time="1e400"), "out of range"),
    ],
)
def test_a_line_that_makes_no_request_says_why(line: str, reason: str) -> None:
    with pytest.raises(AccessLogError, match=reason):
        parse_nginx_json(line)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"upstream_addr": "10.9.9.9:80", "host": "elsewhere"}, "no node rule matches"),
        ({"uri": "/unknown"}, "no service rule matches host 'shop.example.co' route '/unknown'"),
        ({"request_time": "100000"}, "outside the request-log contract"),  # > a day, in ms
    ],
)
def test_an_unmapped_or_impossible_request_is_a_dead_letter(
    fleet: Fleet, changes: dict[str, str], reason: str
) -> None:
    entry = parse_nginx_json(_nginx(**changes))
    with pytest.raises(AccessLogError, match=reason):
        to_request_log(entry, MAPPING, fleet)


def test_rules_naming_what_the_fleet_lacks_are_reported(fleet: Fleet) -> None:
    mapping = msgspec.convert(
        {
            "nodes": [{"match": "10.*", "node_id": "no-such-node"}],
            "services": [{"service": "no-such-service"}],
        },
        AccessMapping,
    )
    assert mapping.problems(fleet) == [
        ("nodes[0].node_id", "'no-such-node' is not in the fleet"),
        ("services[0].service", "'no-such-service' is not in the fleet"),
    ]


def test_the_readme_ships_the_log_format_that_is_parsed() -> None:
    """The line users paste is the one the tests run nginx with (tests/support/nginx.py)."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    assert NGINX_LOG_FORMAT in readme
