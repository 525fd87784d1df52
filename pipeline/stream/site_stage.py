"""Stage 2, whole fleet: closed node minutes + facility meters + grid intensity → energy minutes
with facility energy and carbon, site minutes (PUE, CUE, WUE), SLO burn rates and alerts.

Its inputs come from several topics whose relative arrival order is not fixed, so a minute
closes only when every source it needs has passed it. SLO burn rates, their alerts and thermal
rows need requests and inlet temperatures only: they close as soon as every stage-1 partition
has marked the minute closed. Energy and site minutes (and budgets) also need the facility
meters' watermark past the minute's end (a silent facility feed holds them back 30 min at most)
and, for each grid zone, a value valid for the minute (`valid_from <= minute < valid_to`) or
one starting after it, or 2 h of event time without grid values (the static fallback applies).
Rows are sorted by their natural key before any sum, so outputs do not depend on arrival
order. Stage 2 sees the whole fleet, so it adds the idle row of every node no partition
reported (its embodied carbon is still spent) and merges a node whose minute several partitions
reported (a producer that does not key by node) into the rows one partition would have closed.
(Grid points that overlap are the one exception to order independence: the first known value
valid for a minute closes it, so a later overlapping revision is not applied to it.)

Facility meters and grid points are checked before they change any state (as in stage 1): a
site or grid zone the fleet does not know, or an event time far past both its stream and the
driver's clock (`plausibility.max_future_s`; `grid_max_future_s` for grid points, which may be
forecasts), raise a `BadRecordError` for the driver to dead-letter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from pipeline.contracts.outputs import (
    AlertEvent,
    EnergyMinute,
    NodeMinute,
    PartitionMark,
    SiteMinute,
    SloBurn,
)
from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.records import FacilitySample, GridIntensity, epoch_ms
from pipeline.fleet.model import Fleet, Site
from pipeline.metrics import carbon
from pipeline.metrics.budget import EnergyBudgetTracker
from pipeline.metrics.carbon import embodied_g_per_minute
from pipeline.metrics.energy import IDLE_SERVICE, MINUTE_MS, UWH_PER_WH, split_sample
from pipeline.metrics.sketch import LatencySketch, SketchWire
from pipeline.metrics.slo import ALL_SITES, BurnWindows, MinuteCounts, SloTracker
from pipeline.metrics.thermal import ThermalTracker
from pipeline.stream.clock import Clock, already_applied
from pipeline.stream.errors import ImplausibleValueError, UnknownReferenceError
from pipeline.stream.node_stage import (
    MAX_COVERED_MS,
    NodeAcc,
    NowMs,
    future_check,
    merge_node_minutes,
    no_clock,
    node_minute_rows,
)

Output = EnergyMinute | SiteMinute | SloBurn | AlertEvent

#: Defaults of how long (event time) a silent feed holds energy and site minutes back: the
#: facility meters (then design PUE), the grid (DESIGN §5: values older than 2 h fall back to the
#: static one). Both drivers take them as options, and must agree for equal outputs.
FACILITY_WAIT_S = 30 * 60.0
GRID_WAIT_S = 2 * 3600.0


class SiteAcc(msgspec.Struct, kw_only=True):
    """Facility meters of one site in one minute (integers: order-independent sums)."""

    facility_uwh: int = 0
    it_uwh: int = 0
    renewable_uwh: int = 0
    water_ml: int | None = None
    covered_ms: int = 0
    outdoor_temp_c: float | None = None
    #: `observed_at` (ms) of the site's readings whose interval ends in this minute: a reading
    #: delivered again (same site, same `observed_at`) counts once.
    sample_ends: list[int] = msgspec.field(default_factory=list)


class SiteStageState(msgspec.Struct, kw_only=True):
    """Everything stage 2 needs to continue after a restart."""

    marks: dict[int, int] = msgspec.field(default_factory=dict)
    partitions: int | None = None
    facility_clock: Clock
    facility: dict[int, dict[str, SiteAcc]] = msgspec.field(default_factory=dict)
    grid: dict[str, carbon.GridHistory] = msgspec.field(default_factory=dict)
    grid_last_from: dict[str, int] = msgspec.field(default_factory=dict)
    grid_last_to: dict[str, int] = msgspec.field(default_factory=dict)
    rows: dict[int, list[NodeMinute]] = msgspec.field(default_factory=dict)
    first_minute: int | None = None
    closed_before_ms: int | None = None
    #: Minutes before this had their SLO and thermal rows (those need stage 1 only).
    requests_closed_before_ms: int | None = None
    slo: dict[str, bytes] = msgspec.field(default_factory=dict)
    thermal: dict[str, bytes] = msgspec.field(default_factory=dict)
    budgets: dict[str, bytes] = msgspec.field(default_factory=dict)
    offsets: dict[str, int] = msgspec.field(default_factory=dict)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SiteStageState)


def _iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _burns(windows: BurnWindows) -> dict[str, float]:
    """`{"5m": ..., "3d": ...}` from the tracker's `burn_5m` ... `burn_3d` fields."""
    fields = msgspec.structs.asdict(windows)
    return {name.removeprefix("burn_"): value for name, value in fields.items()}


def _stamp(ms: int) -> str:
    return _iso(ms).isoformat().replace("+00:00", "Z")


class SiteStage:
    """The stage-2 processor. Outputs collect in `outputs`; `drain()` takes them."""

    def __init__(
        self,
        fleet: Fleet,
        lateness_s: float = 120.0,
        state: SiteStageState | None = None,
        now_ms: NowMs = no_clock,
        facility_wait_s: float = FACILITY_WAIT_S,
        grid_wait_s: float = GRID_WAIT_S,
    ) -> None:
        self.fleet = fleet
        self.now_ms = now_ms
        self._facility_wait_ms = round(facility_wait_s * 1000)
        self._grid_wait_ms = round(grid_wait_s * 1000)
        limits = fleet.plausibility
        self._horizon_ms = round(limits.max_future_s * 1000)
        self._grid_horizon_ms = round(limits.grid_max_future_s * 1000)
        self._site_zones = sorted({s.grid_zone for s in fleet.sites})
        self._embodied = {
            n.node_id: embodied_g_per_minute(n.embodied_kgco2e, n.lifetime_years)
            for n in fleet.nodes
        }
        self._zones = set(self._site_zones) | set(fleet.grid_fallback_gco2e_per_kwh)
        self.state = state or SiteStageState(
            facility_clock=Clock(lateness_ms=round(lateness_s * 1000))
        )
        self.outputs: list[Output] = []
        #: Nodes whose minutes came from several stage-1 partitions, merged (not persisted: for
        #: the driver's warning and metric; see `_minute_rows`).
        self.split_nodes: dict[str, set[int]] = {}
        self.split_node_minutes = 0
        #: Stage-1 partitions the driver stopped waiting for (`exclude_partitions`).
        self.excluded_partitions: frozenset[int] = frozenset()
        #: Facility readings delivered again and dropped (not persisted: for the metrics).
        self.duplicate_samples = 0
        self._slo: dict[str, SloTracker] = {
            k: SloTracker.from_bytes(v) for k, v in self.state.slo.items()
        }
        self._thermal = {k: ThermalTracker.from_bytes(v) for k, v in self.state.thermal.items()}
        self._budgets = {
            k: EnergyBudgetTracker.from_bytes(v) for k, v in self.state.budgets.items()
        }

    # -- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        self.state.slo = {k: t.to_bytes() for k, t in self._slo.items()}
        self.state.thermal = {k: t.to_bytes() for k, t in self._thermal.items()}
        self.state.budgets = {k: t.to_bytes() for k, t in self._budgets.items()}
        return _encoder.encode(self.state)

    @classmethod
    def restore(
        cls,
        fleet: Fleet,
        data: bytes,
        lateness_s: float = 120.0,
        now_ms: NowMs = no_clock,
        facility_wait_s: float = FACILITY_WAIT_S,
        grid_wait_s: float = GRID_WAIT_S,
    ) -> SiteStage:
        state = _decoder.decode(data)
        return cls(fleet, lateness_s, state, now_ms, facility_wait_s, grid_wait_s)

    def drain(self) -> list[Output]:
        out, self.outputs = self.outputs, []
        return out

    def seen(self, source: str, offset: int) -> bool:
        """True if this source offset was already applied (a replay after a restart)."""
        return already_applied(self.state.offsets, source, offset)

    # -- inputs --------------------------------------------------------------------------------
    def on_stage_one(self, items: Iterable[NodeMinute | PartitionMark]) -> None:
        for item in items:
            if isinstance(item, PartitionMark):
                before = epoch_ms(item.closed_before)
                self.state.partitions = item.partitions
                if before > self.state.marks.get(item.partition, -1):
                    self.state.marks[item.partition] = before
            else:
                minute = epoch_ms(item.window_start)
                if self.state.closed_before_ms is not None and minute < self.state.closed_before_ms:
                    continue  # a re-emission after a stage-1 failover: already accounted for
                # A stage-1 failover may re-emit a row before this minute closes: identical
                # values, same key; `_close` keeps one per key.
                self.state.rows.setdefault(minute, []).append(item)
                if self.state.first_minute is None or minute < self.state.first_minute:
                    self.state.first_minute = minute
        self._close_ready()

    def on_facility(self, sample: FacilitySample) -> None:
        site = self.fleet.site_by_id.get(sample.site_id)
        if site is None:
            raise UnknownReferenceError(f"site {sample.site_id!r} is not in the fleet")
        observed_ms = epoch_ms(sample.observed_at)
        clock = self.state.facility_clock
        max_ms = clock.max_event_ms
        if max_ms is None or observed_ms > max_ms + self._horizon_ms:
            future_check(observed_ms, max_ms, self.now_ms, self._horizon_ms, "observed_at")
        parts = list(split_sample(observed_ms, sample.interval_s, sample.facility_power_w))
        end_minute = parts[-1][0] if parts else None
        if end_minute is not None and not clock.is_closed(end_minute):
            end_acc = self.state.facility.get(end_minute, {}).get(site.site_id)
            if end_acc is not None and observed_ms in end_acc.sample_ends:
                self.duplicate_samples += 1  # the same reading again: it counted already
                return
        for minute, _, covered in parts:
            known = self.state.facility.get(minute, {}).get(site.site_id)
            if known is not None and known.covered_ms + covered > MAX_COVERED_MS:
                raise ImplausibleValueError(
                    f"site {site.site_id!r} meters reported more than "
                    f"{MAX_COVERED_MS // MINUTE_MS}x full coverage for the minute at "
                    f"{_iso(minute).isoformat()}"
                )
        for minute, f_uwh, covered in parts:
            if clock.is_closed(minute):
                continue  # late meter reading: its minute's PUE is already final
            share = covered / (sample.interval_s * 1000)
            acc = self.state.facility.setdefault(minute, {}).setdefault(site.site_id, SiteAcc())
            acc.facility_uwh += f_uwh
            acc.it_uwh += round(sample.it_power_w * covered / 3.6)
            acc.renewable_uwh += round(sample.onsite_renewable_w * covered / 3.6)
            if sample.water_l is not None:
                acc.water_ml = (acc.water_ml or 0) + round(sample.water_l * share * 1000)
            acc.covered_ms += covered
            if minute == end_minute:
                acc.sample_ends.append(observed_ms)
            if sample.outdoor_temp_c is not None and (
                acc.outdoor_temp_c is None or sample.outdoor_temp_c > acc.outdoor_temp_c
            ):
                acc.outdoor_temp_c = sample.outdoor_temp_c
        clock.observe(observed_ms - round(sample.interval_s * 1000))
        self._close_ready()

    def on_grid(self, record: GridIntensity) -> None:
        zone = record.zone
        if zone not in self._zones:
            raise UnknownReferenceError(
                f"grid zone {zone!r} is neither a site's grid_zone nor in "
                "grid_fallback_gco2e_per_kwh"
            )
        if record.signal != "average":
            # a marginal rate says what a change in load would emit (for shifting load), not
            # what the energy used emitted: the SCI is location-based, on the average mix.
            # Marginal records land in the lake (grid_intensity) but are not used here.
            return
        valid_from_ms = epoch_ms(record.valid_from)
        last_from = self.state.grid_last_from.get(zone)
        if last_from is None or valid_from_ms > last_from + self._grid_horizon_ms:
            future_check(valid_from_ms, last_from, self.now_ms, self._grid_horizon_ms, "valid_from")
        point = carbon.GridPoint.from_record(record)
        self.state.grid.setdefault(zone, carbon.GridHistory(zone=zone)).add(point)
        self.state.grid_last_from[zone] = max(
            self.state.grid_last_from.get(zone, point.valid_from_ms), point.valid_from_ms
        )
        self.state.grid_last_to[zone] = max(
            self.state.grid_last_to.get(zone, point.valid_to_ms), point.valid_to_ms
        )
        self._close_ready()

    def flush(self) -> None:
        """Close every pending minute (end of a bounded input, e.g. the embedded demo)."""
        for minute in sorted(self.state.rows):
            self._close_requests(minute)
            self._close(minute)

    # -- closing -------------------------------------------------------------------------------
    def exclude_partitions(self, partitions: frozenset[int]) -> None:
        """The driver's decision (wall clock) to stop waiting for these stage-1 partitions:
        silent, or behind the others for longer than its skew bound."""
        if partitions != self.excluded_partitions:
            self.excluded_partitions = partitions
            self._close_ready()

    def _stage_one_closed_before(self) -> int | None:
        """Every stage-1 partition must have marked a minute closed (any of them may hold any
        node's records: the producers partition), but those the driver excluded."""
        parts = self.state.partitions
        if parts is None:
            return None
        marks = self.state.marks
        closed: int | None = None
        for p in range(parts):
            if p in self.excluded_partitions:
                continue
            mark = marks.get(p)
            if mark is None:
                return None
            if closed is None or mark < closed:
                closed = mark
        if closed is None:  # every partition excluded: the ones that marked decide
            return max(marks.values(), default=None)
        return closed

    def _ready(self, minute: int, upstream: int) -> bool:
        if minute >= upstream:
            return False
        facility_before = self.state.facility_clock.closed_before_ms
        if not (facility_before is not None and minute < facility_before) and (
            upstream - (facility_before or self.state.first_minute or upstream)
            <= self._facility_wait_ms
        ):
            return False
        for zone in self._site_zones:
            last_from = self.state.grid_last_from.get(zone)
            if last_from is not None and last_from >= minute:
                continue
            history = self.state.grid.get(zone)
            if history is not None and history.covers(minute):
                continue  # the value for this minute is in: no need to wait for the next one
            last_to = self.state.grid_last_to.get(zone, self.state.first_minute or upstream)
            if upstream - last_to <= self._grid_wait_ms:
                return False
        return True

    def _close_ready(self) -> None:
        upstream = self._stage_one_closed_before()
        if upstream is None:
            return
        for minute in sorted(self.state.rows):
            if minute >= upstream:
                break
            self._close_requests(minute)
        for minute in sorted(self.state.rows):
            if not self._ready(minute, upstream):
                break
            self._close(minute)

    def _minute_rows(self, minute: int, *, count_split: bool = False) -> list[NodeMinute]:
        """The minute's stage-1 rows in key order: one per partition and key (a failover may
        re-emit one), and for a node several partitions reported (a producer that spreads a
        node's records over partitions: unkeyed, round-robin, or its key's partition changed)
        the rows one partition would have closed. `count_split` notes such nodes for the
        driver's metric and one-time warning."""
        per_node: dict[str, dict[int, dict[str, NodeMinute]]] = {}
        for row in self.state.rows.get(minute, []):
            per_node.setdefault(row.node_id, {}).setdefault(row.partition, {})[row.key] = row
        out: list[NodeMinute] = []
        for node_id, by_partition in per_node.items():
            if len(by_partition) == 1:
                (only,) = by_partition.values()
                out.extend(only.values())
                continue
            if count_split:
                self.split_nodes.setdefault(node_id, set()).update(by_partition)
                self.split_node_minutes += 1
            node = self.fleet.node_by_id[node_id]
            out.extend(
                merge_node_minutes(
                    node,
                    [list(by_partition[p].values()) for p in sorted(by_partition)],
                    _iso(minute),
                    _stamp(minute),
                    self._embodied[node_id],
                    partition_for(node_id.encode(), self.state.partitions or 1),
                )
            )
        return sorted(out, key=lambda r: r.key)

    def _with_silent_nodes(self, minute: int, rows: list[NodeMinute]) -> list[NodeMinute]:
        """`rows` plus an idle row for every fleet node no stage-1 partition reported (no
        sample, no request): its embodied carbon is still spent."""
        reported = {row.node_id for row in rows}
        silent = [n for n in self.fleet.nodes if n.node_id not in reported]
        if not silent:
            return rows
        start = _iso(minute)
        stamp = _stamp(minute)
        parts = self.state.partitions or 1
        rows = list(rows)
        for node in silent:
            partition = partition_for(node.node_id.encode(), parts)
            embodied = self._embodied[node.node_id]
            rows.extend(node_minute_rows(node, NodeAcc(), {}, start, stamp, embodied, partition))
        return sorted(rows, key=lambda r: r.key)

    def _close_requests(self, minute: int) -> None:
        """SLO burn, alerts and thermal rows of `minute`: they need stage 1 only, so they never
        wait for meters or the grid (a fast-burn page must fire within minutes)."""
        done = self.state.requests_closed_before_ms
        if done is not None and minute < done:
            return
        rows = self._minute_rows(minute)
        self.state.requests_closed_before_ms = minute + MINUTE_MS
        self._slo_minute(minute, rows)
        self._thermal_minute(minute, rows)

    def _close(self, minute: int) -> None:
        rows = self._with_silent_nodes(minute, self._minute_rows(minute, count_split=True))
        del self.state.rows[minute]
        facility = self.state.facility.pop(minute, {})
        for old in [m for m in self.state.facility if m < minute]:
            del self.state.facility[old]
        self.state.closed_before_ms = minute + MINUTE_MS
        by_site: dict[str, list[NodeMinute]] = {}
        for row in rows:
            by_site.setdefault(row.site_id, []).append(row)
        team_kwh: dict[str, float] = {}
        for site in self.fleet.sites:
            meters = facility.get(site.site_id)
            self._close_site(site, minute, by_site.get(site.site_id, []), meters, team_kwh)
        self._budget_minute(minute, team_kwh)

    def _close_site(
        self,
        site: Site,
        minute: int,
        rows: list[NodeMinute],
        meters: SiteAcc | None,
        team_kwh: dict[str, float],
    ) -> None:
        facility_wh = meters.facility_uwh / UWH_PER_WH if meters and meters.covered_ms else None
        it_wh = meters.it_uwh / UWH_PER_WH if meters and meters.covered_ms else None
        pue, pue_source = carbon.pue(facility_wh, it_wh, site.design_pue)
        fallback = self.fleet.grid_fallback_gco2e_per_kwh[site.grid_zone]
        history = self.state.grid.get(site.grid_zone)
        if history is not None:
            intensity, intensity_source = history.pick(minute, fallback)
        else:
            intensity, intensity_source = fallback, "fallback"
        renewable_wh = meters.renewable_uwh / UWH_PER_WH if meters else 0.0
        share = carbon.renewable_share(renewable_wh, facility_wh or 0.0)
        mix = (1.0 - share) * intensity + share * self.fleet.onsite_renewable_gco2e_per_kwh
        stamp = _stamp(minute)
        node_it_wh = operational = embodied = 0.0
        requests = 0
        for row in rows:
            f_wh = row.it_energy_wh * pue
            op_g = f_wh / 1000.0 * mix
            node_it_wh += row.it_energy_wh
            operational += op_g
            embodied += row.embodied_gco2e
            requests += row.requests
            sketch = (
                LatencySketch.from_wire(msgspec.convert(row.latency, SketchWire))
                if row.latency
                else None
            )
            self.outputs.append(
                EnergyMinute(
                    key=row.key,
                    window_start=row.window_start,
                    site_id=row.site_id,
                    node_id=row.node_id,
                    service=row.service,
                    team=row.team,
                    requests=row.requests,
                    errors_5xx=row.errors_5xx,
                    slow=row.slow,
                    busy_ms=row.busy_ms,
                    bytes_in=row.bytes_in,
                    bytes_out=row.bytes_out,
                    it_energy_wh=row.it_energy_wh,
                    facility_energy_wh=f_wh,
                    pue=pue,
                    pue_source=pue_source,
                    coverage=row.coverage,
                    grid_intensity_gco2e_per_kwh=intensity,
                    intensity_source=intensity_source,
                    renewable_share=share,
                    operational_gco2e=op_g,
                    embodied_gco2e=row.embodied_gco2e,
                    it_wh_per_request=row.it_energy_wh / row.requests if row.requests else None,
                    facility_wh_per_request=f_wh / row.requests if row.requests else None,
                    sci_gco2e_per_request=carbon.sci_per_request(
                        f_wh / 1000.0, mix, row.embodied_gco2e, row.requests
                    ),
                    latency_p50_ms=sketch.quantile(0.50) if sketch else None,
                    latency_p95_ms=sketch.quantile(0.95) if sketch else None,
                    latency_p99_ms=sketch.quantile(0.99) if sketch else None,
                )
            )
            if row.service != IDLE_SERVICE:
                team_kwh[row.team] = team_kwh.get(row.team, 0.0) + f_wh / 1000.0
        nodes = {r.node_id: r for r in rows}
        it_kwh = (it_wh if it_wh is not None else node_it_wh) / 1000.0
        water_l = meters.water_ml / 1000.0 if meters and meters.water_ml is not None else None
        self.outputs.append(
            SiteMinute(
                key=f"{stamp}|{site.site_id}",
                window_start=_iso(minute),
                site_id=site.site_id,
                facility_energy_wh=facility_wh,
                it_energy_wh=it_wh,
                node_it_energy_wh=node_it_wh,
                pue=pue,
                pue_source=pue_source,
                renewable_energy_wh=renewable_wh,
                renewable_share=share,
                water_l=water_l,
                wue_l_per_kwh=carbon.wue(water_l, it_kwh),
                cue_kg_per_kwh=carbon.cue(operational / 1000.0, node_it_wh / 1000.0),
                grid_intensity_gco2e_per_kwh=intensity,
                intensity_source=intensity_source,
                operational_gco2e=operational,
                embodied_gco2e=embodied,
                requests=requests,
                nodes_reporting=sum(1 for r in nodes.values() if r.coverage > 0),
                coverage=sum(r.coverage for r in nodes.values()) / len(nodes) if nodes else 0.0,
                outdoor_temp_c=meters.outdoor_temp_c if meters else None,
            )
        )

    def _budget_minute(self, minute: int, team_kwh: dict[str, float]) -> None:
        """Team energy budgets: facility kWh of attributed (non-idle) rows; months in UTC."""
        for team in self.fleet.teams:
            tracker = self._budgets.get(team.team)
            if tracker is None:
                budget = team.energy_budget_kwh_per_month
                tracker = self._budgets[team.team] = EnergyBudgetTracker(team.team, budget)
            update = tracker.add_minute(minute, team_kwh.get(team.team, 0.0))
            self.outputs.extend(update.alerts)

    def _slo_minute(self, minute: int, rows: list[NodeMinute]) -> None:
        counts: dict[tuple[str, str], list[int]] = {}
        for row in rows:
            if row.service == IDLE_SERVICE:
                continue
            for site in (row.site_id, ALL_SITES):
                c = counts.setdefault((row.service, site), [0, 0, 0])
                c[0] += row.requests
                c[1] += row.errors_5xx
                c[2] += row.slow
        stamp = _stamp(minute)
        for service in self.fleet.services:
            for site in (*service.sites, ALL_SITES):
                key = f"{service.service}|{site}"
                tracker = self._slo.get(key)
                if tracker is None:
                    tracker = self._slo[key] = SloTracker(service.service, site, service.slo)
                total, bad_a, bad_l = counts.get((service.service, site), [0, 0, 0])
                update = tracker.add_minute(
                    MinuteCounts(
                        minute_ms=minute, total=total, bad_availability=bad_a, bad_latency=bad_l
                    )
                )
                self.outputs.append(
                    SloBurn(
                        key=f"{stamp}|{service.service}|{site}",
                        window_start=_iso(minute),
                        service=service.service,
                        site_id=site,
                        requests=total,
                        bad_availability=bad_a,
                        bad_latency=bad_l,
                        availability_burn=_burns(update.availability.burn),
                        latency_burn=_burns(update.latency.burn),
                        availability_budget_remaining=update.availability.budget_remaining,
                        latency_budget_remaining=update.latency.budget_remaining,
                    )
                )
                self.outputs.extend(update.alerts)

    def _thermal_minute(self, minute: int, rows: list[NodeMinute]) -> None:
        inlet: dict[str, float] = {}
        for row in rows:
            if row.max_inlet_c is not None:
                inlet[row.node_id] = row.max_inlet_c
        for node_id in sorted(inlet):
            tracker = self._thermal.get(node_id)
            if tracker is None:
                node = self.fleet.node_by_id[node_id]
                tracker = self._thermal[node_id] = ThermalTracker(node_id, node.site_id)
            self.outputs.extend(tracker.add_minute(minute, inlet[node_id]))
