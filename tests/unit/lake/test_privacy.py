"""No raw client IP in the lake, also where whole records are quoted: `IpPolicy.redact` on its own,
then `dead_letters` and `late_events` segments with and without a secret, and the request-log
landing of a record redacted from the lake (issue 11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.outputs import DeadLetter, LateEvent
from pipeline.contracts.records import RequestLog
from pipeline.lake import BY_NAME, IpPolicy, RollPolicy, SegmentBuffer
from pipeline.lake.privacy import REDACTED

SECRET = b"s3cret"
KEYED, DROP = IpPolicy(SECRET), IpPolicy()
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
IPS = ("198.51.100.23", "203.0.113.77", "2001:db8::beef:77", "::ffff:198.51.100.24")


def request(i: int, ip: str | None = IPS[0], **changes: object) -> bytes:
    record = RequestLog(
        finished_at=T0 + timedelta(seconds=i),
        request_id=f"r{i}",
        site_id="bog1",
        node_id="bog1-n01",
        service="checkout-api",
        team="payments",
        status=200,
        latency_ms=12.5,
        bytes_in=100,
        bytes_out=2000 + i,
        route="/pay",
        client_region="CO-DC",
        client_ip=ip,
    )
    doc = msgspec.to_builtins(record)
    doc.update(changes)
    return msgspec.json.encode(doc)


def hmac_token(ip: str) -> bytes:
    return b"ip-hmac:" + str(KEYED(ip)).encode()


def segment_tables(dataset: str, values: list[bytes], policy: IpPolicy) -> list[pa.Table]:
    buf = SegmentBuffer(BY_NAME[dataset], "t", 0, RollPolicy(), policy)
    for offset, value in enumerate(values):
        assert buf.add(offset, 1_772_000_000_000, value) is None
    segment = buf.take()
    assert segment is not None and segment.invalid == 0
    return [f.table for f in segment.files]


def text_of(tables: list[pa.Table]) -> str:
    return "\n".join(repr(t.to_pylist()) for t in tables)


# -- redact ---------------------------------------------------------------------------------------
def test_a_json_record_keeps_its_fields_and_gets_the_hash_the_request_log_lands() -> None:
    original = request(1, ip=IPS[1])
    redacted = KEYED.redact(original)
    doc = json.loads(redacted)
    assert "client_ip" not in doc
    landed = segment_tables("request_log", [original], KEYED)[0]
    assert doc["client_ip_hmac"] == landed.column("client_ip_hmac")[0].as_py() == KEYED(IPS[1])
    # In place of the raw IP; every other field as it was: the record can be reprocessed.
    assert list(doc) == [k.replace("client_ip", "client_ip_hmac") for k in json.loads(original)]
    assert msgspec.json.decode(redacted, type=RequestLog) == msgspec.structs.replace(
        msgspec.json.decode(original, type=RequestLog), client_ip=None
    )


def test_without_a_secret_the_ip_field_is_removed() -> None:
    doc = json.loads(DROP.redact(request(1)))
    assert "client_ip" not in doc and "client_ip_hmac" not in doc
    assert doc["request_id"] == "r1"


def test_a_null_or_non_string_client_ip_leaves_no_hash() -> None:
    for ip in (None, 42, {"nested": IPS[0]}):
        doc = json.loads(KEYED.redact(request(1, ip=None, client_ip=ip)))
        assert "client_ip" not in doc and "client_ip_hmac" not in doc


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        (b'{"finished_at":"2026-03-02T10:00:00Z","client_ip":"198.51.100.23","bytes_in":', IPS[0]),
        (b"\xff\xfe not utf-8, client 203.0.113.77\x00 then", IPS[1]),
        (b"from 203.0.113.77.", IPS[1]),
        (b"peer 203.0.113.77:8080", IPS[1]),
        (b"[2001:db8::beef:77]:443", IPS[2]),
        (b"mapped ::ffff:198.51.100.24 here", IPS[3]),
        (b"ip=2001:db8::beef:77", IPS[2]),
    ],
)
def test_addresses_in_any_bytes_become_their_hash_or_a_mark(text: bytes, ip: str) -> None:
    keyed = KEYED.redact(text)
    assert hmac_token(ip) in keyed and ip.encode() not in keyed
    dropped = DROP.redact(text)
    assert REDACTED in dropped and ip.encode() not in dropped
    assert keyed.replace(hmac_token(ip), REDACTED) == dropped


def test_an_address_glued_to_a_zone_or_inside_ipv6_is_still_found() -> None:
    assert DROP.redact(b"fe80::1%eth0 and 10.0.0.1") == b"ip-redacted%eth0 and ip-redacted"
    assert DROP.redact(b"12:34:198.51.100.23") == b"12:34:ip-redacted"  # not IPv6: its IPv4 is
    assert DROP.redact(b"010.000.000.001") == REDACTED  # leading zeros still name a host


@pytest.mark.parametrize(
    "text",
    [
        b"version 1.2.3, v2.10.1 and 1.2.3.4.5",
        b'{"at":"2026-03-02T10:00:00Z","t":"12:34:56","path":"std::io::Read"}',
        b"300.1.1.1 and 1.2.3.256 are no addresses",
        b"a:b:c and 1:2:3:4:5:6:7:8:9",
        b"Expected `int`, got `str` - at `$.bytes_in`",
    ],
)
def test_text_without_addresses_is_left_as_it_is(text: bytes) -> None:
    assert KEYED.redact(text) == text == DROP.redact(text)


def test_json_escapes_cannot_hide_an_address() -> None:
    hidden = (
        b'{"client_ip":"\\u0031\\u0039\\u0038.51.100.23","route":"/\\u0032\\u0030\\u0033.0.113.77"}'
    )
    doc = json.loads(KEYED.redact(hidden))
    assert doc == {"client_ip_hmac": KEYED(IPS[0]), "route": "/" + hmac_token(IPS[1]).decode()}


def test_json_nested_100000_deep_is_redacted_as_text_without_recursion_error() -> None:
    deep = b'{"client_ip":"198.51.100.23","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    out = KEYED.redact(deep)
    assert IPS[0].encode() not in out and hmac_token(IPS[0]) in out
    assert len(out) == len(deep) - len(IPS[0]) + len(hmac_token(IPS[0]))


def test_a_one_megabyte_value_is_redacted_in_place() -> None:
    big = request(1, route="/" + "x" * 1_000_000 + " 203.0.113.77")
    doc = json.loads(KEYED.redact(big))
    assert doc["route"].endswith(hmac_token(IPS[1]).decode()) and len(doc["route"]) > 10**6


_pieces = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(str.encode),
    st.sampled_from(IPS).map(str.encode),
    st.sampled_from([b"1.2.3", b"12:34:56", b'{"client_ip":', b"\\u0031", b"::", b"."]),
)
_delimiters = st.sampled_from([b" ", b'"', b",", b"[", b"]", b"\n", b"=", b"/", b"\xff"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_pieces, _delimiters), max_size=12), st.booleans())
def test_redacting_any_text_removes_every_delimited_address_and_is_idempotent(
    parts: list[tuple[bytes, bytes]], keyed: bool
) -> None:
    policy = KEYED if keyed else DROP
    text = b"".join(piece + delimiter for piece, delimiter in parts)
    once = policy.redact(text)
    assert policy.redact(once) == once
    for ip in IPS:
        # An address between delimiters is gone (one glued to other digits is another number).
        assert (b" " + ip.encode() + b" ") not in once


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(IPS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _json_values, max_size=6), st.sampled_from(IPS))
def test_a_json_document_stays_json_and_loses_every_address(
    doc: dict[str, object], ip: str
) -> None:
    doc["client_ip"] = ip
    out = KEYED.redact(msgspec.json.encode(doc))
    redacted = msgspec.json.decode(out)
    assert redacted["client_ip_hmac"] == KEYED(ip) and "client_ip" not in redacted
    assert not any(address in out.decode() for address in IPS)


# -- dead letters and late events in segments -----------------------------------------------------
def dead_letter(i: int, value: bytes, record_key: bytes | None, detail: str) -> bytes:
    letter = DeadLetter(
        key=f"mdc.request-log|0|{i}",
        source_topic="mdc.request-log",
        partition=0,
        offset=i,
        record_key=record_key,
        value=value,
        error_kind="malformed_json",
        error_detail=detail,
    )
    return msgspec.json.encode(letter)


def late_event(i: int, value: bytes, z: str = "Z") -> bytes:
    doc = msgspec.to_builtins(
        LateEvent(
            key=f"mdc.request-log|0|{i}",
            source_topic="mdc.request-log",
            partition=0,
            offset=i,
            record_key="bog1-n01",
            event_at=T0,
            closed_before=T0 + timedelta(minutes=2),
            reason="minute closed",
            late_energy_wh=None,
            value=value.decode("utf-8", "replace"),
        )
    )
    doc["event_at"] = doc["event_at"].replace("Z", z)
    return msgspec.json.encode(doc)


def _letters() -> list[bytes]:
    deep = b'{"client_ip":"203.0.113.77","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return [
        dead_letter(0, request(0, ip=IPS[0]), b"bog1-n01", "invalid: Expected `int`"),
        dead_letter(1, request(1, ip=IPS[1])[:-30], b"203.0.113.77", "truncated"),
        dead_letter(2, b"\xff\x00 2001:db8::beef:77", None, "malformed_json"),
        dead_letter(3, deep, b"k", "from ::ffff:198.51.100.24: JSON nested too deeply"),
        dead_letter(4, b"", None, "empty"),
    ]


@pytest.mark.parametrize("policy", [KEYED, DROP], ids=["secret", "no-secret"])
def test_dead_letters_land_without_raw_ips(policy: IpPolicy) -> None:
    (table,) = segment_tables("dead_letters", _letters(), policy)
    assert not any(ip in text_of([table]) for ip in IPS)
    values = table.column("value").to_pylist()
    first = json.loads(values[0])
    assert first.get("client_ip_hmac") == policy(IPS[0]) and "client_ip" not in first
    assert msgspec.json.decode(values[0], type=RequestLog).request_id == "r0"  # reprocessable
    assert values[4] == b""
    assert table.column("record_key").to_pylist()[:3] == [
        b"bog1-n01",
        policy.redact(b"203.0.113.77"),
        None,
    ]
    assert table.column("error_detail").to_pylist()[0] == "invalid: Expected `int`"


@pytest.mark.parametrize("policy", [KEYED, DROP], ids=["secret", "no-secret"])
@pytest.mark.parametrize("z", ["Z", "z"], ids=["arrow-reader", "struct-path"])
def test_late_events_land_without_raw_ips(policy: IpPolicy, z: str) -> None:
    # A lowercase `z` makes Arrow's JSON reader refuse the group: the Struct path redacts too.
    values = [late_event(i, request(i, ip=IPS[i % len(IPS)]), z) for i in range(8)]
    values.append(late_event(8, b'{"client_ip":"203.0.113.77","bytes_in":', z))
    (table,) = segment_tables("late_events", values, policy)
    assert table.num_rows == 9 and not any(ip in text_of([table]) for ip in IPS)
    landed = table.column("value").to_pylist()
    for i in range(8):
        doc = json.loads(landed[i])
        assert doc.get("client_ip_hmac") == policy(IPS[i % len(IPS)]) and "client_ip" not in doc
    assert landed[8] == policy.redact(b'{"client_ip":"203.0.113.77","bytes_in":').decode()


# -- a record redacted from the lake, reprocessed --------------------------------------------------
@pytest.mark.parametrize("z", ["Z", "z"], ids=["arrow-reader", "struct-path"])
def test_a_redacted_request_log_lands_the_hash_it_carries(z: str) -> None:
    def at(value: bytes) -> bytes:
        return value.replace(b'00Z"', b"00" + z.encode() + b'"')

    redacted = KEYED.redact(request(0, ip=IPS[1]))
    forged = request(1, ip=None, client_ip_hmac=IPS[0])  # a raw IP where a hash belongs
    both = request(2, ip=IPS[2], client_ip_hmac="0" * 32)  # the raw IP wins
    values = [at(v) for v in (redacted, forged, both, request(3, ip=None))]
    keyed = segment_tables("request_log", values, KEYED)
    assert keyed[0].column("client_ip_hmac").to_pylist() == [
        KEYED(IPS[1]),
        None,
        KEYED(IPS[2]),
        None,
    ]
    dropped = segment_tables("request_log", values, DROP)
    assert dropped[0].column("client_ip_hmac").to_pylist() == [None] * 4
    assert not any(ip in text_of(keyed + dropped) for ip in IPS)
