"""Site efficiency and carbon math: PUE, grid intensity selection, operational and embodied
carbon, SCI per request, CUE, WUE and renewable share (DESIGN.md §5).

Sources:
- The Green Grid: PUE = facility energy / IT energy (WP#49); CUE = CO2 / IT energy = CEF × PUE
  (WP#32); WUE = site water / IT energy (WP#35).
- Green Software Foundation SCI, ISO/IEC 21031:2024: `SCI = (E*I + M) per R`,
  `M = TE * (TiR / EL) * (RR / ToR)`; location-based intensity only (no RECs or offsets).
- Ember 2023 lifecycle grid intensities as the static fallback (fleet reference data).

Every function is pure: no I/O, no clock; times are epoch milliseconds given by the caller.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from pipeline.contracts.records import GridIntensity

HOUR_MS = 3_600_000
#: DESIGN.md §5: "last value no older than 2 h, else the static fallback".
MAX_GRID_AGE_MS = 2 * HOUR_MS
SECONDS_PER_YEAR = 365.25 * 86_400  # Julian year, as in the SCI examples
DEFAULT_HISTORY_POINTS = 48

PueSource = Literal["metered", "design", "invalid_meter"]
IntensitySource = Literal["grid", "grid_stale", "fallback"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# -- embodied carbon -------------------------------------------------------------------------------


def embodied_g_per_minute(embodied_kgco2e: float, lifetime_years: float) -> float:
    """Embodied gCO2e of one node for one minute: `kg * 1000 * 60 / (years * 365.25 * 86400)`.

    SCI `M = TE * (TiR / EL) * (RR / ToR)` with TE the node's embodied carbon, TiR one minute,
    EL its lifetime and RR / ToR = 1 (the whole node is reserved). Spec example: 1000 kg over
    4 years reserved for 1 h is 1000 * 1000 * 3600 / (4 * 365.25 * 86400) = 28.52 g.
    """
    if lifetime_years <= 0:
        raise ValueError(f"lifetime_years must be > 0, got {lifetime_years}")
    return embodied_kgco2e * 1000.0 * 60.0 / (lifetime_years * SECONDS_PER_YEAR)


# -- PUE -------------------------------------------------------------------------------------------


def pue(
    facility_wh: float | None, it_wh: float | None, design_pue: float
) -> tuple[float, PueSource]:
    """PUE for a site-minute and where it came from (The Green Grid: facility / IT energy).

    - `metered`: both meters present and finite, IT > 0 and facility >= IT: `facility / IT`.
      No upper cap: at a very low IT load a real PUE can be large.
    - `design`: no facility data for the minute (either value missing) or no IT energy
      (IT = 0: the ratio is undefined, and facility energy of the IT rows is 0 anyway).
    - `invalid_meter`: the meters disagree with physics (facility < IT, a negative or non-finite
      reading). The value is `design_pue`, but the source says the meter was rejected, so the
      glitch stays visible in audits instead of hiding among sites without meters.
    """
    if facility_wh is None or it_wh is None:
        return design_pue, "design"
    if not (math.isfinite(facility_wh) and math.isfinite(it_wh)) or it_wh < 0:
        return design_pue, "invalid_meter"
    if it_wh == 0:
        return design_pue, "design"
    if facility_wh < it_wh:
        return design_pue, "invalid_meter"
    return facility_wh / it_wh, "metered"


# -- grid intensity --------------------------------------------------------------------------------


class GridPoint(msgspec.Struct, frozen=True, kw_only=True):
    """A grid intensity valid over `[valid_from_ms, valid_to_ms)` (epoch ms, UTC)."""

    valid_from_ms: int
    valid_to_ms: int
    gco2e_per_kwh: float
    source: str
    #: "lifecycle" (what the SCI wants, as the static fallbacks are) or "direct".
    emission_factor_type: str = "lifecycle"

    def __post_init__(self) -> None:
        if self.valid_to_ms <= self.valid_from_ms:
            raise ValueError(
                f"grid point must end after it starts: valid_from_ms {self.valid_from_ms}, "
                f"valid_to_ms {self.valid_to_ms}"
            )
        if not (math.isfinite(self.gco2e_per_kwh) and self.gco2e_per_kwh >= 0):
            raise ValueError(f"gco2e_per_kwh must be finite and >= 0, got {self.gco2e_per_kwh}")

    @classmethod
    def from_record(cls, record: GridIntensity) -> GridPoint:
        """The point for one `mdc.grid-intensity` record (aware UTC datetimes to epoch ms)."""
        return cls(
            valid_from_ms=_epoch_ms(record.valid_from),
            valid_to_ms=_epoch_ms(record.valid_to),
            gco2e_per_kwh=record.carbon_intensity_gco2e_per_kwh,
            source=record.source,
            emission_factor_type=record.emission_factor_type,
        )


def _epoch_ms(at: datetime) -> int:
    """Exact epoch milliseconds of an aware datetime (integer arithmetic, no float rounding)."""
    return (at - _EPOCH) // _MS


def _preference(point: GridPoint) -> tuple[bool, int, float]:
    """Tie-break among candidates: a lifecycle value before a direct one (the SCI counts the
    whole life cycle, as the static fallbacks do; a direct value, combustion only, is used only
    where no lifecycle one is known), then the latest `valid_from_ms`, then the highest
    intensity.

    Highest value second because two values for the same interval are usually an estimate and
    its revision, and we cannot tell which is newer from the point alone: the higher one is the
    conservative choice (never under-reports carbon) and does not depend on arrival order.
    """
    return point.emission_factor_type == "lifecycle", point.valid_from_ms, point.gco2e_per_kwh


def pick_intensity(
    points: Sequence[GridPoint],
    minute_ms: int,
    fallback: float,
    max_age_ms: int = MAX_GRID_AGE_MS,
) -> tuple[float, IntensitySource]:
    """Grid intensity for the minute starting at `minute_ms`, and its source.

    - `grid`: a point with `valid_from_ms <= minute_ms < valid_to_ms`;
    - `grid_stale`: otherwise a point that started at or before the minute and ended at most
      `max_age_ms` before it (`minute_ms - valid_to_ms <= max_age_ms`; exactly 2 h is allowed);
    - `fallback`: otherwise `fallback` (the zone's static Ember value).
    Points starting after the minute (forecasts) are ignored. Among several candidates of the
    same kind, `_preference` decides: lifecycle before direct, latest `valid_from_ms`, then
    highest value.
    """
    covering = [p for p in points if p.valid_from_ms <= minute_ms < p.valid_to_ms]
    if covering:
        return max(covering, key=_preference).gco2e_per_kwh, "grid"
    recent = [
        p
        for p in points
        if p.valid_from_ms <= minute_ms and minute_ms - p.valid_to_ms <= max_age_ms
    ]
    if recent:
        return max(recent, key=_preference).gco2e_per_kwh, "grid_stale"
    return fallback, "fallback"


def _order(point: GridPoint) -> tuple[int, int, float, str]:
    return point.valid_from_ms, point.valid_to_ms, point.gco2e_per_kwh, point.source


class GridHistory(msgspec.Struct, kw_only=True):
    """The last `max_points` grid points of one zone, sorted and without exact duplicates.

    Sorted by (valid_from, valid_to, value, source); when full, the first point in that order
    is dropped. The state is always the last `max_points` of the *set* of points ever added,
    whatever their order, so a replayed or reordered topic rebuilds the same history. 48 points
    are two days of hourly data. Mutated in place: in a Faust table, assign it back after `add`.
    """

    zone: str
    points: list[GridPoint] = msgspec.field(default_factory=list)
    max_points: int = DEFAULT_HISTORY_POINTS

    def __post_init__(self) -> None:
        if self.max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {self.max_points}")
        unique = {_order(p): p for p in self.points}
        self.points = [unique[k] for k in sorted(unique)][-self.max_points :]

    def add(self, point: GridPoint) -> None:
        """Insert `point` in order; an exact duplicate (a redelivered record) changes nothing."""
        i = bisect.bisect_left(self.points, _order(point), key=_order)
        if i < len(self.points) and self.points[i] == point:
            return
        self.points.insert(i, point)
        if len(self.points) > self.max_points:
            del self.points[0]

    def covers(self, minute_ms: int) -> bool:
        """A point valid for the minute is known (`valid_from <= minute < valid_to`)."""
        return any(p.valid_from_ms <= minute_ms < p.valid_to_ms for p in self.points)

    def pick(
        self, minute_ms: int, fallback: float, max_age_ms: int = MAX_GRID_AGE_MS
    ) -> tuple[float, IntensitySource]:
        """`pick_intensity` over this zone's points."""
        return pick_intensity(self.points, minute_ms, fallback, max_age_ms)


# -- operational carbon and SCI --------------------------------------------------------------------


class CarbonSplit(msgspec.Struct, frozen=True, kw_only=True):
    """Facility energy split into grid and on-site renewable, and its operational gCO2e."""

    grid_kwh: float
    renewable_kwh: float
    operational_g: float

    @property
    def intensity_effective(self) -> float | None:
        """gCO2e per facility kWh after the renewable share (the `I` to use in SCI)."""
        total_kwh = self.grid_kwh + self.renewable_kwh
        return self.operational_g / total_kwh if total_kwh > 0 else None


def operational_carbon_g(
    facility_kwh: float,
    renewable_kwh: float,
    grid_intensity: float,
    renewable_intensity: float,
) -> CarbonSplit:
    """Location-based operational carbon of a site-minute with on-site renewable energy.

    renewable_used = min(renewable_kwh, facility_kwh)  (surplus is exported, not credited)
    grid_kwh       = facility_kwh - renewable_used
    operational_g  = grid_kwh * grid_intensity + renewable_used * renewable_intensity
    Renewable energy is counted at its lifecycle intensity (fleet `onsite_renewable_gco2e_per_kwh`,
    e.g. 41 g/kWh for solar PV), never as zero; no RECs or offsets (SCI is location-based).
    """
    _require_non_negative(
        facility_kwh=facility_kwh,
        renewable_kwh=renewable_kwh,
        grid_intensity=grid_intensity,
        renewable_intensity=renewable_intensity,
    )
    renewable_used = min(renewable_kwh, facility_kwh)
    grid_kwh = max(0.0, facility_kwh - renewable_used)
    return CarbonSplit(
        grid_kwh=grid_kwh,
        renewable_kwh=renewable_used,
        operational_g=grid_kwh * grid_intensity + renewable_used * renewable_intensity,
    )


def sci_per_request(
    e_facility_kwh: float, intensity_effective: float, embodied_g: float, requests: int
) -> float | None:
    """SCI in gCO2e per request: `(E * I + M) / R` (ISO/IEC 21031:2024); None when R = 0.

    `E` is facility kWh (IT kWh × PUE), `M` embodied grams for the same nodes and minutes.
    With on-site renewable energy `E * I` must equal `operational_carbon_g(...).operational_g`:
    pass `I = CarbonSplit.intensity_effective` (operational_g / E), not the grid intensity.
    """
    if requests < 0:
        raise ValueError(f"requests must be >= 0, got {requests}")
    if requests == 0:
        return None
    return (e_facility_kwh * intensity_effective + embodied_g) / requests


# -- ratios per IT kWh -----------------------------------------------------------------------------


def cue(operational_kg: float, it_kwh: float) -> float | None:
    """Carbon Usage Effectiveness, kgCO2e per IT kWh (The Green Grid); None without IT energy.

    `CUE = operational kgCO2e / IT kWh`, which equals `CEF × PUE` with CEF the kgCO2e per
    facility kWh: (kg / facility kWh) × (facility kWh / IT kWh).
    """
    return operational_kg / it_kwh if it_kwh > 0 else None


def wue(water_l: float | None, it_kwh: float) -> float | None:
    """Water Usage Effectiveness, litres per IT kWh (The Green Grid); None without data."""
    if water_l is None or it_kwh <= 0:
        return None
    return water_l / it_kwh


def renewable_share(renewable_kwh: float, facility_kwh: float) -> float:
    """Share of facility energy supplied on site, in [0, 1]: `min(renewable, facility) / facility`.

    0 when the facility used no energy (nothing to supply).
    """
    if facility_kwh <= 0:
        return 0.0
    return min(max(renewable_kwh, 0.0), facility_kwh) / facility_kwh


def _require_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
