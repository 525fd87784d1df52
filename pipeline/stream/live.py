"""Rolling state of the worker's live view: the last minutes per site, from per-minute outputs.

Pure (no Kafka, no clock, no I/O): a driver feeds it the stream's closed-minute outputs and asks
for `view()`; `pipeline.processors.live` is that driver in the worker, `GET /live.json` serves
the view and `GET /live` draws it.

Design decisions:

- **Fed per minute, never per event.** Inputs are the records stage 2 emits per closed minute
  (`mdc.site-minutes`, `mdc.slo-burn`, `mdc.alerts`) and the latency sketches of the stage-1
  rows it consumes (`mdc.node-minutes`): a few hundred small records per minute of event time
  for the demo fleet, whatever the request rate.
- **Event time.** "Now" is `as_of`, the latest closed minute seen in site minutes (stage 2
  closes a minute for every site at once). The window is the `window_minutes` minutes ending
  with it; older minutes are evicted as `as_of` advances. No wall clock anywhere.
- **Numbers, re-derived sum/sum over the window (DESIGN §5), never averaged:**
  - Wh/request = sum(node IT Wh x PUE) / sum(requests): the facility energy of the site's
    energy-minute rows (IT energy x PUE, idle included), as in `mdc.energy-minutes`, the
    `fct_energy_per_request_hourly` mart and the `microdc demo` summary;
  - PUE = sum(facility Wh) / sum(IT Wh), from the meters in minutes whose PUE was metered,
    from node IT x the PUE used (design) in the others; `pue_source` says which;
  - p95 = the 0.95 quantile of the DDSketch merged from the site's node-minute sketches in the
    window (services only, `__idle__` has none): the mergeable sketch DESIGN §5 defines;
  - burn = the burn rates of the latest minute per service at the site (fleet: `__all__`); the
    headline is the worst 1 h burn over services and SLIs, with its 5 m burn;
  - alerts firing = per `alert_id` (unique per occurrence), the event with the latest `at_ms`
    is a `firing` one.
- **Re-emissions are harmless.** After a failover the same natural key can arrive twice with
  identical values: site minutes and burns are stored by key, sketches of a key already merged
  are skipped, and a replayed `firing` older than the stored `resolved` changes nothing.
- **Bounded memory.** Per site: `window_minutes` site minutes and burn rows, and latency for
  at most `window_minutes + AHEAD_MINUTES` minutes (stage 1 runs ahead of stage 2, which waits
  for hourly grid data); alerts: every firing one (one per rule and entity at a time) plus the
  resolved ones of the last `RESOLVED_KEEP_MINUTES`, at most `MAX_ALERTS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from pipeline.contracts.outputs import AlertEvent, SiteMinute, SloBurn
from pipeline.contracts.records import epoch_ms
from pipeline.fleet.model import Fleet
from pipeline.metrics.energy import IDLE_SERVICE, MINUTE_MS
from pipeline.metrics.sketch import DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS, LatencySketch, SketchWire
from pipeline.metrics.slo import ALL_SITES, SLIS

WINDOW_MINUTES = 15
#: How far (event minutes) stage 1's node minutes may run ahead of the last closed site minute:
#: stage 2 holds minutes until every grid zone has a value starting at or after them (hourly
#: data; a silent zone falls back after 2 h) and the facility meters have passed them.
AHEAD_MINUTES = 150
#: Resolved alerts are remembered this long (event time), so that a `firing` replayed after a
#: failover cannot bring them back.
RESOLVED_KEEP_MINUTES = 360
MAX_ALERTS = 2000
#: The burn windows the view shows (the page-1h rule's pair).
LONG, SHORT = "1h", "5m"


class NodeLatency(msgspec.Struct, frozen=True, tag="row"):
    """The part of a `NodeMinute` (`mdc.node-minutes`) the live view reads."""

    key: str
    window_start: datetime
    site_id: str
    service: str
    latency: SketchWire | None = None


class NodeMark(msgspec.Struct, frozen=True, tag="mark"):
    """A `PartitionMark` on `mdc.node-minutes`: nothing for the live view."""


NodeMinuteItem = NodeLatency | NodeMark


# -- the view (what `/live.json` returns) -----------------------------------------------------


class MinutePoint(msgspec.Struct, frozen=True, kw_only=True):
    """One minute of a site, for the sparklines (None: no data for that minute)."""

    minute: str
    requests: int | None
    wh_per_request: float | None
    pue: float | None
    p95_latency_ms: float | None
    burn_1h: float | None


class ServiceBurn(msgspec.Struct, frozen=True, kw_only=True):
    """Burn rates of one service at a site after its latest minute (`(bad/total)/(1-target)`)."""

    service: str
    minute: str
    availability_1h: float
    availability_5m: float
    latency_1h: float
    latency_5m: float
    availability_budget_remaining: float
    latency_budget_remaining: float


class WorstBurn(msgspec.Struct, frozen=True, kw_only=True):
    """The highest 1 h burn over a site's services and SLIs, with its 5 m burn."""

    service: str
    sli: str
    burn_1h: float
    burn_5m: float


class SiteView(msgspec.Struct, frozen=True, kw_only=True):
    """A site (or the whole fleet, `site_id == "__all__"`) over the window."""

    site_id: str
    label: str
    minutes: int
    requests: int
    facility_energy_wh: float
    node_it_energy_wh: float
    wh_per_request: float | None
    pue: float | None
    pue_source: str | None
    p95_latency_ms: float | None
    burn: WorstBurn | None
    services: list[ServiceBurn]
    alerts_firing: int
    series: list[MinutePoint]


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    """An alert's latest state (times: ISO 8601, event time)."""

    alert_id: str
    kind: str
    rule: str
    severity: str
    state: str
    fired_at: str
    at: str
    value: float
    threshold: float
    service: str | None
    team: str | None
    site_id: str | None
    node_id: str | None
    sli: str | None
    long_window: str | None
    short_window: str | None
    burn_long: float | None
    burn_short: float | None


class LiveView(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the live page shows."""

    window_minutes: int
    as_of: str | None
    window_start: str | None
    sites: list[SiteView]
    fleet: SiteView
    firing: list[AlertView]
    resolved: list[AlertView]


# -- state --------------------------------------------------------------------------------------


@dataclass
class _Latency:
    """Merged sketch bins of one site-minute and the node-minute keys already in them."""

    bins: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    keys: set[str] = field(default_factory=set)

    def add(self, wire: SketchWire) -> None:
        if wire.a != DEFAULT_ALPHA or wire.m != DEFAULT_MAX_BUCKETS:
            raise ValueError(f"latency sketch with alpha {wire.a}, {wire.m} buckets: not mergeable")
        bins = self.bins
        for key, count in zip(wire.k, wire.c, strict=True):
            bins[key] = bins.get(key, 0) + count
        self.zeros += wire.z


def _sketch(parts: Iterable[_Latency]) -> LatencySketch | None:
    """One sketch of `parts` (None when they hold no value). Building it from the summed bins
    gives the same buckets as merging the sketches one by one (see `pipeline.metrics.sketch`)."""
    bins: dict[int, int] = {}
    zeros = 0
    for part in parts:
        for key, count in part.bins.items():
            bins[key] = bins.get(key, 0) + count
        zeros += part.zeros
    if not bins and not zeros:
        return None
    return LatencySketch(bins=bins, zero_count=zeros)


def _p95(parts: Iterable[_Latency]) -> float | None:
    sketch = _sketch(parts)
    return sketch.quantile(0.95) if sketch is not None else None


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _pue_energy(row: SiteMinute) -> tuple[float, float]:
    """(facility Wh, IT Wh) of a site minute for a sum/sum PUE: the meters when its PUE was
    metered, else node IT energy and node IT x the PUE used (the design PUE)."""
    if row.pue_source == "metered" and row.facility_energy_wh and row.it_energy_wh:
        return row.facility_energy_wh, row.it_energy_wh
    return row.node_it_energy_wh * row.pue, row.node_it_energy_wh


def _worst(burns: list[ServiceBurn]) -> WorstBurn | None:
    worst: WorstBurn | None = None
    for b in burns:
        for sli in SLIS:
            long, short = (
                (b.availability_1h, b.availability_5m)
                if sli == "availability"
                else (b.latency_1h, b.latency_5m)
            )
            if worst is None or long > worst.burn_1h:
                worst = WorstBurn(service=b.service, sli=sli, burn_1h=long, burn_5m=short)
    return worst


def _service_burn(row: SloBurn) -> ServiceBurn:
    return ServiceBurn(
        service=row.service,
        minute=_stamp(epoch_ms(row.window_start)),
        availability_1h=row.availability_burn.get(LONG, 0.0),
        availability_5m=row.availability_burn.get(SHORT, 0.0),
        latency_1h=row.latency_burn.get(LONG, 0.0),
        latency_5m=row.latency_burn.get(SHORT, 0.0),
        availability_budget_remaining=row.availability_budget_remaining,
        latency_budget_remaining=row.latency_budget_remaining,
    )


def _alert_view(a: AlertEvent) -> AlertView:
    return AlertView(
        alert_id=a.alert_id,
        kind=a.kind,
        rule=a.rule,
        severity=a.severity,
        state=a.state,
        fired_at=_stamp(a.fired_at_ms),
        at=_stamp(a.at_ms),
        value=a.value,
        threshold=a.threshold,
        service=a.service,
        team=a.team,
        site_id=a.site_id,
        node_id=a.node_id,
        sli=a.sli,
        long_window=a.long_window,
        short_window=a.short_window,
        burn_long=a.burn_long,
        burn_short=a.burn_short,
    )


class LiveState:
    """The last `window_minutes` closed minutes per site and the alerts firing now."""

    def __init__(self, fleet: Fleet, window_minutes: int = WINDOW_MINUTES) -> None:
        if window_minutes < 1:
            raise ValueError(f"window_minutes={window_minutes} must be at least 1")
        self.window_minutes = window_minutes
        self._labels = {s.site_id: f"{s.city}, {s.country}" for s in fleet.sites}
        self.as_of_ms: int | None = None
        self._site_minutes: dict[str, dict[int, SiteMinute]] = {}
        #: site (or `__all__`) -> minute -> service -> latest burn row of that minute.
        self._burns: dict[str, dict[int, dict[str, SloBurn]]] = {}
        self._latency: dict[str, dict[int, _Latency]] = {}
        self._latest_latency_ms: int | None = None
        self._alerts: dict[str, AlertEvent] = {}
        self._latest_alert_ms: int | None = None
        self._version = 0
        self._cached: tuple[int, LiveView] | None = None

    # -- window ------------------------------------------------------------------------------
    @property
    def window_start_ms(self) -> int | None:
        if self.as_of_ms is None:
            return None
        return self.as_of_ms - (self.window_minutes - 1) * MINUTE_MS

    def _too_old(self, minute_ms: int) -> bool:
        start = self.window_start_ms
        return start is not None and minute_ms < start

    def _advance(self, minute_ms: int) -> None:
        if self.as_of_ms is not None and minute_ms <= self.as_of_ms:
            return
        self.as_of_ms = minute_ms
        start = self.window_start_ms
        assert start is not None
        for rows in self._site_minutes.values():
            for old in [m for m in rows if m < start]:
                del rows[old]
        for burns in self._burns.values():
            for old in [m for m in burns if m < start]:
                del burns[old]
        self._evict_latency()

    def _evict_latency(self) -> None:
        floor = self.window_start_ms
        if self._latest_latency_ms is not None:
            ahead = self._latest_latency_ms - (self.window_minutes + AHEAD_MINUTES) * MINUTE_MS
            floor = ahead if floor is None else max(floor, ahead)
        if floor is None:
            return
        for per_minute in self._latency.values():
            for old in [m for m in per_minute if m < floor]:
                del per_minute[old]

    # -- inputs ------------------------------------------------------------------------------
    def add_site_minute(self, row: SiteMinute) -> None:
        minute = epoch_ms(row.window_start)
        self._advance(minute)
        if self._too_old(minute):
            return
        self._site_minutes.setdefault(row.site_id, {})[minute] = row
        self._version += 1

    def add_slo_burn(self, row: SloBurn) -> None:
        minute = epoch_ms(row.window_start)
        self._advance(minute)  # burn rows, like site minutes, come only for closed minutes
        if self._too_old(minute):
            return
        self._burns.setdefault(row.site_id, {}).setdefault(minute, {})[row.service] = row
        self._version += 1

    def add_node_minute(self, row: NodeMinuteItem) -> None:
        """Merge a node minute's latency sketch into its site-minute (marks are ignored)."""
        if not isinstance(row, NodeLatency) or row.latency is None:
            return
        if row.service == IDLE_SERVICE:
            return
        minute = epoch_ms(row.window_start)
        if self._too_old(minute):
            return
        if (
            self._latest_latency_ms is not None
            and minute < self._latest_latency_ms - (self.window_minutes + AHEAD_MINUTES) * MINUTE_MS
        ):
            return
        part = self._latency.setdefault(row.site_id, {}).setdefault(minute, _Latency())
        if row.key in part.keys:
            return  # a re-emission: identical values, already merged
        part.add(row.latency)
        part.keys.add(row.key)
        if self._latest_latency_ms is None or minute > self._latest_latency_ms:
            self._latest_latency_ms = minute
            self._evict_latency()
        self._version += 1

    def add_alert(self, alert: AlertEvent) -> None:
        current = self._alerts.get(alert.alert_id)
        if current is not None and (
            alert.at_ms < current.at_ms
            or (alert.at_ms == current.at_ms and current.state == "resolved")
        ):
            return  # older than what we hold: a replay
        self._alerts[alert.alert_id] = alert
        if self._latest_alert_ms is None or alert.at_ms > self._latest_alert_ms:
            self._latest_alert_ms = alert.at_ms
            keep_from = alert.at_ms - RESOLVED_KEEP_MINUTES * MINUTE_MS
            for alert_id in [
                k for k, a in self._alerts.items() if a.state == "resolved" and a.at_ms < keep_from
            ]:
                del self._alerts[alert_id]
        if len(self._alerts) > MAX_ALERTS:  # resolved first, then the longest firing
            order = sorted(
                self._alerts.values(), key=lambda a: (a.state == "firing", a.at_ms, a.alert_id)
            )
            for old in order[: len(self._alerts) - MAX_ALERTS]:
                del self._alerts[old.alert_id]
        self._version += 1

    # -- output ------------------------------------------------------------------------------
    def firing(self) -> list[AlertEvent]:
        """Alerts whose latest event is `firing`: pages first, then the longest firing."""
        alerts = [a for a in self._alerts.values() if a.state == "firing"]
        return sorted(alerts, key=lambda a: (a.severity != "page", a.fired_at_ms, a.alert_id))

    def view(self) -> LiveView:
        """The view of the current window (cached until the next input changes it)."""
        if self._cached is not None and self._cached[0] == self._version:
            return self._cached[1]
        minutes = self._window()
        firing = self.firing()
        per_site: dict[str, int] = {}
        for a in firing:
            if a.site_id:
                per_site[a.site_id] = per_site.get(a.site_id, 0) + 1
        sites = [
            self._site_view(site_id, [site_id], minutes, per_site.get(site_id, 0))
            for site_id in self._labels
        ]
        start = self.window_start_ms
        resolved = sorted(
            (
                a
                for a in self._alerts.values()
                if a.state == "resolved" and start is not None and a.at_ms >= start
            ),
            key=lambda a: (-a.at_ms, a.alert_id),
        )
        view = LiveView(
            window_minutes=self.window_minutes,
            as_of=_stamp(self.as_of_ms) if self.as_of_ms is not None else None,
            window_start=_stamp(start) if start is not None else None,
            sites=sites,
            fleet=self._site_view(ALL_SITES, list(self._labels), minutes, len(firing)),
            firing=[_alert_view(a) for a in firing],
            resolved=[_alert_view(a) for a in resolved],
        )
        self._cached = (self._version, view)
        return view

    def _window(self) -> list[int]:
        start = self.window_start_ms
        if start is None:
            return []
        return [start + i * MINUTE_MS for i in range(self.window_minutes)]

    def _site_view(
        self, site_id: str, members: list[str], minutes: list[int], alerts: int
    ) -> SiteView:
        """`site_id`'s numbers; for the fleet (`__all__`) the sums over `members`."""
        series: list[MinutePoint] = []
        requests = 0
        attributed = node_it = facility = it = 0.0
        sources: set[str] = set()
        seen = 0
        latency_parts: list[_Latency] = []
        burns_by_minute = self._burns.get(site_id, {})
        for minute in minutes:
            rows = [
                r for s in members if (r := self._site_minutes.get(s, {}).get(minute)) is not None
            ]
            parts = [p for s in members if (p := self._latency.get(s, {}).get(minute)) is not None]
            latency_parts += parts
            m_req = sum(r.requests for r in rows)
            m_attr = m_fac = m_it = 0.0
            for r in rows:
                f, i = _pue_energy(r)
                m_attr += r.node_it_energy_wh * r.pue  # the energy-minute rows' facility Wh
                m_fac, m_it = m_fac + f, m_it + i
                node_it += r.node_it_energy_wh
                sources.add("metered" if r.pue_source == "metered" else "design")
            if rows:
                seen += 1
            requests += m_req
            attributed, facility, it = attributed + m_attr, facility + m_fac, it + m_it
            minute_burns = [_service_burn(b) for b in burns_by_minute.get(minute, {}).values()]
            worst = _worst(minute_burns)
            series.append(
                MinutePoint(
                    minute=_stamp(minute),
                    requests=m_req if rows else None,
                    wh_per_request=m_attr / m_req if m_req else None,
                    pue=m_fac / m_it if m_it else None,
                    p95_latency_ms=_p95(parts),
                    burn_1h=worst.burn_1h if worst else None,
                )
            )
        latest = next((burns_by_minute[m] for m in reversed(minutes) if m in burns_by_minute), {})
        services = [_service_burn(latest[name]) for name in sorted(latest)]
        return SiteView(
            site_id=site_id,
            label=self._labels.get(site_id, "all sites"),
            minutes=seen,
            requests=requests,
            facility_energy_wh=attributed,
            node_it_energy_wh=node_it,
            wh_per_request=attributed / requests if requests else None,
            pue=facility / it if it else None,
            pue_source=None if not sources else sources.pop() if len(sources) == 1 else "mixed",
            p95_latency_ms=_p95(latency_parts),
            burn=_worst(services),
            services=services,
            alerts_firing=alerts,
            series=series,
        )
