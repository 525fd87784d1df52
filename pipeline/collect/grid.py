"""Grid carbon intensity: provider payloads -> validated `GridIntensity` records (pure, no I/O).

Each reader takes a payload already fetched and parsed (a JSON object, a CSV text, pydataxm
rows) and returns `(records, skipped)`. Every record is built with
`msgspec.convert(..., GridIntensity)`, so the contract's bounds hold (0..5000 g/kWh, UTC times,
a span of at most 31 days, a valid zone id). A value that fails is written down in `skipped`
with where it was and why, never used and never a crash. A payload whose shape is wrong as a
whole (not an object, no `data` list, a CSV without the needed column, a unit we cannot
convert) raises `GridError` naming the provider and why: the caller counts it and backs off.

Times are RFC 3339 with `Z` or an offset and are converted to UTC; a naive time is skipped
(which zone it meant is a guess). The one exception is the Electricity Maps CSV, whose column
is named `Datetime (UTC)`: its naive times are UTC by the header's own word.

What each provider means (`signal`, `emission_factor_type`, units):

- Electricity Maps v3 (`/v3/carbon-intensity/latest`, `/history`, `/past-range`): gCO2eq/kWh,
  the average of the (flow-traced) consumption mix, so `signal="average"`. The factor type is
  the payload's `emissionFactorType` ("lifecycle" or "direct"); absent, it is the API's
  documented default, "lifecycle". `datetime` is the start of the hour: valid
  `[datetime, datetime + 1 h)`. `isEstimated` null or absent is taken from `estimationMethod`
  (a method named means estimated).
- Electricity Maps data-portal CSV: one row per hour, one column per factor type; the caller
  picks "direct" or "lifecycle" (the "life cycle assessment" column).
- WattTime v3 (`/v3/historical`, `/v3/forecast`, `/v3/signal-index` is not an intensity):
  `value` in `lbs_co2_per_mwh`, times 0.45359237 to g/kWh (1 lb = 453.59237 g, 1 MWh =
  1000 kWh). `co2_moer` (marginal operating emissions rate: the generators that respond to a
  change in load) is `signal="marginal"`, `co2_aoer` (average operating emissions rate) is
  `"average"`. WattTime's rates are *operating* emissions, what the power plants emit while
  running (combustion), with no upstream or construction share, so `emission_factor_type=
  "direct"`. Each point is valid `[point_time, point_time + data_point_period_seconds)`
  (300 s, WattTime's 5-minute grid, if the meta does not say). A `/v3/forecast` answer (its
  meta has `generated_at`) is `is_estimated=True`; historical values are not.
- UK Carbon Intensity (NESO, `api.carbonintensity.org.uk`): gCO2/kWh per half hour
  `[from, to)`. `actual` when present (`is_estimated=False`), else `forecast`
  (`is_estimated=True`). Its methodology counts the emissions of generation (operational),
  so `"direct"`, and it is the average of the national mix: `"average"`. Regional payloads
  (`/regional/regionid/{id}`, `/regional/postcode/{pc}`: `data[].data[]`; `/regional`:
  `data[].regions[]`) carry only forecasts; their zone is `"{zone}-{regionid}"` (GB-13 is
  London).
- XM (Colombia's market operator), metric `factorEmisionCO2e`, entity `Sistema`, as
  `pydataxm.ReadDB().request_data("factorEmisionCO2e", "Sistema", start, end)` returns it: a
  DataFrame with `Id`, `Values_code`, `Date` and `Values_Hour01`..`Values_Hour24` (the hourly
  wide format of every XM hourly metric); pass `df.to_dict("records")` or the DataFrame.
  Unit: gCO2e/kWh. Found (second hand, pydataxm itself was not installed or run here): public
  pydataxm users that checked XM's metric catalogue (`get_collections`) describe it as an
  hourly (HourlyEntities) system metric in gCO2e/kWh, and another reports a 2025 mean of
  96.3 gCO2e/kWh, plausible for Colombia's hydro-heavy grid (kgCO2e/MWh would be the same
  number, so either reading gives the same g/kWh). Assumed:
  `Values_HourNN` is the hour ending at NN:00 local time, i.e. `[NN-1, NN)` (so Hour01 is
  00:00-01:00, as Electricity Maps' own XM parser reads it), and local time is Colombia's
  fixed UTC-5 (no DST). XM computes the factor from the dispatched plants' fuel consumption
  (combustion), so `"direct"`, and over the whole system's generation: `"average"`. A value
  of 0 (every hour hydro) is valid; XM publishes it a few days late, so these records are a
  backfill, not "now".
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

import msgspec

from pipeline.contracts.records import GridIntensity
from pipeline.errors import PipelineError

FactorType = Literal["lifecycle", "direct"]

SOURCE_ELECTRICITY_MAPS = "electricitymaps"
SOURCE_WATTTIME = "watttime"
SOURCE_UK = "uk-carbon-intensity"
SOURCE_XM = "xm"

#: 1 lb/MWh in g/kWh: 453.59237 g per lb (exact, by definition) over 1000 kWh per MWh.
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
ONE_HOUR = timedelta(hours=1)
#: WattTime v3 data points are 5-minute values unless `meta.data_point_period_seconds` says.
WATTTIME_DEFAULT_PERIOD_S = 300
WATTTIME_SIGNALS: dict[str, Literal["average", "marginal"]] = {
    "co2_moer": "marginal",
    "co2_aoer": "average",
}
WATTTIME_UNITS = {"lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH}
#: Colombia keeps UTC-5 all year (no daylight saving time since 1993).
COLOMBIA_TZ = timezone(timedelta(hours=-5), "COT")
XM_HOURS = 24

CSV_DATETIME = "Datetime (UTC)"
CSV_ZONE_ID = "Zone Id"
CSV_DIRECT = "Carbon Intensity gCO₂eq/kWh (direct)"
CSV_LIFECYCLE = "Carbon Intensity gCO₂eq/kWh (life cycle assessment)"
CSV_ESTIMATED = "Data Estimated"
CSV_ESTIMATION_METHOD = "Data Estimation Method"
_CSV_COLUMNS: dict[str, str] = {"direct": CSV_DIRECT, "lifecycle": CSV_LIFECYCLE}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class GridError(PipelineError, ValueError):
    """A provider payload is unusable as a whole; names the provider and why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"grid {source}: {reason}")


@dataclass(frozen=True)
class Skipped:
    """A value that was read but not used: where in the payload, and why."""

    where: str
    reason: str


Parsed = tuple[list[GridIntensity], list[Skipped]]


class _Skip(Exception):
    """Internal: this value is skipped for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- helpers


def parse_time(value: object, *, naive_is_utc: bool = False) -> datetime:
    """An RFC 3339 string (`Z` or an offset) -> an aware UTC datetime; `_Skip` otherwise."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and value.strip():
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Skip(f"{value!r} is not an RFC 3339 time") from None
    else:
        raise _Skip(f"time missing or not a string: {value!r}")
    if when.tzinfo is None or when.utcoffset() is None:
        if not naive_is_utc:
            raise _Skip(f"{value!r} has no UTC offset (naive time: its zone is unknown)")
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _number(value: object, what: str) -> float:
    """A finite real number (an int, float, numpy scalar or numeric string); `_Skip` otherwise."""
    if value is None:
        raise _Skip(f"no {what} (null or missing)")
    if isinstance(value, bool):
        raise _Skip(f"{what} {value!r} is a boolean, not a number")
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Skip(f"{what} {value!r} is not a number") from None
    else:
        raise _Skip(f"{what} {value!r} is not a number")
    if not math.isfinite(number):
        raise _Skip(f"no {what} ({value!r} is not finite)")
    return number


def _build(fields: dict[str, Any]) -> GridIntensity:
    """The contract's `GridIntensity`, or `_Skip` with the contract's reason."""
    try:
        return msgspec.convert(fields, GridIntensity)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise _Skip(f"not a valid GridIntensity: {exc}") from None


def _object(value: object, source: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise GridError(source, f"{what} is not a JSON object (got {type(value).__name__})")
    return value


def _list(payload: Mapping[str, Any], key: str, source: str, what: str = "payload") -> list[Any]:
    value = payload.get(key)
    if not isinstance(value, list):
        raise GridError(source, f"{what} has no `{key}` list")
    return value


# --------------------------------------------------------------------------- Electricity Maps


def _em_record(item: object, zone: object) -> GridIntensity:
    if not isinstance(item, Mapping):
        raise _Skip(f"not an object: {item!r}")
    start = parse_time(item.get("datetime"))
    value = _number(item.get("carbonIntensity"), "carbonIntensity")
    factor = item.get("emissionFactorType", "lifecycle")
    estimated = item.get("isEstimated")
    if estimated is None:
        estimated = item.get("estimationMethod") is not None
    if not isinstance(estimated, bool):
        raise _Skip(f"isEstimated {estimated!r} is not a boolean")
    if not isinstance(zone, str):
        raise _Skip(f"zone missing or not a string: {zone!r}")
    return _build(
        {
            "valid_from": start,
            "valid_to": start + ONE_HOUR,
            "zone": zone,
            "carbon_intensity_gco2e_per_kwh": value,
            "emission_factor_type": factor,
            "signal": "average",
            "source": SOURCE_ELECTRICITY_MAPS,
            "is_estimated": estimated,
        }
    )


def electricity_maps_latest(payload: object, *, zone_override: str | None = None) -> Parsed:
    """`/v3/carbon-intensity/latest` -> one hourly record (or one skip)."""
    body = _object(payload, SOURCE_ELECTRICITY_MAPS, "payload")
    zone = zone_override if zone_override is not None else body.get("zone")
    try:
        return [_em_record(body, zone)], []
    except _Skip as skip:
        return [], [Skipped("latest", skip.reason)]


def electricity_maps_history(payload: object, *, zone_override: str | None = None) -> Parsed:
    """`/v3/carbon-intensity/history` or `/past-range` (`{"zone", "data": [...]}`) -> hourly
    records; an item's own `zone` wins over the top-level one, `zone_override` over both."""
    body = _object(payload, SOURCE_ELECTRICITY_MAPS, "payload")
    top_zone = body.get("zone")
    records: list[GridIntensity] = []
    skipped: list[Skipped] = []
    for index, item in enumerate(_list(body, "data", SOURCE_ELECTRICITY_MAPS)):
        zone = zone_override
        if zone is None:
            zone = item.get("zone", top_zone) if isinstance(item, Mapping) else top_zone
        try:
            records.append(_em_record(item, zone))
        except _Skip as skip:
            skipped.append(Skipped(f"data[{index}]", skip.reason))
    return records, skipped


def _csv_flag(text: str | None) -> bool:
    flag = (text or "").strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    raise _Skip(f"{CSV_ESTIMATED} {text!r} is not true or false")


def electricity_maps_csv(text: str, *, emission_factor_type: FactorType = "lifecycle") -> Parsed:
    """The data portal's hourly CSV -> records from the direct or the life-cycle column.

    `where` of a skipped row is its line number in the file (the header is line 1)."""
    if emission_factor_type not in _CSV_COLUMNS:
        raise GridError(
            SOURCE_ELECTRICITY_MAPS,
            f"emission_factor_type must be 'direct' or 'lifecycle', got {emission_factor_type!r}",
        )
    column = _CSV_COLUMNS[emission_factor_type]
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [name for name in (CSV_DATETIME, CSV_ZONE_ID, column) if name not in header]
    if missing:
        raise GridError(SOURCE_ELECTRICITY_MAPS, f"CSV has no column {', '.join(missing)}")
    records: list[GridIntensity] = []
    skipped: list[Skipped] = []
    for row in reader:
        where = f"line {reader.line_num}"
        try:
            if None in row:
                raise _Skip(f"{len(row[None])} more fields than the header")
            start = parse_time(row.get(CSV_DATETIME), naive_is_utc=True)
            value = _number((row.get(column) or "").strip() or None, column)
            estimated = _csv_flag(row.get(CSV_ESTIMATED)) if CSV_ESTIMATED in header else False
            records.append(
                _build(
                    {
                        "valid_from": start,
                        "valid_to": start + ONE_HOUR,
                        "zone": (row.get(CSV_ZONE_ID) or "").strip(),
                        "carbon_intensity_gco2e_per_kwh": value,
                        "emission_factor_type": emission_factor_type,
                        "signal": "average",
                        "source": SOURCE_ELECTRICITY_MAPS,
                        "is_estimated": estimated,
                    }
                )
            )
        except _Skip as skip:
            skipped.append(Skipped(where, skip.reason))
    return records, skipped


# --------------------------------------------------------------------------- WattTime


def watttime_v3(payload: object) -> Parsed:
    """WattTime v3 `{data: [{point_time, value}], meta: {region, signal_type, units, ...}}`
    -> records in g/kWh, each valid for one data point period."""
    body = _object(payload, SOURCE_WATTTIME, "payload")
    meta = _object(body.get("meta"), SOURCE_WATTTIME, "`meta`")
    signal_type = meta.get("signal_type")
    if signal_type not in WATTTIME_SIGNALS:
        raise GridError(
            SOURCE_WATTTIME,
            f"signal_type {signal_type!r} is not a carbon intensity "
            f"(need one of {', '.join(WATTTIME_SIGNALS)})",
        )
    units = meta.get("units")
    if units not in WATTTIME_UNITS:
        raise GridError(
            SOURCE_WATTTIME, f"units {units!r} cannot be converted (need lbs_co2_per_mwh)"
        )
    region = meta.get("region")
    if not isinstance(region, str):
        raise GridError(SOURCE_WATTTIME, f"meta.region missing or not a string: {region!r}")
    period_s = meta.get("data_point_period_seconds", WATTTIME_DEFAULT_PERIOD_S)
    if isinstance(period_s, bool) or not isinstance(period_s, int) or period_s <= 0:
        raise GridError(SOURCE_WATTTIME, f"data_point_period_seconds {period_s!r} is not > 0")
    period = timedelta(seconds=period_s)
    factor = WATTTIME_UNITS[units]
    records: list[GridIntensity] = []
    skipped: list[Skipped] = []
    for index, item in enumerate(_list(body, "data", SOURCE_WATTTIME)):
        try:
            if not isinstance(item, Mapping):
                raise _Skip(f"not an object: {item!r}")
            start = parse_time(item.get("point_time"))
            value = _number(item.get("value"), "value") * factor
            records.append(
                _build(
                    {
                        "valid_from": start,
                        "valid_to": start + period,
                        "zone": region,
                        "carbon_intensity_gco2e_per_kwh": value,
                        "emission_factor_type": "direct",
                        "signal": WATTTIME_SIGNALS[signal_type],
                        "source": SOURCE_WATTTIME,
                        # /v3/forecast answers with `generated_at` in meta: a forecast.
                        "is_estimated": "generated_at" in meta,
                    }
                )
            )
        except _Skip as skip:
            skipped.append(Skipped(f"data[{index}]", skip.reason))
    return records, skipped


# --------------------------------------------------------------------------- UK Carbon Intensity


def _uk_record(span: Mapping[str, Any], intensity: object, zone: str) -> GridIntensity:
    start = parse_time(span.get("from"))
    end = parse_time(span.get("to"))
    if not isinstance(intensity, Mapping):
        raise _Skip(f"no `intensity` object: {intensity!r}")
    actual = intensity.get("actual")
    if actual is not None:
        value, estimated = _number(actual, "intensity.actual"), False
    else:
        value, estimated = _number(intensity.get("forecast"), "intensity.forecast"), True
    return _build(
        {
            "valid_from": start,
            "valid_to": end,
            "zone": zone,
            "carbon_intensity_gco2e_per_kwh": value,
            "emission_factor_type": "direct",
            "signal": "average",
            "source": SOURCE_UK,
            "is_estimated": estimated,
        }
    )


def _region_zone(zone: str, region: Mapping[str, Any]) -> str:
    regionid = region.get("regionid")
    if isinstance(regionid, bool) or not isinstance(regionid, int):
        raise _Skip(f"regionid {regionid!r} is not an integer")
    return f"{zone}-{regionid}"


def uk_carbon_intensity(payload: object, *, zone: str = "GB") -> Parsed:
    """UK Carbon Intensity API, national (`data[]` of `{from, to, intensity}`) or regional
    (`data[].data[]` under a region, or `data[].regions[]` under a half hour)."""
    body = _object(payload, SOURCE_UK, "payload")
    records: list[GridIntensity] = []
    skipped: list[Skipped] = []

    def add(where: str, span: object, intensity_of: object, record_zone: str) -> None:
        try:
            if not isinstance(span, Mapping):
                raise _Skip(f"not an object: {span!r}")
            if not isinstance(intensity_of, Mapping):
                raise _Skip(f"not an object: {intensity_of!r}")
            records.append(_uk_record(span, intensity_of.get("intensity"), record_zone))
        except _Skip as skip:
            skipped.append(Skipped(where, skip.reason))

    for index, item in enumerate(_list(body, "data", SOURCE_UK)):
        where = f"data[{index}]"
        if isinstance(item, Mapping) and isinstance(item.get("data"), list):
            # /regional/regionid/{id}, /regional/postcode/{pc}: a region, then its half hours
            try:
                region_zone = _region_zone(zone, item)
            except _Skip as skip:
                skipped.append(Skipped(where, skip.reason))
                continue
            for inner, span in enumerate(item["data"]):
                add(f"{where}.data[{inner}]", span, span, region_zone)
        elif isinstance(item, Mapping) and isinstance(item.get("regions"), list):
            # /regional: a half hour, then its regions
            for inner, region in enumerate(item["regions"]):
                try:
                    if not isinstance(region, Mapping):
                        raise _Skip(f"not an object: {region!r}")
                    region_zone = _region_zone(zone, region)
                except _Skip as skip:
                    skipped.append(Skipped(f"{where}.regions[{inner}]", skip.reason))
                    continue
                add(f"{where}.regions[{inner}]", item, region, region_zone)
        else:
            add(where, item, item, zone)
    return records, skipped


# --------------------------------------------------------------------------- XM (Colombia)


def _xm_day(value: object) -> date:
    """The local (Colombia) day of an XM row: a date, a midnight datetime or 'YYYY-MM-DD'."""
    if isinstance(value, datetime):  # pandas Timestamp is a datetime
        if value.time() != datetime.min.time():
            raise _Skip(f"Date {value!r} is not a midnight (a day is expected)")
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Skip(f"Date {value!r} is not YYYY-MM-DD") from None
        return _xm_day(parsed.replace(tzinfo=None))
    raise _Skip(f"Date missing or not a date: {value!r}")


def xm_emission_factor(rows: Iterable[Mapping[str, Any]] | Any, *, zone: str = "CO") -> Parsed:
    """pydataxm `factorEmisionCO2e` rows (one per local day) -> 24 hourly records per day.

    `Values_HourNN` is local hour `[NN-1, NN)` in Colombia (UTC-5), so Hour01 of 2025-01-01
    is 2025-01-01T05:00Z..06:00Z. Values are gCO2e/kWh (see the module docstring)."""
    if hasattr(rows, "to_dict"):  # a pandas DataFrame, as pydataxm returns it
        rows = rows.to_dict("records")
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise GridError(SOURCE_XM, f"rows must be a list of row objects, got {type(rows).__name__}")
    records: list[GridIntensity] = []
    skipped: list[Skipped] = []
    for index, row in enumerate(rows):
        where = f"row {index}"
        try:
            if not isinstance(row, Mapping):
                raise _Skip(f"not a row object: {row!r}")
            day = _xm_day(row.get("Date"))
        except _Skip as skip:
            skipped.append(Skipped(where, skip.reason))
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=COLOMBIA_TZ)
        for hour in range(1, XM_HOURS + 1):
            column = f"Values_Hour{hour:02d}"
            try:
                value = _number(row.get(column), column)
                start = (midnight + timedelta(hours=hour - 1)).astimezone(UTC)
                records.append(
                    _build(
                        {
                            "valid_from": start,
                            "valid_to": start + ONE_HOUR,
                            "zone": zone,
                            "carbon_intensity_gco2e_per_kwh": value,
                            "emission_factor_type": "direct",
                            "signal": "average",
                            "source": SOURCE_XM,
                            "is_estimated": False,
                        }
                    )
                )
            except _Skip as skip:
                skipped.append(Skipped(f"{where} {day.isoformat()} {column}", skip.reason))
    return records, skipped
