"""msgspec Structs for the four input topics; they mirror `schemas/*.schema.json` field for field.

Policy shared with the JSON Schemas (a test proves they agree on a corpus):
- timestamps are RFC 3339 strings in UTC (`Z` or a zero offset); naive or offset times are rejected;
- identifiers are 1-64 characters of letters, digits, `.`, `_`, `-`, starting with a letter or
  digit, so they are safe as Kafka keys and as lake partition values;
- unknown extra fields are ignored (forward compatible: a producer may add an optional field before
  the consumers learn it, as Avro and Protobuf readers do), while every required field is enforced;
- `... or null` fields may be absent or null;
- every number is bounded (issue 11: one record with `bytes_in` = 10**30 or `latency_ms` = 1e308
  crashed the worker): floats are finite and within physical limits, integers far inside int64
  so that sums over a minute never overflow a snapshot or a Parquet column, and event times fall
  in the years `MIN_YEAR`..`MAX_YEAR`. The fleet's plausibility limits (power against the node's
  `max_power_w`, event times far in the future) are checked by the stream core, not here.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, in integer arithmetic (no float
    timestamp in between); sub-millisecond parts are floored."""
    return (when - EPOCH) // ONE_MS


UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]

#: Event times outside these years are invalid (the schemas' `utc_time` pattern says the same):
#: 9999-12-31 plus a sample interval is not a datetime, and no telemetry predates 1970.
MIN_YEAR = 1970
MAX_YEAR = 2999
#: One node draws at most this (a dense GPU chassis is ~10 kW); the fleet's own limit is tighter.
MAX_NODE_POWER_W = 100_000.0
#: One site's meters read at most this (100 MW: a hyperscale hall, not a micro data center).
MAX_SITE_POWER_W = 100_000_000.0
MAX_WATER_L = 10_000_000.0
#: One request takes at most a day and moves at most 1 TB each way.
MAX_LATENCY_MS = 86_400_000.0
MAX_REQUEST_BYTES = 10**12
#: Network bytes over one sample interval (<= 3600 s at 400 Gb/s is 1.8e14).
MAX_INTERVAL_BYTES = 10**15
#: A grid value is valid for at most this long (hourly, daily; a static yearly figure is the
#: fleet's fallback, not a record).
MAX_GRID_SPAN = timedelta(days=31)
# The id charset is checked in __post_init__ (`_require_ids`): msgspec's `pattern` runs Python `re`
# per field and made request-log decoding 3x slower; the schemas keep the equivalent pattern.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NodePowerW = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_NODE_POWER_W)]
SitePowerW = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_SITE_POWER_W)]
WaterL = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_WATER_L)]
LatencyMs = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_LATENCY_MS)]
RequestBytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_REQUEST_BYTES)]
IntervalBytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_INTERVAL_BYTES)]
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
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"`{name}` must be in the years {MIN_YEAR}..{MAX_YEAR}, got {value.year}")


class NodeSample(msgspec.Struct, frozen=True, kw_only=True):
    """Mean power and utilisation of one node over `(observed_at - interval_s, observed_at]`."""

    observed_at: UtcTime
    site_id: Id
    rack_id: Id
    node_id: Id
    interval_s: IntervalS
    power_w: NodePowerW
    #: None where no source reports it (a BMC gives power and temperatures, not utilisation):
    #: collectors never invent a reading. Optional since issue 14; records that carry them are
    #: unchanged.
    cpu_util: Fraction | None = None
    inlet_temp_c: TempC | None = None
    outlet_temp_c: TempC | None = None
    net_rx_bytes: IntervalBytes | None = None
    net_tx_bytes: IntervalBytes | None = None
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
    latency_ms: LatencyMs
    bytes_in: RequestBytes
    bytes_out: RequestBytes
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


class CollectedRequestLog(RequestLog, frozen=True, kw_only=True):
    """A request log as `microdc collect` sends it: the client IP never leaves the collector
    raw. `client_ip` is None and `client_ip_hmac` is the lake's keyed hash of it (see
    `pipeline.lake.privacy`; the lake lands it as is), or None without a secret (dropped)."""

    client_ip_hmac: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")] | None = None


class FacilitySample(msgspec.Struct, frozen=True, kw_only=True):
    """Site meters: whole-facility and IT power over `(observed_at - interval_s, observed_at]`."""

    observed_at: UtcTime
    site_id: Id
    interval_s: IntervalS
    facility_power_w: SitePowerW
    it_power_w: SitePowerW
    onsite_renewable_w: SitePowerW
    water_l: WaterL | None = None
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
        span = self.valid_to - self.valid_from
        if span <= _ZERO:
            raise ValueError("`valid_to` must be after `valid_from`")
        if span > MAX_GRID_SPAN:
            raise ValueError(f"`valid_to` - `valid_from` must be at most {MAX_GRID_SPAN.days} days")
        if self.zone not in _VALID_IDS:
            _require_ids(self, ("zone",))


InputRecord = NodeSample | RequestLog | FacilitySample | GridIntensity
