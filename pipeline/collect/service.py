"""`microdc collect`: poll every configured source, assemble node samples, hand them on.

Each poll reads every node's sources concurrently, each within its own timeout. A source that
fails (down, slow, refused, garbage) is logged once when its state changes (up -> down, down ->
up, not once per poll), counted in the metrics (polls, failures, last success, staleness per
source) and retried with capped exponential backoff while the other sources go on. A reading
that cannot be used becomes a dead letter with the source and the reason. Nothing is invented:
a node whose sources gave no power this poll gets no sample, and its minutes show the gap
(coverage < 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.collect.config import CollectorConfig
from pipeline.collect.counters import CounterRates
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.samples import FacilityAssembler, NodeAssembler, SampleError
from pipeline.collect.sources import SOURCE_ERRORS, Reader
from pipeline.contracts.outputs import DeadLetter
from pipeline.contracts.records import (
    MAX_INTERVAL_BYTES,
    MAX_NODE_POWER_W,
    MAX_SITE_POWER_W,
    CollectedRequestLog,
    FacilitySample,
    GridIntensity,
    NodeSample,
)
from pipeline.fleet.model import Fleet
from pipeline.stream.dead_letters import dead_letter
from pipeline.wallclock import wall_clock_ms

log = logging.getLogger(__name__)

#: Backoff after consecutive failures: 1 poll interval, doubling, at most this.
MAX_BACKOFF_S = 300.0
#: Counters faster than these are garbage (or an unnoticed reset): the interval is a gap.
MAX_RATES = {
    Quantity.ENERGY_J: MAX_NODE_POWER_W,
    Quantity.CPU_BUSY_S: 4096.0,  # CPU-seconds per second: cores
    Quantity.CPU_TOTAL_S: 4096.0,
    Quantity.NET_RX_BYTES: MAX_INTERVAL_BYTES / 3600,
    Quantity.NET_TX_BYTES: MAX_INTERVAL_BYTES / 3600,
}
#: A site meter's energy counters: the site's bound.
MAX_SITE_RATES = {Quantity.ENERGY_J: MAX_SITE_POWER_W}
#: Dead letters of the collector name this as their source topic.
COLLECT_TOPIC = "collect"


class CollectorMetrics:
    """Per source: polls, failures, last success (epoch s) and staleness, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("microdc_collect_polls", "Polls per source.", ["source"], registry=r)
        self.failures = Counter(
            "microdc_collect_failures",
            "Failed polls per source and reason (down, slow, refused, garbage).",
            ["source", "reason"],
            registry=r,
        )
        self.last_success = Gauge(
            "microdc_collect_last_success_timestamp_seconds",
            "When the source last answered.",
            ["source"],
            registry=r,
        )
        self.staleness = Gauge(
            "microdc_collect_staleness_seconds",
            "Seconds since the source last answered (as of the last poll).",
            ["source"],
            registry=r,
        )
        self.samples = Counter(
            "microdc_collect_samples", "Samples produced per node or site.", ["node"], registry=r
        )
        self.gaps = Counter(
            "microdc_collect_gaps",
            "Polls that gave a node or site no power: no sample.",
            ["node"],
            registry=r,
        )
        self.dead_letters = Counter(
            "microdc_collect_dead_letters",
            "Readings that could not be used.",
            ["source"],
            registry=r,
        )
        self.requests = Counter(
            "microdc_collect_requests",
            "Request logs produced per source (access log or OTLP receiver).",
            ["source"],
            registry=r,
        )
        self.grid_values = Counter(
            "microdc_collect_grid_values",
            "Grid-intensity values produced per source (new or revised only).",
            ["source"],
            registry=r,
        )
        self.buffer_refused = Counter(
            "microdc_collect_buffer_refused_records",
            "Records the full disk buffer refused (their polls are gaps).",
            registry=r,
        )
        self.buffered_bytes = Gauge(
            "microdc_collect_buffered_bytes",
            "Bytes waiting in the disk buffer for Kafka.",
            registry=r,
        )

    def stale(self, health: SourceHealth, now_ms: int) -> None:
        """Set the source's staleness: seconds since it last answered (once it has)."""
        if health.last_success_ms is not None:
            self.staleness.labels(health.label).set((now_ms - health.last_success_ms) / 1000)


@dataclass
class SourceHealth:
    """One source's state between polls."""

    label: str
    up: bool | None = None
    consecutive_failures: int = 0
    last_success_ms: int | None = None
    retry_at_ms: int = 0

    def due(self, now_ms: int) -> bool:
        return now_ms >= self.retry_at_ms

    def ok(self, now_ms: int) -> None:
        if self.up is False:
            log.info(
                "%s: answering again after %d failed polls", self.label, self.consecutive_failures
            )
        self.up, self.consecutive_failures, self.retry_at_ms = True, 0, 0
        self.last_success_ms = now_ms

    def failed(self, now_ms: int, reason: str, poll_interval_s: float) -> None:
        if self.up is not False:
            log.warning("%s: not answering (%s); retrying with backoff", self.label, reason)
        self.up = False
        self.consecutive_failures += 1
        backoff_s = min(poll_interval_s * 2 ** (self.consecutive_failures - 1), MAX_BACKOFF_S)
        self.retry_at_ms = now_ms + round(backoff_s * 1000)


@dataclass
class Plan:
    """What is polled for one node or site."""

    #: The node or site id.
    owner: str
    readers: list[Reader]
    health: list[SourceHealth]
    assembler: NodeAssembler | FacilityAssembler


@dataclass
class PollResult:
    samples: list[NodeSample] = field(default_factory=list)
    facility_samples: list[FacilitySample] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: The nodes and sites that got no sample this poll.
    gaps: list[str] = field(default_factory=list)
    #: Request logs read from access logs or received over OTLP (client IPs hashed or gone).
    requests: list[CollectedRequestLog] = field(default_factory=list)
    grid: list[GridIntensity] = field(default_factory=list)


class Collector:
    """Polls the nodes of a collector file through `readers` (built by `sources.reader`)."""

    def __init__(
        self,
        config: CollectorConfig,
        fleet: Fleet,
        make_reader: Callable[..., Reader],
        *,
        metrics: CollectorMetrics | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.config = config
        self.metrics = metrics or CollectorMetrics()
        self.clock_ms = clock_ms
        node_rates, site_rates = CounterRates(MAX_RATES), CounterRates(MAX_SITE_RATES)
        self.plans: list[Plan] = []
        for entry in config.nodes:
            node = fleet.node_by_id[entry.node_id]
            readers = [make_reader(source) for source in entry.sources]
            assembler = NodeAssembler(node, node_rates, config.poll_interval_s)
            self.plans.append(Plan(entry.node_id, readers, _health(readers), assembler))
        for site in config.sites:
            readers = [make_reader(source) for source in site.sources]
            facility = FacilityAssembler(
                site.site_id,
                [source.measures for source in site.sources],
                site_rates,
                config.poll_interval_s,
                renewable_metered=site.onsite_renewable == "metered",
            )
            self.plans.append(Plan(site.site_id, readers, _health(readers), facility))

    async def poll(self) -> PollResult:
        """One round: every node's and site's due sources, concurrently."""
        now = self.clock_ms()
        result = PollResult()
        polled = await asyncio.gather(*(self._poll(plan, now, result) for plan in self.plans))
        for plan, readings in zip(self.plans, polled, strict=True):
            try:
                sample = plan.assembler.sample(readings, now)
            except SampleError as exc:
                result.dead_letters.append(self._dead(plan.owner, now, str(exc), readings))
                continue
            if sample is None:
                result.gaps.append(plan.owner)
                self.metrics.gaps.labels(plan.owner).inc()
                continue
            if isinstance(sample, FacilitySample):
                result.facility_samples.append(sample)
            else:
                result.samples.append(sample)
            self.metrics.samples.labels(plan.owner).inc()
        return result

    async def _poll(self, plan: Plan, now: int, result: PollResult) -> list[list[Reading]]:
        async def one(reader: Reader, health: SourceHealth) -> list[Reading]:
            if not health.due(now):
                return []
            self.metrics.polls.labels(reader.label).inc()
            try:
                readings = await reader.read()
            except SOURCE_ERRORS as exc:
                reason = type(exc).__name__
                self.metrics.failures.labels(reader.label, reason).inc()
                health.failed(now, str(exc) or reason, self.config.poll_interval_s)
                # an answer that is garbage (the readers' *DataError are ValueErrors), not an
                # absence: a dead letter with the source and the reason
                if isinstance(exc, ValueError):
                    result.dead_letters.append(self._dead(reader.label, now, str(exc), []))
                return []
            health.ok(now)
            self.metrics.last_success.labels(reader.label).set(now / 1000)
            return readings

        out = await asyncio.gather(
            *(one(r, h) for r, h in zip(plan.readers, plan.health, strict=True))
        )
        for health in plan.health:
            self.metrics.stale(health, now)
        return list(out)

    def _dead(
        self, source: str, at_ms: int, reason: str, readings: Sequence[Sequence[Reading]]
    ) -> DeadLetter:
        self.metrics.dead_letters.labels(source).inc()
        body = msgspec.json.encode([[vars(r) for r in rs] for rs in readings])
        return dead_letter(COLLECT_TOPIC, -1, at_ms, source.encode(), body, "invalid", reason)

    async def run(
        self, emit: Callable[[PollResult], Awaitable[object]], stop: asyncio.Event
    ) -> None:
        """Poll every `poll_interval_s` (on the clock, not drifting) until `stop` is set."""
        interval_ms = round(self.config.poll_interval_s * 1000)
        next_at = self.clock_ms()
        while not stop.is_set():
            await emit(await self.poll())
            next_at += interval_ms
            delay = max(0.0, (next_at - self.clock_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def close(self) -> None:
        for plan in self.plans:
            for reader in plan.readers:
                await reader.close()


def _health(readers: list[Reader]) -> list[SourceHealth]:
    return [SourceHealth(r.label) for r in readers]
