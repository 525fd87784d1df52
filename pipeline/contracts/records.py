"""msgspec Structs for the four input topics; they mirror `schemas/*.schema.json` field for field.

Policy shared with the JSON Schemas (a test proves they agree on a corpus):
- timestamps are RFC 3339 strings in UTC (`Z` or a zero offset); naive or offset times are rejected;
- identifiers are 1-64 characters of letters, digits, `.`, `_`, `-`, starting with a letter or
  digit, so they are safe as Kafka keys and as lake partition values;
- unknown extra fields are ignored (forward compatible: a producer may add an optional field before
  the consumers learn it, as Avro and Protobuf readers do), while every required field is enforced;
- `... or null` fields may be absent or null.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec

UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
# The id charset is checked in __post_init__ (`_require_ids`): msgspec's `pattern` runs Python `re`
# per field and made request-log decoding 3x slower; the schemas keep the equivalent pattern.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
IntervalS = Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]
TempC = Annotated[float, msgspec.Meta(ge=-60.0, le=120.0)]
Status = Annotated[int, msgspec.Meta(ge=100, le=599)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]

_ZERO = timedelta(0)
_ID_CHARS = string.ascii_letters + string.digits + "._-"
_ID_FIRST = frozenset(string.ascii_letters + string.digits)


#: Ids already found valid. Ids repeat (a fleet has few sites, nodes, services and teams), so
#: four set lookups replace the character check on the hot path. Bounded: cleared when full.
_VALID_IDS: set[str] = set()
_VALID_IDS_MAX = 100_000


def _require_ids(record: msgspec.Struct, names: tuple[str, ...]) -> None:
    """Check each id field's characters (raise naming the first bad one); remember good ids."""
    for name in names:
        value: str = getattr(record, name)
        if value in _VALID_IDS:
            continue
        # strip() removes allowed characters from both ends: anything left is a bad character.
        if value.strip(_ID_CHARS) or value[0] not in _ID_FIRST:
            raise ValueError(
                f"`{name}` must be letters, digits, '.', '_' or '-' starting with a letter or "
                f"digit, got {value!r}"
            )
        if len(_VALID_IDS) >= _VALID_IDS_MAX:
            _VALID_IDS.clear()
        _VALID_IDS.add(value)


def _require_utc(name: str, value: datetime) -> None:
    if value.tzinfo is not UTC and value.utcoffset() != _ZERO:
        raise ValueError(f"`{name}` must be in UTC (Z or +00:00), got offset {value.utcoffset()}")


class NodeSample(msgspec.Struct, frozen=True, kw_only=True):
    """Mean power and utilisation of one node over `(observed_at - interval_s, observed_at]`."""

    observed_at: UtcTime
    site_id: Id
    rack_id: Id
    node_id: Id
    interval_s: IntervalS
    power_w: NonNegFloat
    cpu_util: Fraction
    inlet_temp_c: TempC
    outlet_temp_c: TempC
    net_rx_bytes: NonNegInt
    net_tx_bytes: NonNegInt
    gpu_util: Fraction | None = None
    mem_util: Fraction | None = None

    def __post_init__(self) -> None:
        _require_utc("observed_at", self.observed_at)
        ok = _VALID_IDS
        if not (self.site_id in ok and self.rack_id in ok and self.node_id in ok):
            _require_ids(self, ("site_id", "rack_id", "node_id"))


class RequestLog(msgspec.Struct, frozen=True, kw_only=True):
    """One finished request, logged by the node that served it."""

    finished_at: UtcTime
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    site_id: Id
    node_id: Id
    service: Id
    team: Id
    status: Status
    latency_ms: NonNegFloat
    bytes_in: NonNegInt
    bytes_out: NonNegInt
    route: ShortText | None = None
    client_region: ShortText | None = None
    client_ip: Annotated[str, msgspec.Meta(min_length=2, max_length=45)] | None = None  # PII

    def __post_init__(self) -> None:
        _require_utc("finished_at", self.finished_at)
        ok = _VALID_IDS
        if not (
            self.site_id in ok and self.node_id in ok and self.service in ok and self.team in ok
        ):
            _require_ids(self, ("site_id", "node_id", "service", "team"))


class FacilitySample(msgspec.Struct, frozen=True, kw_only=True):
    """Site meters: whole-facility and IT power over `(observed_at - interval_s, observed_at]`."""

    observed_at: UtcTime
    site_id: Id
    interval_s: IntervalS
    facility_power_w: NonNegFloat
    it_power_w: NonNegFloat
    onsite_renewable_w: NonNegFloat
    water_l: NonNegFloat | None = None
    outdoor_temp_c: TempC | None = None

    def __post_init__(self) -> None:
        _require_utc("observed_at", self.observed_at)
        if self.site_id not in _VALID_IDS:
            _require_ids(self, ("site_id",))


class GridIntensity(msgspec.Struct, frozen=True, kw_only=True):
    """Carbon intensity of a grid zone, valid over `[valid_from, valid_to)`."""

    valid_from: UtcTime
    valid_to: UtcTime
    zone: Id
    carbon_intensity_gco2e_per_kwh: Annotated[float, msgspec.Meta(ge=0.0, le=5000.0)]
    emission_factor_type: Literal["lifecycle", "direct"]
    signal: Literal["average", "marginal"]
    source: ShortText
    is_estimated: bool

    def __post_init__(self) -> None:
        _require_utc("valid_from", self.valid_from)
        _require_utc("valid_to", self.valid_to)
        if self.zone not in _VALID_IDS:
            _require_ids(self, ("zone",))


InputRecord = NodeSample | RequestLog | FacilitySample | GridIntensity
