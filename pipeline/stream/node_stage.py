"""Stage 1, one input partition: node power samples and request logs → closed node × service
minutes (IT energy attributed by busy time, SLO counts, latency sketch, embodied carbon).

Driven record by record (by the Faust agent or the embedded runner). Each source (`SOURCES`:
node telemetry, request logs) has its own watermark; a minute closes as soon as the watermarks
of every source the driver waits for have passed its end, so results depend neither on batch
boundaries nor on how the two streams interleave. A record is late by its own stream's
watermark (or because the driver stopped waiting for its stream: `exclude`). A sample's event
time, for lateness, is the start of its interval (`observed_at - interval_s`): the earliest
instant it adds energy to. Records for closed minutes become late events. Rows are emitted for
the nodes whose records arrived here, whatever partition the producer chose; silent nodes are
stage 2's, and so is a node whose records of one minute arrived on several partitions (an
unkeyed or round-robin producer): its rows carry the exact sums, so stage 2 rebuilds what one
partition would have computed (`merge_node_minutes`).

A record delivered twice counts once, as in the warehouse: a request by `request_id` within
the minute it finished, a node sample by (`node_id`, `observed_at`) within the minute its
interval ends. (A redelivery after its minute closed is a late event, and the warehouse keeps one
copy from bronze.)

Every check that can reject a record runs before the record changes any state, so a rejected
record (raised as a `BadRecordError`, dead-lettered by the driver) leaves no trace: it names a
node, site, service and team the fleet knows, together; a sample draws at most
`plausibility.max_power_ratio` × the node's `max_power_w`; an event time more than
`plausibility.max_future_s` past both the partition's latest event time and the driver's clock
(`now_ms`, injected; the core never reads the wall clock itself) never moves the watermark. Caps on
what one minute may accumulate keep every sum far inside int64, so no record can make a snapshot
unserializable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from pipeline.contracts.codec import encode
from pipeline.contracts.outputs import LateEvent, NodeMinute, PartitionMark
from pipeline.contracts.records import EPOCH, ONE_MS, NodeSample, RequestLog, epoch_ms
from pipeline.fleet.model import Fleet, Node
from pipeline.metrics.carbon import embodied_g_per_minute
from pipeline.metrics.energy import (
    IDLE_SERVICE,
    MINUTE_MS,
    UWH_PER_WH,
    ServiceBusy,
    attribute,
    minute_of,
    split_sample,
)
from pipeline.metrics.sketch import LatencySketch, SketchWire
from pipeline.stream.clock import Clock, already_applied
from pipeline.stream.errors import (
    ImplausibleTimeError,
    ImplausibleValueError,
    UnknownReferenceError,
)

Output = NodeMinute | PartitionMark | LateEvent
_NO_THRESHOLD = float("inf")  # services without a latency SLO are never slow
#: Most requests of one service on one node in one minute (83k/s). With the contract's bounds
#: (1 TB, one day per request) every sum of a `ServiceAcc` then stays below 2**63.
MAX_REQUESTS_PER_MINUTE = 5_000_000
#: Most sample-seconds one node may report for one minute (duplicates, overlapping intervals):
#: a thousand times full coverage. Keeps energy sums far inside int64.
MAX_COVERED_MS = 1000 * MINUTE_MS

NowMs = Callable[[], int | None]
#: The input streams of a partition, each with its own watermark (the names drivers pass as
#: `source`): a minute closes when every one of them has passed it.
SOURCES = ("node", "request")


def no_clock() -> int | None:
    """The default driver clock: none, so only the stream itself bounds future event times."""
    return None


def future_check(
    event_ms: int, stream_max_ms: int | None, now_ms: NowMs, horizon_ms: int, what: str
) -> None:
    """Raise `ImplausibleTimeError` if `event_ms` lies more than `horizon_ms` past both the
    stream's latest event time and the driver's clock (either may be unknown)."""
    now = now_ms()
    refs = [r for r in (stream_max_ms, now) if r is not None]
    if refs and event_ms > max(refs) + horizon_ms:
        raise ImplausibleTimeError(
            f"{what} {_iso(event_ms).isoformat().replace('+00:00', 'Z')} is more than "
            f"{horizon_ms / 3_600_000:g} h past the latest event time of its stream and the "
            "driver's clock (fleet plausibility.max_future_s)"
        )


class NodeAcc(msgspec.Struct, kw_only=True):
    """One node in one minute: integer energy and coverage, hottest inlet."""

    energy_uwh: int = 0
    covered_ms: int = 0
    max_inlet_c: float | None = None
    #: `observed_at` (ms) of this node's samples whose interval ends in this minute: a sample
    #: delivered again (same node, same `observed_at`) is found here and counted once.
    sample_ends: list[int] = msgspec.field(default_factory=list)


class ServiceAcc(msgspec.Struct, kw_only=True):
    """One service on one node in one minute."""

    team: str
    requests: int = 0
    errors_5xx: int = 0
    slow: int = 0
    busy_us: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    latency: LatencySketch = msgspec.field(default_factory=LatencySketch)


class MinuteAcc(msgspec.Struct, kw_only=True):
    nodes: dict[str, NodeAcc] = msgspec.field(default_factory=dict)
    services: dict[str, dict[str, ServiceAcc]] = msgspec.field(default_factory=dict)
    #: `request_id`s of the requests finished in this minute: a redelivery counts once. (A
    #: dict, not a set: insertion order survives a snapshot, so snapshots are reproducible.)
    request_ids: dict[str, None] = msgspec.field(default_factory=dict)


class NodeStageState(msgspec.Struct, kw_only=True):
    """Everything the stage needs to continue after a restart (held in a Faust table)."""

    partition: int
    partitions: int
    #: The partition's clock: `max_event_ms` over every source, `closed_before_ms` the minimum
    #: over the sources' own clocks (the combined watermark).
    clock: Clock
    #: One clock per source (`SOURCES`): a stream running behind the other holds closing back
    #: instead of becoming late wholesale.
    sources: dict[str, Clock] = msgspec.field(default_factory=dict)
    minutes: dict[int, MinuteAcc] = msgspec.field(default_factory=dict)
    offsets: dict[str, int] = msgspec.field(default_factory=dict)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(NodeStageState)


def _iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class NodeStage:
    """The stage-1 processor of one partition; `drain()` takes the outputs collected so far."""

    def __init__(
        self,
        fleet: Fleet,
        partition: int,
        partitions: int,
        lateness_s: float = 120.0,
        state: NodeStageState | None = None,
        now_ms: NowMs = no_clock,
        sources: tuple[str, ...] = SOURCES,
    ) -> None:
        self.fleet = fleet
        self.now_ms = now_ms
        #: Sources whose watermark closing waits for, and those the driver stopped waiting for
        #: (`exclude`: silent or too far behind for its skew bound; never decided in here).
        self.expected = sources
        self.excluded: frozenset[str] = frozenset()
        self.state = state or NodeStageState(
            partition=partition,
            partitions=partitions,
            clock=Clock(lateness_ms=round(lateness_s * 1000)),
        )
        self.outputs: list[Output] = []
        #: Redeliveries dropped (not persisted: the driver turns them into metrics).
        self.duplicate_samples = 0
        self.duplicate_requests = 0
        self._latency_threshold = {s.service: s.slo.latency_threshold_ms for s in fleet.services}
        self._node_site = {n.node_id: n.site_id for n in fleet.nodes}
        self._service_team = {s.service: s.team for s in fleet.services}
        limits = fleet.plausibility
        self._max_power_w = {n.node_id: n.max_power_w * limits.max_power_ratio for n in fleet.nodes}
        self._horizon_ms = round(limits.max_future_s * 1000)
        self._embodied = {
            n.node_id: embodied_g_per_minute(n.embodied_kgco2e, n.lifetime_years)
            for n in fleet.nodes
        }

    # -- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return _encoder.encode(self.state)

    @classmethod
    def restore(
        cls, fleet: Fleet, data: bytes, lateness_s: float = 120.0, now_ms: NowMs = no_clock
    ) -> NodeStage:
        state = _decoder.decode(data)
        return cls(fleet, state.partition, state.partitions, lateness_s, state=state, now_ms=now_ms)

    def drain(self) -> list[Output]:
        out, self.outputs = self.outputs, []
        return out

    def seen(self, source: str, offset: int) -> bool:
        """True if this source offset was already applied (a replay after a restart)."""
        return already_applied(self.state.offsets, source, offset)

    # -- inputs --------------------------------------------------------------------------------
    def on_sample(
        self, sample: NodeSample, *, source: str = "node", offset: int = -1, raw: bytes = b""
    ) -> None:
        node = self._check_sample(sample)
        clock = self.state.clock
        observed_ms = epoch_ms(sample.observed_at)
        max_ms = clock.max_event_ms
        if max_ms is None or observed_ms > max_ms + self._horizon_ms:
            future_check(observed_ms, max_ms, self.now_ms, self._horizon_ms, "observed_at")
        parts = list(split_sample(observed_ms, sample.interval_s, sample.power_w))
        closed = self._closed_before(source)
        end_minute = parts[-1][0] if parts else None
        if end_minute is not None and (closed is None or end_minute >= closed):
            end_acc = self.state.minutes.get(end_minute)
            end_node = end_acc.nodes.get(node.node_id) if end_acc is not None else None
            if end_node is not None and observed_ms in end_node.sample_ends:
                self.duplicate_samples += 1  # the same sample again: it counted already
                return
        for minute, _, covered in parts:
            minute_acc = self.state.minutes.get(minute)
            known = minute_acc.nodes.get(node.node_id) if minute_acc is not None else None
            if known is not None and known.covered_ms + covered > MAX_COVERED_MS:
                raise ImplausibleValueError(
                    f"node {node.node_id!r} reported more than {MAX_COVERED_MS // MINUTE_MS}x "
                    f"full coverage for the minute at {_iso(minute).isoformat()}"
                )
        late_uwh = 0
        for minute, uwh, covered in parts:
            if closed is not None and minute < closed:
                late_uwh += uwh
                continue
            acc = self._minute(minute).nodes.get(node.node_id)
            if acc is None:
                acc = self.state.minutes[minute].nodes[node.node_id] = NodeAcc()
            acc.energy_uwh += uwh
            acc.covered_ms += covered
            inlet = sample.inlet_temp_c
            if inlet is not None and (acc.max_inlet_c is None or inlet > acc.max_inlet_c):
                acc.max_inlet_c = inlet
            if minute == end_minute:
                acc.sample_ends.append(observed_ms)
        start_ms = observed_ms - round(sample.interval_s * 1000)
        if late_uwh and closed is not None:  # energy is late only where minutes closed
            self._late(
                source,
                offset,
                sample.node_id,
                start_ms,
                raw or encode(sample),
                "sample interval overlaps closed minutes",
                late_uwh / UWH_PER_WH,
                closed,
            )
        self._advance(source, start_ms)

    def on_request(
        self, req: RequestLog, *, source: str = "request", offset: int = -1, raw: bytes = b""
    ) -> None:
        if self._node_site.get(req.node_id) != req.site_id or (
            self._service_team.get(req.service) != req.team
        ):
            self._reject_request(req)
        finished_ms = (req.finished_at - EPOCH) // ONE_MS  # epoch_ms(), inlined: hot path
        minute = finished_ms - finished_ms % MINUTE_MS
        clock = self.state.clock
        max_ms = clock.max_event_ms
        if max_ms is None or finished_ms > max_ms + self._horizon_ms:
            future_check(finished_ms, max_ms, self.now_ms, self._horizon_ms, "finished_at")
        own = self.state.sources.get(source)
        closed = clock.closed_before_ms  # `_closed_before(source)`, inlined: hot path
        if own is not None:
            mine = own.closed_before_ms
            if mine is not None and (closed is None or mine > closed):
                closed = mine
        if closed is not None and minute < closed:
            reason = "request finished in a closed minute"
            raw = raw or encode(req)
            self._late(source, offset, req.node_id, finished_ms, raw, reason, None, closed)
            self._advance(source, finished_ms)
            return
        minute_acc = self.state.minutes.get(minute) or self._minute(minute)
        request_ids = minute_acc.request_ids
        if req.request_id in request_ids:
            self.duplicate_requests += 1  # a redelivery (producer retry, replayed shipper)
            return
        per_node = minute_acc.services.get(req.node_id)
        if per_node is None:
            per_node = minute_acc.services[req.node_id] = {}
        acc = per_node.get(req.service)
        if acc is None:
            acc = per_node[req.service] = ServiceAcc(team=req.team)
        elif acc.requests >= MAX_REQUESTS_PER_MINUTE:
            raise ImplausibleValueError(
                f"more than {MAX_REQUESTS_PER_MINUTE:,} requests of {req.service!r} on node "
                f"{req.node_id!r} in one minute"
            )
        request_ids[req.request_id] = None
        latency = req.latency_ms
        acc.requests += 1
        if req.status >= 500:
            acc.errors_5xx += 1
        if latency > self._latency_threshold.get(req.service, _NO_THRESHOLD):
            acc.slow += 1
        acc.busy_us += round(latency * 1000)
        acc.bytes_in += req.bytes_in
        acc.bytes_out += req.bytes_out
        acc.latency.add(latency)
        if own is None or own.max_event_ms is None or finished_ms > own.max_event_ms:
            self._advance(source, finished_ms)

    def flush(self) -> None:
        """Close every open minute (end of a bounded input, e.g. the embedded demo)."""
        for minute in sorted(self.state.minutes):
            self._close(minute)
        if self.state.clock.max_event_ms is not None:
            self.state.clock.closed_before_ms = minute_of(self.state.clock.max_event_ms) + MINUTE_MS
            self._mark()

    # -- checks (before any state changes) -------------------------------------------------------
    def _check_sample(self, sample: NodeSample) -> Node:
        node = self.fleet.node_by_id.get(sample.node_id)
        if node is None:
            raise UnknownReferenceError(f"node {sample.node_id!r} is not in the fleet")
        if sample.site_id != node.site_id or sample.rack_id != node.rack_id:
            raise UnknownReferenceError(
                f"node {node.node_id!r} is in site {node.site_id!r}, rack {node.rack_id!r} in "
                f"the fleet; the record says site {sample.site_id!r}, rack {sample.rack_id!r}"
            )
        limit = self._max_power_w[node.node_id]
        if sample.power_w > limit:
            raise ImplausibleValueError(
                f"power_w {sample.power_w:g} W is above {limit:g} W (node {node.node_id!r}: "
                f"max_power_w {node.max_power_w:g} W x plausibility.max_power_ratio "
                f"{self.fleet.plausibility.max_power_ratio:g})"
            )
        return node

    def _reject_request(self, req: RequestLog) -> None:
        """Raise why a request's node, site, service and team do not fit the fleet."""
        site = self._node_site.get(req.node_id)
        if site is None:
            raise UnknownReferenceError(f"node {req.node_id!r} is not in the fleet")
        if site != req.site_id:
            raise UnknownReferenceError(
                f"node {req.node_id!r} is in site {site!r} in the fleet; the record says "
                f"{req.site_id!r}"
            )
        team = self._service_team.get(req.service)
        if team is None:
            raise UnknownReferenceError(f"service {req.service!r} is not in the fleet")
        raise UnknownReferenceError(
            f"service {req.service!r} belongs to team {team!r} in the fleet; the record says "
            f"{req.team!r}"
        )

    # -- internals -----------------------------------------------------------------------------
    def _minute(self, minute: int) -> MinuteAcc:
        acc = self.state.minutes.get(minute)
        if acc is None:
            acc = self.state.minutes[minute] = MinuteAcc()
        return acc

    def exclude(self, sources: frozenset[str]) -> None:
        """The driver's decision (wall clock, caught-up positions) to stop waiting for
        `sources`: their records for minutes the others close become late events."""
        if sources != self.excluded:
            self.excluded = sources
            self._close_to(self._combined())

    def source_watermarks(self) -> dict[str, int | None]:
        """Each expected source's watermark (max event time - lateness; None before its
        first record)."""
        out: dict[str, int | None] = {}
        for name in self.expected:
            c = self.state.sources.get(name)
            out[name] = (
                None if c is None or c.max_event_ms is None else c.max_event_ms - c.lateness_ms
            )
        return out

    def _advance(self, source: str, event_ms: int) -> None:
        part = self.state.clock
        if part.max_event_ms is None or event_ms > part.max_event_ms:
            part.max_event_ms = event_ms
        own = self.state.sources.get(source)
        if own is None:
            own = self.state.sources[source] = Clock(lateness_ms=part.lateness_ms)
            own.observe(event_ms)
        elif not own.observe(event_ms):
            return
        self._close_to(self._combined())

    def _closed_before(self, source: str) -> int | None:
        """Minutes before this are closed for `source`'s records: its own watermark judges
        its lateness (the other streams' order cannot make it late), and the partition's
        closing, which passes it only when the driver excluded `source`."""
        own = self.state.sources.get(source)
        mine = own.closed_before_ms if own is not None else None
        part = self.state.clock.closed_before_ms
        if mine is None:
            return part
        return mine if part is None or mine > part else part

    def _combined(self) -> int | None:
        """The minimum of the waited-for sources' `closed_before` (None while one of them has
        no record yet); if the driver excluded every source, the ones seen decide."""
        clocks = self.state.sources
        needed = [name for name in self.expected if name not in self.excluded] or list(clocks)
        combined: int | None = None
        for name in needed:
            c = clocks.get(name)
            if c is None or c.closed_before_ms is None:
                return None
            if combined is None or c.closed_before_ms < combined:
                combined = c.closed_before_ms
        return combined

    def _close_to(self, closed_before: int | None) -> None:
        part = self.state.clock
        if closed_before is None or (
            part.closed_before_ms is not None and closed_before <= part.closed_before_ms
        ):
            return
        part.closed_before_ms = closed_before
        for minute in sorted(m for m in self.state.minutes if m < closed_before):
            self._close(minute)
        self._mark()

    def _mark(self) -> None:
        closed_before = self.state.clock.closed_before_ms
        assert closed_before is not None
        self.outputs.append(
            PartitionMark(
                partition=self.state.partition,
                partitions=self.state.partitions,
                closed_before=_iso(closed_before),
            )
        )

    def _late(
        self,
        source: str,
        offset: int,
        key: str,
        event_ms: int,
        raw: bytes,
        reason: str,
        late_wh: float | None,
        closed_before: int,
    ) -> None:
        self.outputs.append(
            LateEvent(
                key=f"{source}|{self.state.partition}|{offset}|{key}|{event_ms}",
                source_topic=source,
                partition=self.state.partition,
                offset=offset,
                record_key=key,
                event_at=_iso(event_ms),
                closed_before=_iso(closed_before),
                reason=reason,
                late_energy_wh=late_wh,
                value=raw.decode("utf-8", "replace"),
            )
        )

    def _close(self, minute: int) -> None:
        acc = self.state.minutes.pop(minute)
        start = _iso(minute)
        stamp = start.isoformat().replace("+00:00", "Z")
        # Only the nodes whose records arrived here: on which partition a node's records arrive
        # is the producer's choice (librdkafka's CRC32, murmur2, ...), so the rows of silent
        # nodes (no sample, no request: embodied carbon only) come from stage 2, which sees the
        # whole fleet.
        by_id = self.fleet.node_by_id
        for node_id in sorted(acc.nodes.keys() | acc.services.keys()):
            node = by_id[node_id]
            self.outputs.extend(
                node_minute_rows(
                    node,
                    acc.nodes.get(node_id) or NodeAcc(),
                    acc.services.get(node_id, {}),
                    start,
                    stamp,
                    self._embodied[node_id],
                    self.state.partition,
                )
            )


def node_minute_rows(
    node: Node,
    energy: NodeAcc,
    services: dict[str, ServiceAcc],
    start: datetime,
    stamp: str,
    embodied_g: float,
    partition: int,
) -> list[NodeMinute]:
    """The closed rows of one node in one minute: its energy attributed to services by busy
    time, the rest idle; embodied carbon shared the same way (all on the idle row of a node
    that drew nothing). A node with neither samples nor requests gets one idle row."""
    busy = {name: ServiceBusy(name, s.team, s.busy_us, s.requests) for name, s in services.items()}
    node_wh = energy.energy_uwh / UWH_PER_WH
    coverage = energy.covered_ms / MINUTE_MS
    out: list[NodeMinute] = []
    for row in attribute(energy.energy_uwh, energy.covered_ms, node.idle_power_w, busy):
        s = services.get(row.service)
        if node_wh > 0:
            row_embodied = embodied_g * row.share
        else:
            row_embodied = embodied_g if row.service == IDLE_SERVICE else 0.0
        out.append(
            NodeMinute(
                key=f"{stamp}|{node.node_id}|{row.service}",
                window_start=start,
                site_id=node.site_id,
                rack_id=node.rack_id,
                node_id=node.node_id,
                service=row.service,
                team=row.team,
                requests=s.requests if s else 0,
                errors_5xx=s.errors_5xx if s else 0,
                slow=s.slow if s else 0,
                busy_ms=s.busy_us / 1000 if s else 0.0,
                bytes_in=s.bytes_in if s else 0,
                bytes_out=s.bytes_out if s else 0,
                it_energy_wh=row.energy_wh,
                node_energy_wh=node_wh,
                coverage=coverage,
                embodied_gco2e=row_embodied,
                max_inlet_c=energy.max_inlet_c,
                latency=msgspec.to_builtins(s.latency.to_wire()) if s and s.latency.count else None,
                partition=partition,
            )
        )
    return out


def merge_node_minutes(
    node: Node,
    parts: list[list[NodeMinute]],
    start: datetime,
    stamp: str,
    embodied_g: float,
    partition: int,
) -> list[NodeMinute]:
    """The rows one partition would have closed for `node`'s minute, from the rows several
    partitions closed for it (each list: one partition's rows of that node and minute).

    Rows carry integer sums in exact decimal form (`node_energy_wh` = µWh / 10**6, `coverage` =
    ms / 60,000, `busy_ms` = µs / 1000) and latency sketches that merge exactly, so the sums are
    rebuilt and attributed again: the result equals a single partition's, value for value.
    (What cannot be rebuilt: a record delivered twice to two partitions counts twice.)
    """
    energy = NodeAcc()
    services: dict[str, ServiceAcc] = {}
    for rows in parts:
        first = rows[0]
        energy.energy_uwh += round(first.node_energy_wh * UWH_PER_WH)
        energy.covered_ms += round(first.coverage * MINUTE_MS)
        inlet = first.max_inlet_c
        if inlet is not None and (energy.max_inlet_c is None or inlet > energy.max_inlet_c):
            energy.max_inlet_c = inlet
        for row in rows:
            if row.service == IDLE_SERVICE:
                continue  # derived from the sums, not one of them
            acc = services.get(row.service)
            if acc is None:
                acc = services[row.service] = ServiceAcc(team=row.team)
            acc.requests += row.requests
            acc.errors_5xx += row.errors_5xx
            acc.slow += row.slow
            acc.busy_us += round(row.busy_ms * 1000)
            acc.bytes_in += row.bytes_in
            acc.bytes_out += row.bytes_out
            if row.latency is not None:
                acc.latency.merge(LatencySketch.from_wire(msgspec.convert(row.latency, SketchWire)))
    return node_minute_rows(node, energy, services, start, stamp, embodied_g, partition)
