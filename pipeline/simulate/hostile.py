"""Hostile records for the fuzz campaign: malformed, extreme and implausible variants of valid
traffic, each with what the pipeline must make of it (a dead-letter kind, or a late event).

Every variant is built from a valid record of the stream it is mixed into, so it carries that
record's key (it lands on a real partition, among the records it could disturb) and, for request
logs, a client IP from TEST-NET-2 (198.51.100.0/24) that must never reach a lake file.
`mix_hostile` inserts them after random valid records; the valid records are unchanged, so a run
with and without them must give the same numbers (tests/unit/test_hostile_records.py,
tests/integration/test_hostile_workers.py, bench/bench_hostile.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.contracts.topics import (
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
    NODE_TELEMETRY,
    REQUEST_LOG,
)
from pipeline.fleet.model import Fleet
from pipeline.simulate.generator import Envelope

Doc = dict[str, Any]
#: What a hostile record must become: a dead-letter `error_kind`, or `late` (a late event).
Expected = str

_NODE, _REQ = NODE_TELEMETRY.name, REQUEST_LOG.name
_FAC, _GRID = FACILITY_TELEMETRY.name, GRID_INTENSITY.name
_ALL = (_NODE, _REQ, _FAC, _GRID)
_TIME = {_NODE: "observed_at", _REQ: "finished_at", _FAC: "observed_at", _GRID: "valid_from"}
#: A number field per topic (the grid's is bounded by 5000, the others by physical limits).
_NUM = {
    _NODE: "power_w",
    _REQ: "latency_ms",
    _FAC: "facility_power_w",
    _GRID: "carbon_intensity_gco2e_per_kwh",
}
_INT = {_NODE: "net_rx_bytes", _REQ: "bytes_in"}
#: Depth of the nested-JSON attack: msgspec gives up (RecursionError) from about 1,000.
DEEP = 100_000
SHALLOW_DEEP = 2_000


@dataclass(frozen=True)
class Kind:
    """One kind of hostile record: the topics it applies to, what it must become, its maker."""

    name: str
    topics: tuple[str, ...]
    expected: Expected
    make: Callable[[bytes, str, Fleet, random.Random], bytes]
    #: Relative frequency in a mix (the deep-nesting bombs are 200 KB each: rare).
    weight: float = 1.0


def _doc(value: bytes) -> Doc:
    doc: Doc = msgspec.json.decode(value)
    return doc


def _enc(doc: Doc) -> bytes:
    return msgspec.json.encode(doc)


def _set(field_by_topic: dict[str, str], value: Any) -> Callable[..., bytes]:
    def make(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
        doc = _doc(raw)
        doc[field_by_topic[topic]] = value
        return _enc(doc)

    return make


def _splice(text: bytes) -> Callable[..., bytes]:
    """Set the record's number field to raw JSON text (what msgspec would not encode)."""

    def make(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
        doc = _doc(raw)
        name = _NUM[topic]
        doc[name] = 0.5
        return _enc(doc).replace(f'"{name}":0.5'.encode(), f'"{name}":'.encode() + text, 1)

    return make


def _year(year: int) -> Callable[[datetime, random.Random], datetime]:
    return lambda t, rng: t.replace(year=year, day=min(t.day, 28))


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _time_shift(target: Callable[[datetime, random.Random], datetime]) -> Callable[..., bytes]:
    """Move every time field of the record to `target(original)` (keeping a grid span)."""

    def make(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
        doc = _doc(raw)
        name = _TIME[topic]
        old = datetime.fromisoformat(doc[name])
        new = target(old, rng)
        doc[name] = _stamp(new)
        if topic == _GRID:
            doc["valid_to"] = _stamp(new + timedelta(hours=1))
        return _enc(doc)

    return make


def _nested(depth: int) -> Callable[..., bytes]:
    def make(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
        return raw[:-1] + b',"x-nested":' + b"[" * depth + b"]" * depth + b"}"

    return make


def _not_json(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    """Bytes no JSON parser accepts, whatever follows the prefix (never a newline)."""
    junk = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 40)))
    return rng.choice([b"\x00\xfe\xff", b"<html>", b"NaN", b"\xff", b"}{"]) + junk


def _truncated(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    """Cut inside a string value (cut after a number, msgspec may first see a bad value)."""
    quotes = [i for i, c in enumerate(raw) if c == ord('"') and raw[i - 1 : i] == b":"]
    return raw[: rng.choice(quotes) + rng.randrange(1, 4)]


def _invalid_utf8(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    """Bad UTF-8 inside the value of a required field (in an unknown field's name it would be
    skipped, and the record valid)."""
    name = b'"zone":"' if topic == _GRID else b'"site_id":"'
    return raw.replace(name, name + b"\xc3\x28\xff", 1)


def _nul(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    return raw.replace(b'",', b'\x00",', 1)


def _nan(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    return _splice(b"NaN")(raw, topic, fleet, rng)


def _array(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    return b"[" + raw + b"]"


def _huge_string(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc["request_id" if topic == _REQ else _TIME[topic]] = "x" * 1_000_000
    return _enc(doc)


def _missing(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc.pop(_TIME[topic])
    return _enc(doc)


def _wrong_type(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc[_NUM[topic]] = rng.choice([[], {"w": 1}, True, "n/a", "212", None])
    return _enc(doc)


def _grid_inverted(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc["valid_from"], doc["valid_to"] = doc["valid_to"], doc["valid_from"]
    return _enc(doc)


def _grid_forever(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc["valid_to"] = "2999-12-31T00:00:00Z"
    return _enc(doc)


def _unknown(field: str) -> Callable[..., bytes]:
    def make(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
        doc = _doc(raw)
        doc[field] = f"nosuch{field.replace('_', '')}{rng.randrange(1000)}"
        return _enc(doc)

    return make


def _team_mismatch(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc["team"] = next(t.team for t in fleet.teams if t.team != doc["team"])
    return _enc(doc)


def _other_site(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc["site_id"] = next(s.site_id for s in fleet.sites if s.site_id != doc["site_id"])
    return _enc(doc)


def _power_100x(raw: bytes, topic: str, fleet: Fleet, rng: random.Random) -> bytes:
    doc = _doc(raw)
    doc["power_w"] = min(100_000.0, fleet.node_by_id[doc["node_id"]].max_power_w * 100)
    return _enc(doc)


KINDS: tuple[Kind, ...] = (
    Kind("not_json", _ALL, "malformed_json", _not_json),
    Kind("truncated", _ALL, "malformed_json", _truncated),
    Kind("invalid_utf8", _ALL, "malformed_json", _invalid_utf8),
    Kind("nul_byte", _ALL, "malformed_json", _nul),
    Kind("nan_literal", _ALL, "malformed_json", _nan),
    Kind("nested_2k", _ALL, "malformed_json", _nested(SHALLOW_DEEP), weight=0.2),
    Kind("nested_100k", _ALL, "malformed_json", _nested(DEEP), weight=0.002),
    Kind("array", _ALL, "invalid", _array),
    Kind("huge_int", (_NODE, _REQ), "invalid", _set(_INT, 10**30)),
    Kind("int64_max", (_NODE, _REQ), "invalid", _set(_INT, 2**63 - 1)),
    Kind("float_1e308", _ALL, "invalid", _set(_NUM, 1e308)),
    Kind("float_1e309", _ALL, "invalid", _splice(b"1e309")),
    Kind("negative", _ALL, "invalid", _set(_NUM, -1.0)),
    Kind("year_9999", _ALL, "invalid", _time_shift(_year(9999))),
    Kind("year_1969", _ALL, "invalid", _time_shift(_year(1969))),
    Kind("huge_string", _ALL, "invalid", _huge_string, weight=0.01),
    Kind("missing_time", _ALL, "invalid", _missing),
    Kind("wrong_type", _ALL, "invalid", _wrong_type),
    Kind("grid_inverted", (_GRID,), "invalid", _grid_inverted),
    Kind("grid_forever", (_GRID,), "invalid", _grid_forever),
    Kind("year_2100", _ALL, "implausible_time", _time_shift(_year(2100))),
    Kind(
        "days_ahead",
        _ALL,
        "implausible_time",
        _time_shift(lambda t, r: datetime.now(UTC) + timedelta(days=r.uniform(9, 300))),
    ),
    Kind("unknown_node", (_NODE, _REQ), "unknown_reference", _unknown("node_id")),
    Kind("unknown_site", (_NODE, _REQ, _FAC), "unknown_reference", _unknown("site_id")),
    Kind("other_site", (_NODE, _REQ), "unknown_reference", _other_site),
    Kind("unknown_service", (_REQ,), "unknown_reference", _unknown("service")),
    Kind("unknown_team", (_REQ,), "unknown_reference", _unknown("team")),
    Kind("team_mismatch", (_REQ,), "unknown_reference", _team_mismatch),
    Kind("unknown_zone", (_GRID,), "unknown_reference", _unknown("zone")),
    Kind("power_100x", (_NODE,), "implausible_value", _power_100x),
    # Valid but decades late: a late event, as long as its partition has seen a record before it
    # (the variant follows the record it was made from, on the same partition, so it has).
    Kind("year_1971", (_NODE, _REQ), "late", _time_shift(_year(1971))),
)
KIND_BY_NAME = {k.name: k for k in KINDS}
#: Client IPs of hostile request logs: TEST-NET-2, never used by the simulator.
HOSTILE_IP_PREFIX = "198.51.100."


def hostile_envelope(kind: Kind, env: Envelope, fleet: Fleet, rng: random.Random) -> Envelope:
    """A hostile variant of the valid record `env` (same topic and key), tagged `hostile:<kind>`."""
    raw = env.value
    if env.topic.name == _REQ:
        doc = _doc(raw)
        doc["client_ip"] = f"{HOSTILE_IP_PREFIX}{rng.randrange(1, 255)}"
        raw = _enc(doc)
    value = kind.make(raw, env.topic.name, fleet, rng)
    return replace(env, value=value, fault=f"hostile:{kind.name}")


def mix_hostile(
    envelopes: Sequence[Envelope],
    fleet: Fleet,
    count: int,
    *,
    seed: int = 0,
    kinds: Iterable[str] | None = None,
) -> list[Envelope]:
    """`envelopes` with `count` hostile records inserted, each right after the valid record it
    was made from: a kind is drawn by weight, then a valid record of a topic it applies to."""
    rng = random.Random(seed)
    sources: dict[str, list[int]] = {}
    for i, env in enumerate(envelopes):
        if env.fault is None:
            sources.setdefault(env.topic.name, []).append(i)
    chosen = [KIND_BY_NAME[k] for k in kinds] if kinds is not None else list(KINDS)
    chosen = [k for k in chosen if any(t in sources for t in k.topics)]
    if not chosen:
        raise ValueError("no valid record to derive hostile records from")
    weights = [k.weight for k in chosen]
    after: dict[int, list[Envelope]] = {}
    for _ in range(count):
        kind = rng.choices(chosen, weights=weights)[0]
        topic = rng.choice([t for t in kind.topics if t in sources])
        i = rng.choice(sources[topic])
        after.setdefault(i, []).append(hostile_envelope(kind, envelopes[i], fleet, rng))
    out: list[Envelope] = []
    for i, env in enumerate(envelopes):
        out.append(env)
        out.extend(after.get(i, ()))
    return out


def expected_of(env: Envelope) -> Expected | None:
    """What a mixed-in hostile record must become (None for the valid ones)."""
    fault = env.fault or ""
    if not fault.startswith("hostile:"):
        return None
    return KIND_BY_NAME[fault.removeprefix("hostile:")].expected
