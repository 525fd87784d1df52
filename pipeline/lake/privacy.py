"""`client_ip` never lands raw: it becomes a keyed hash (HMAC-SHA256) or is dropped - in every
dataset, dead letters and late events included.

With a secret (`MICRODC_LAKE_IP_SECRET` or `--ip-secret`), the lake holds `client_ip_hmac`: the
first 16 bytes of HMAC-SHA256(secret, ip) as hex - the same client maps to the same value, so
analysts can count distinct clients, but nobody without the secret can recover or confirm an IP
(a plain hash of the 2^32 IPv4 addresses is reversed in seconds). Without a secret the column
is null: dropping is the safe default.

Records quoted whole (`dead_letters.value`, `late_events.value`) and text that may quote one
(`dead_letters.record_key`, `dead_letters.error_detail`) land through `IpPolicy.redact`:
- a well-formed JSON document is decoded (msgspec's depth limit: one nested deeper than the
  interpreter's recursion limit is handled as text below), a top-level `client_ip` of an object
  is replaced in place by `client_ip_hmac` - the very hash `request_log` lands, so a record
  reprocessed from the lake joins the same client - or removed without a secret, and the
  document is re-encoded (compact, no `\\u` escapes, so the scan below sees every string);
- then any IPv4/IPv6 address anywhere in the text - nested values, string values, malformed,
  truncated or non-UTF-8 bytes - becomes `ip-hmac:<the same hex>` (or `ip-redacted`). A
  precompiled regex finds candidates and `ipaddress` confirms IPv6 ones (IPv4: four octets
  <= 255, leading zeros included), so `1.2.3`, `v2.10.1`, `12:34:56` and `1.2.3.4.5` stay.

How a dead letter stays reprocessable: the Kafka topic `mdc.dead-letters` keeps the exact bytes
(it sits inside the same trust boundary as the input topics, which carry raw IPs anyway, and
has their retention); the lake keeps the redacted value, which for a JSON record is the same
record with `client_ip_hmac` instead of `client_ip` - and the request-log landing accepts that
(a record carrying `client_ip_hmac` and no `client_ip` lands the hash as is, if it is one; with
no secret it lands null like any other). Limits: an address spelled with `\\u` escapes inside
bytes that are not JSON, or glued to other digits (`5203.0.113.7`), is not recognised; an
address-like version string with four parts (`1.2.3.4`) is redacted.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

IP_SECRET_ENV = "MICRODC_LAKE_IP_SECRET"
#: The raw IP field of request logs and what replaces it in the lake.
RAW_IP, HASHED_IP = "client_ip", "client_ip_hmac"
#: Distinct IPs remembered per writer (clients repeat); cleared when full.
_CACHE_MAX = 100_000
#: What replaces an address found in text without a secret.
REDACTED = b"ip-redacted"

_V4 = rb"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
#: IPv4: not glued to digits (`1.2.3.4.5` is no address). IPv6 (optionally ending in an IPv4):
#: not inside a word, so `std::io` or a timestamp's `T12:34:56` are not even candidates.
_V4_ONLY = re.compile(rb"(?<![0-9])(?<![0-9]\.)" + _V4 + rb"(?![0-9])(?!\.[0-9])")
_CANDIDATE = re.compile(
    rb"(?<![0-9A-Za-z:.])(?P<v6>(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" + _V4 + rb"|[0-9A-Fa-f]{0,4}))"
    rb"(?![0-9A-Za-z:])"
    rb"|" + _V4_ONLY.pattern
)
#: Fast pre-filters (literal-led, so `re` skips ahead in C; one alternation would be 2.5x
#: slower): every candidate above holds two dots around 1-3 digits or two colons around 0-4
#: hex digits. Only the token around a hint (a run of letters, digits, `.` and `:`: all that
#: the lookarounds look at) is then matched exactly.
_HINTS = (re.compile(rb"\.[0-9]{1,3}\.[0-9]{1,3}\."), re.compile(rb":[0-9A-Fa-f]{0,4}:"))
_TOKEN_CHARS = frozenset(b"0123456789:." + bytes(range(65, 91)) + bytes(range(97, 123)))
#: Token characters to `t`, the rest to a space: token bounds by `find` on the translation.
_TOKENS = bytes(ord("t") if c in _TOKEN_CHARS else ord(" ") for c in range(256))
_HASH = re.compile(r"[0-9a-f]{32}")
_RAW_IP_KEY = RAW_IP.encode()
_json_encoder = msgspec.json.Encoder()
#: Ways a document can fail to round-trip through msgspec (then it is redacted as text).
_JSON_ERRORS = (msgspec.DecodeError, msgspec.EncodeError, RecursionError, UnicodeError)


@dataclass
class IpPolicy:
    """`secret=None` drops IPs; otherwise they are replaced by their keyed hash."""

    secret: bytes | None = None
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def mode(self) -> str:
        return "hmac-sha256" if self.secret else "drop"

    def __call__(self, ip: str | None) -> str | None:
        if ip is None or self.secret is None:
            return None
        hashed = self._cache.get(ip)
        if hashed is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            digest = hmac.digest(self.secret, ip.encode(), "sha256")
            hashed = self._cache[ip] = digest[:16].hex()
        return hashed

    def carried(self, hashed: object) -> str | None:
        """A `client_ip_hmac` a record already carries (one redacted from the lake and
        reprocessed): kept if it has the shape of a hash, so nothing else lands in the column."""
        if self.secret is None or not isinstance(hashed, str) or not _HASH.fullmatch(hashed):
            return None
        return hashed

    def redact(self, value: bytes) -> bytes:
        """`value` without a raw IP (see the module): what the lake stores of a quoted record."""
        if b"\\" in value or _RAW_IP_KEY in value:
            value = self._redact_json(value)
        return self._redact_addresses(value)

    def redact_text(self, value: str) -> str:
        """`redact` for text columns."""
        # surrogatepass: a lone surrogate survives (the column conversion then refuses it).
        return self.redact(value.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")

    def _redact_json(self, value: bytes) -> bytes:
        """A JSON document with its top-level `client_ip` hashed or dropped, re-encoded;
        `value` unchanged if it is no JSON (or nested too deep to decode)."""
        try:
            doc = msgspec.json.decode(value)
            if isinstance(doc, dict) and RAW_IP in doc:
                doc = self._hashed_ip_field(doc)
            return _json_encoder.encode(doc)
        except _JSON_ERRORS:
            return value

    def _hashed_ip_field(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with `client_ip` replaced, in place, by `client_ip_hmac` (or removed)."""
        raw = doc[RAW_IP]
        hashed = self(raw) if isinstance(raw, str) else None
        out: dict[str, Any] = {}
        for key, item in doc.items():
            if key == RAW_IP:
                if hashed is not None:
                    out[HASHED_IP] = hashed
            elif key != HASHED_IP:
                out[key] = item
        return out

    def _redact_addresses(self, value: bytes) -> bytes:
        """Every address in `value` replaced; `value` itself when no hint of one is found."""
        if all(hint.search(value) is None for hint in _HINTS):
            return value
        hints = sorted(m.start() for hint in _HINTS for m in hint.finditer(value))
        marks = value.translate(_TOKENS)
        parts: list[bytes] = []
        done = 0
        for at in hints:
            if at < done:
                continue  # in a token already redacted
            start = marks.rfind(b" ", 0, at) + 1
            end = marks.find(b" ", at)
            end = len(value) if end < 0 else end
            parts += (value[done:start], _CANDIDATE.sub(self._replace_match, value[start:end]))
            done = end
        parts.append(value[done:])
        return b"".join(parts)

    def _replace_match(self, match: re.Match[bytes]) -> bytes:
        token = match[0]
        if match["v6"] is None:
            return self._replacement(token) if _is_ipv4(token) else token
        try:
            ipaddress.IPv6Address(token.decode())
        except ValueError:  # not IPv6 as a whole; it may still end in an IPv4 address
            return _V4_ONLY.sub(self._replace_v4, token)
        return self._replacement(token)

    def _replace_v4(self, match: re.Match[bytes]) -> bytes:
        token = match[0]
        return self._replacement(token) if _is_ipv4(token) else token

    def _replacement(self, token: bytes) -> bytes:
        hashed = self(token.decode())
        return REDACTED if hashed is None else b"ip-hmac:" + hashed.encode()


def _is_ipv4(token: bytes) -> bool:
    """Four dotted octets <= 255 (leading zeros too: `010.0.0.1` still names a host)."""
    return all(int(octet) <= 255 for octet in token.split(b"."))
