"""Seeded fleet simulator: minute by minute, the four input streams of a LatAm micro-DC fleet.

Each minute and site: the local hour sets request rates (diurnal, weekday), outdoor temperature
and solar output; requests land on nodes (GPU services on GPU nodes); node utilisation = background
work + request CPU time; power follows the Fan et al. curve; the facility meter sees IT power times
a temperature-dependent PUE. Latencies are log-normal with degradation episodes and 5xx bursts;
nodes suffer outages (no telemetry, no requests). One `numpy` generator seeded once drives it all,
so a seed always gives the same bytes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter

import numpy as np

from pipeline.contracts.codec import encode
from pipeline.contracts.records import FacilitySample, GridIntensity, NodeSample, RequestLog
from pipeline.contracts.topics import (
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
    NODE_TELEMETRY,
    REQUEST_LOG,
    TopicSpec,
)
from pipeline.errors import ConfigError
from pipeline.fleet.model import Fleet, Node, Service, Site
from pipeline.simulate import profiles
from pipeline.simulate.faults import MALFORMED_KINDS, FaultConfig, corrupt

_REGIONS = {
    "CO": ("CO-DC", "CO-ANT", "CO-VAC", "CO-ATL"),
    "MX": ("MX-CMX", "MX-MEX", "MX-JAL", "MX-NLE"),
    "BR": ("BR-SP", "BR-RJ", "BR-MG", "BR-PR"),
}
_TEST_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")  # RFC 5737 documentation ranges
_MIN = 60_000  # ms


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. `rps_scale` multiplies every service's request rate."""

    start: datetime
    minutes: int
    seed: int = 7
    rps_scale: float = 1.0
    node_interval_s: int = 30
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ConfigError(f"simulation start {self.start} must be an aware UTC time")
        if self.start.second or self.start.microsecond:
            raise ConfigError(f"simulation start {self.start} must be on a whole minute")
        if self.minutes < 1:
            raise ConfigError(f"minutes={self.minutes} must be at least 1")
        if self.rps_scale < 0:
            raise ConfigError(f"rps_scale={self.rps_scale} must not be negative")
        if not 1 <= self.node_interval_s <= 60 or 60 % self.node_interval_s:
            raise ConfigError(f"node_interval_s={self.node_interval_s} must divide 60")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as the simulator emits it. `fault` is None for a clean, on-time record."""

    topic: TopicSpec
    key: bytes | None
    value: bytes
    event_ms: int
    emit_ms: int
    fault: str | None = None


@dataclass
class SimStats:
    """What came out: valid records per topic and injected faults per kind."""

    valid: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def emitted(self) -> int:
        return (
            sum(self.valid.values())
            + self.faults["duplicate"]
            + sum(n for k, n in self.faults.items() if k.startswith("malformed"))
        )


@dataclass
class _NodeState:
    node: Node
    phase_s: int
    background: float
    down_until: int = -1
    last_power_w: float = 0.0


@dataclass
class _SiteMinute:
    """What one site's requests add up to in one minute, per node (indexes follow `states`)."""

    states: list[_NodeState]
    up: np.ndarray
    busy_cpu: np.ndarray
    busy_gpu: np.ndarray
    rx: np.ndarray
    tx: np.ndarray

    @classmethod
    def start(cls, states: list[_NodeState], minute: int) -> _SiteMinute:
        n = len(states)
        up = np.array([st.down_until < minute for st in states])
        return cls(states, up, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))


@dataclass
class _Episode:
    until: int = -1
    factor: float = 1.0


class Simulator:
    """Iterate `minutes()` for lists of envelopes in emission order; `stats` counts them."""

    def __init__(self, fleet: Fleet, config: SimConfig) -> None:
        self.fleet = fleet
        self.config = config
        self.stats = SimStats()
        self._rng = np.random.default_rng(config.seed)
        self._nodes = {
            site.site_id: [
                _NodeState(
                    node=n,
                    phase_s=int(self._rng.integers(1, config.node_interval_s + 1)),
                    background=float(self._rng.uniform(0.04, 0.12)),
                )
                for n in fleet.nodes_by_site[site.site_id]
            ]
            for site in fleet.sites
        }
        self._services = {
            site.site_id: [s for s in fleet.services if site.site_id in s.sites]
            for site in fleet.sites
        }
        keys = [(s.site_id, v.service) for s in fleet.sites for v in self._services[s.site_id]]
        self._slow = {k: _Episode() for k in keys}
        self._errors = {k: _Episode() for k in keys}
        self._hot = {s.site_id: _Episode(factor=0.0) for s in fleet.sites}
        self._weather = {s.site_id: 0.0 for s in fleet.sites}
        self._cloud = {s.site_id: 1.0 for s in fleet.sites}
        self._delayed: list[tuple[int, int, Envelope]] = []
        self._seq = 0
        self._ticks = itertools.count()

    # -- public -------------------------------------------------------------------------------
    def minutes(self) -> Iterator[list[Envelope]]:
        """Yield, per simulated minute, the envelopes due by its end, sorted by emission time."""
        base_ms = int(self.config.start.timestamp() * 1000)
        for m in range(self.config.minutes):
            t0 = base_ms + m * _MIN
            fresh: list[Envelope] = []
            if m == 0 or (t0 // _MIN) % 60 == 0:
                fresh.extend(self._grid(t0))
            for site in self.fleet.sites:
                fresh.extend(self._site_minute(site, m, t0))
            yield self._release(self._inject(fresh), t0 + _MIN)
        rest = [item[2] for item in sorted(self._delayed)]
        self._delayed.clear()
        if rest:
            yield rest

    def __iter__(self) -> Iterator[Envelope]:
        for batch in self.minutes():
            yield from batch

    # -- one site, one minute ------------------------------------------------------------------
    def _site_minute(self, site: Site, m: int, t0: int) -> list[Envelope]:
        rng = self._rng
        local = datetime.fromtimestamp(t0 / 1000, site.tz)
        hour = local.hour + local.minute / 60.0
        weather = self._weather[site.site_id] = 0.98 * self._weather[site.site_id] + float(
            rng.normal(0.0, 0.15)
        )
        temp = profiles.outdoor_temp_c(hour, site.climate.mean_temp_c, site.climate.daily_swing_c)
        temp += weather
        states = self._nodes[site.site_id]
        for st in states:
            if st.down_until < m and rng.random() < 1.0 / (3 * 1440):
                st.down_until = m + int(rng.integers(5, 31))
        acc = _SiteMinute.start(states, m)
        out: list[Envelope] = []
        for service in self._services[site.site_id]:
            out.extend(self._requests(site, service, m, t0, hour, local.weekday(), acc))
        out.extend(self._telemetry(site, m, t0, hour, temp, acc))
        out.append(self._facility(site, t0, hour, temp, states))
        return out

    def _requests(
        self,
        site: Site,
        service: Service,
        m: int,
        t0: int,
        hour: float,
        weekday: int,
        acc: _SiteMinute,
    ) -> list[Envelope]:
        rng = self._rng
        load = service.load
        key = (site.site_id, service.service)
        slow, errors = self._slow[key], self._errors[key]
        if slow.until < m and rng.random() < 1.0 / (2 * 1440):
            slow.until, slow.factor = m + int(rng.integers(10, 46)), float(rng.uniform(2.5, 5.0))
        if errors.until < m and rng.random() < 1.0 / (3 * 1440):
            errors.until, errors.factor = (
                m + int(rng.integers(3, 21)),
                float(rng.uniform(0.03, 0.25)),
            )
        rate = load.peak_rps * self.config.rps_scale * profiles.diurnal_load(hour, weekday)
        n = int(rng.poisson(rate * 60.0 * math.exp(rng.normal(0.0, 0.08))))
        gpu_pool = np.array([st.node.has_gpu for st in acc.states]) == load.needs_gpu
        pool = np.flatnonzero(acc.up & gpu_pool)
        if pool.size == 0:
            pool = np.flatnonzero(acc.up)
        if n == 0 or pool.size == 0:
            return []
        offs = np.sort(rng.integers(0, _MIN * 1000, n))  # microseconds into the minute
        which = rng.choice(pool, n)
        slow_factor = slow.factor if slow.until >= m else 1.0
        err_rate = errors.factor if errors.until >= m else 0.0005
        lat = load.median_latency_ms * slow_factor * np.exp(rng.normal(0.0, 0.45, n))
        u = rng.random((n, 2))
        cpu_s = load.cpu_ms_per_request / 1000.0 * np.exp(rng.normal(0.0, 0.3, n))
        b_in = (load.bytes_in * np.exp(rng.normal(0.0, 0.3, n))).astype(np.int64)
        b_out = (load.bytes_out * np.exp(rng.normal(0.0, 0.3, n))).astype(np.int64)
        np.add.at(acc.busy_gpu if load.needs_gpu else acc.busy_cpu, which, cpu_s)
        if load.needs_gpu:
            np.add.at(acc.busy_cpu, which, cpu_s * 0.15)
        np.add.at(acc.rx, which, b_in)
        np.add.at(acc.tx, which, b_out)
        routes: list[str | None] = list(service.routes) or [None]
        route_ix = rng.integers(0, len(routes), n)
        regions: tuple[str | None, ...] = _REGIONS.get(site.country, (None,))
        region_ix = rng.integers(0, len(regions), n)
        ip_ix = rng.integers(0, 3 * 254, n)
        base = datetime.fromtimestamp(t0 / 1000, UTC)
        out: list[Envelope] = []
        spec = REQUEST_LOG
        nodes = [acc.states[j].node for j in which.tolist()]
        route_of = [routes[j] for j in route_ix.tolist()]
        region_of = [regions[j] for j in region_ix.tolist()]
        ip_of = [f"{_TEST_NETS[ip // 254]}{ip % 254 + 1}" for ip in ip_ix.tolist()]
        lat_of = np.round(lat, 3).tolist()
        b_in_of, b_out_of, offs_of = b_in.tolist(), b_out.tolist(), offs.tolist()
        u_bad, u_kind = u[:, 0].tolist(), (u[:, 1] * 3).astype(np.int64).tolist()
        minute_hex = f"{site.site_id}-{t0 // _MIN:x}-"
        for i in range(n):
            status = 200
            if u_bad[i] < err_rate:
                status = (500, 502, 503)[u_kind[i]]
            elif u_bad[i] < err_rate + 0.02:
                status = (400, 404, 429)[u_kind[i]]
            node = nodes[i]
            off = offs_of[i]
            rec = RequestLog(
                finished_at=base + timedelta(microseconds=off),
                request_id=f"{minute_hex}{self._seq + i:x}",
                site_id=site.site_id,
                node_id=node.node_id,
                service=service.service,
                team=service.team,
                route=route_of[i],
                status=status,
                latency_ms=lat_of[i],
                bytes_in=b_in_of[i],
                bytes_out=b_out_of[i],
                client_region=region_of[i],
                client_ip=ip_of[i],
            )
            ms = t0 + off // 1000
            out.append(Envelope(spec, node.node_id.encode(), encode(rec), ms, ms))
        self._seq += n
        return out

    def _telemetry(
        self,
        site: Site,
        m: int,
        t0: int,
        hour: float,
        temp: float,
        acc: _SiteMinute,
    ) -> list[Envelope]:
        rng = self._rng
        interval = self.config.node_interval_s
        hot = self._hot[site.site_id]
        if hot.until < m and rng.random() < 1.0 / (5 * 1440):
            hot.until, hot.factor = m + int(rng.integers(10, 40)), float(rng.uniform(6.0, 12.0))
        heat = hot.factor if hot.until >= m else 0.0
        bg_shape = 0.6 + 0.4 * profiles.diurnal_load(hour, 0)
        out: list[Envelope] = []
        for j, st in enumerate(acc.states):
            node = st.node
            prev = st.last_power_w
            if not acc.up[j]:
                st.last_power_w = 0.0
                continue
            cpu = min(1.0, st.background * bg_shape + float(acc.busy_cpu[j]) / (node.cores * 60.0))
            gpu = min(1.0, float(acc.busy_gpu[j]) / 60.0) if node.has_gpu else None
            util = 0.4 * cpu + 0.6 * gpu if gpu is not None else cpu
            power = profiles.server_power_w(util, node.idle_power_w, node.max_power_w)
            power *= math.exp(float(rng.normal(0.0, 0.01)))
            power = min(node.max_power_w, max(node.idle_power_w, power))
            st.last_power_w = power
            inlet = 21.0 + 0.2 * (temp - 18.0) + (1.5 if node.rack_id.endswith("r2") else 0.0)
            inlet += heat + float(rng.normal(0.0, 0.3))
            for obs_s in range(st.phase_s, 61, interval):
                # A sample covers (obs - interval, obs]: blend this and the last minute's power.
                this_share = min(obs_s, interval) / interval
                mean_w = power * this_share + (prev or power) * (1.0 - this_share)
                share = interval / 60.0
                sample = NodeSample(
                    observed_at=datetime.fromtimestamp((t0 + obs_s * 1000) / 1000, UTC),
                    site_id=site.site_id,
                    rack_id=node.rack_id,
                    node_id=node.node_id,
                    interval_s=float(interval),
                    power_w=round(mean_w, 3),
                    cpu_util=round(cpu, 5),
                    gpu_util=None if gpu is None else round(gpu, 5),
                    mem_util=round(min(1.0, 0.35 + 0.4 * cpu), 4),
                    inlet_temp_c=round(inlet, 2),
                    outlet_temp_c=round(inlet + 8.0 + 12.0 * util, 2),
                    net_rx_bytes=int(float(acc.rx[j]) * share),
                    net_tx_bytes=int(float(acc.tx[j]) * share),
                )
                ms = t0 + obs_s * 1000
                out.append(Envelope(NODE_TELEMETRY, node.node_id.encode(), encode(sample), ms, ms))
        return out

    def _facility(
        self, site: Site, t0: int, hour: float, temp: float, states: list[_NodeState]
    ) -> Envelope:
        rng = self._rng
        it_w = 1.03 * sum(st.last_power_w for st in states)  # + network and storage gear
        pue = profiles.pue_at(site.design_pue, temp) * math.exp(float(rng.normal(0.0, 0.005)))
        facility_w = it_w * max(1.0, pue)
        cloud = self._cloud[site.site_id] = min(
            1.0, max(0.25, self._cloud[site.site_id] + float(rng.normal(0.0, 0.03)))
        )
        solar_w = site.solar_peak_kw * 1000.0 * profiles.solar_share(hour) * cloud
        water = (
            round(facility_w / 60_000.0 * profiles.water_l_per_kwh(temp), 4)
            if site.has_water_meter
            else None
        )
        sample = FacilitySample(
            observed_at=datetime.fromtimestamp((t0 + _MIN) / 1000, UTC),
            site_id=site.site_id,
            interval_s=60.0,
            facility_power_w=round(facility_w, 3),
            it_power_w=round(it_w, 3),
            onsite_renewable_w=round(min(solar_w, facility_w), 3),
            water_l=water,
            outdoor_temp_c=round(temp, 2),
        )
        ms = t0 + _MIN
        return Envelope(FACILITY_TELEMETRY, site.site_id.encode(), encode(sample), ms, ms)

    def _grid(self, t0: int) -> list[Envelope]:
        hour_ms = t0 - t0 % (60 * _MIN)
        out: list[Envelope] = []
        zones = {s.grid_zone: s for s in self.fleet.sites}
        for zone, site in sorted(zones.items()):
            local = datetime.fromtimestamp(hour_ms / 1000, site.tz)
            base = self.fleet.grid_fallback_gco2e_per_kwh[zone]
            value = base * profiles.grid_factor(local.hour) * math.exp(self._rng.normal(0.0, 0.04))
            rec = GridIntensity(
                valid_from=datetime.fromtimestamp(hour_ms / 1000, UTC),
                valid_to=datetime.fromtimestamp(hour_ms / 1000 + 3600, UTC),
                zone=zone,
                carbon_intensity_gco2e_per_kwh=round(value, 2),
                emission_factor_type="lifecycle",
                signal="average",
                source="microdc-simulator",
                is_estimated=False,
            )
            out.append(Envelope(GRID_INTENSITY, zone.encode(), encode(rec), hour_ms, hour_ms))
        return out

    # -- faults and ordering -------------------------------------------------------------------
    def _inject(self, fresh: list[Envelope]) -> list[Envelope]:
        for env in fresh:
            self.stats.valid[env.topic.name] += 1
        faults = self.config.faults
        if not faults.any or not fresh:
            return fresh
        rng = self._rng
        draws = rng.random((len(fresh), 4))
        lateness_ms = faults.allowed_lateness_s * 1000.0
        out: list[Envelope] = []
        for env, (d_bad, d_late, d_dup, d_extra) in zip(fresh, draws, strict=True):
            if d_late < faults.late:
                delay = int(lateness_ms + 60_000 + d_extra * 540_000)
                env = Envelope(
                    env.topic, env.key, env.value, env.event_ms, env.emit_ms + delay, "late"
                )
            elif d_late < faults.late + faults.out_of_order:
                delay = int(1000 + d_extra * (0.9 * lateness_ms - 1000))
                env = Envelope(
                    env.topic, env.key, env.value, env.event_ms, env.emit_ms + delay, "out_of_order"
                )
            if env.fault:
                self.stats.faults[env.fault] += 1
            out.append(env)
            if d_dup < faults.duplicate:
                out.append(
                    Envelope(
                        env.topic,
                        env.key,
                        env.value,
                        env.event_ms,
                        env.emit_ms + int(d_extra * 30_000),
                        "duplicate",
                    )
                )
                self.stats.faults["duplicate"] += 1
            if d_bad < faults.malformed:
                kind = MALFORMED_KINDS[int(d_extra * len(MALFORMED_KINDS))]
                out.append(
                    Envelope(
                        env.topic,
                        env.key,
                        corrupt(env.value, kind, rng),
                        env.event_ms,
                        env.emit_ms,
                        f"malformed:{kind}",
                    )
                )
                self.stats.faults[f"malformed:{kind}"] += 1
        return out

    def _release(self, items: list[Envelope], until_ms: int) -> list[Envelope]:
        """Emit what is due before `until_ms` in emission order; hold back what is delayed."""
        due: list[Envelope] = []
        for env in items:
            if env.emit_ms >= until_ms:
                heapq.heappush(self._delayed, (env.emit_ms, next(self._ticks), env))
            else:
                due.append(env)
        while self._delayed and self._delayed[0][0] < until_ms:
            due.append(heapq.heappop(self._delayed)[2])
        due.sort(key=attrgetter("emit_ms"))
        return due
