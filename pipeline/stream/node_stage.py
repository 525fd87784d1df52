"""Stage 1, one input partition: node power samples and request logs → closed node × service
minutes (IT energy attributed by busy time, SLO counts, latency sketch, embodied carbon).

Driven record by record (by the Faust agent or the embedded runner); closes a minute as soon as
the partition's watermark passes its end, so results do not depend on batch boundaries. A
sample's event time, for lateness, is the start of its interval (`observed_at - interval_s`):
the earliest instant it adds energy to. Records for closed minutes become late events.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from pipeline.contracts.codec import encode
from pipeline.contracts.outputs import LateEvent, NodeMinute, PartitionMark
from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.records import NodeSample, RequestLog
from pipeline.fleet.model import Fleet, Node
from pipeline.metrics.carbon import embodied_g_per_minute
from pipeline.metrics.energy import (
    EPOCH,
    IDLE_SERVICE,
    MINUTE_MS,
    ONE_MS,
    UWH_PER_WH,
    ServiceBusy,
    attribute,
    epoch_ms,
    minute_of,
    split_sample,
)
from pipeline.metrics.sketch import LatencySketch
from pipeline.stream.clock import Clock, already_applied
from pipeline.stream.errors import UnknownReferenceError

Output = NodeMinute | PartitionMark | LateEvent
_NO_THRESHOLD = float("inf")  # services without a latency SLO are never slow


class NodeAcc(msgspec.Struct, kw_only=True):
    """One node in one minute: integer energy and coverage, hottest inlet."""

    energy_uwh: int = 0
    covered_ms: int = 0
    max_inlet_c: float | None = None


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


class NodeStageState(msgspec.Struct, kw_only=True):
    """Everything the stage needs to continue after a restart (held in a Faust table)."""

    partition: int
    partitions: int
    clock: Clock
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
    ) -> None:
        self.fleet = fleet
        self.state = state or NodeStageState(
            partition=partition,
            partitions=partitions,
            clock=Clock(lateness_ms=round(lateness_s * 1000)),
        )
        self.outputs: list[Output] = []
        self._latency_threshold = {s.service: s.slo.latency_threshold_ms for s in fleet.services}
        self._nodes: list[Node] = sorted(
            (n for n in fleet.nodes if partition_for(n.node_id.encode(), partitions) == partition),
            key=lambda n: n.node_id,
        )
        self._node_ids = {n.node_id for n in self._nodes}
        self._known_nodes = frozenset(fleet.node_by_id)
        self._embodied = {
            n.node_id: embodied_g_per_minute(n.embodied_kgco2e, n.lifetime_years)
            for n in fleet.nodes
        }

    # -- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return _encoder.encode(self.state)

    @classmethod
    def restore(cls, fleet: Fleet, data: bytes, lateness_s: float = 120.0) -> NodeStage:
        state = _decoder.decode(data)
        return cls(fleet, state.partition, state.partitions, lateness_s, state=state)

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
        node = self.fleet.node_by_id.get(sample.node_id)
        if node is None:
            raise UnknownReferenceError(f"node {sample.node_id!r} is not in the fleet")
        clock = self.state.clock
        observed_ms = epoch_ms(sample.observed_at)
        late_uwh = 0
        for minute, uwh, covered in split_sample(observed_ms, sample.interval_s, sample.power_w):
            if clock.is_closed(minute):
                late_uwh += uwh
                continue
            acc = self._minute(minute).nodes.get(node.node_id)
            if acc is None:
                acc = self.state.minutes[minute].nodes[node.node_id] = NodeAcc()
            acc.energy_uwh += uwh
            acc.covered_ms += covered
            if acc.max_inlet_c is None or sample.inlet_temp_c > acc.max_inlet_c:
                acc.max_inlet_c = sample.inlet_temp_c
        start_ms = observed_ms - round(sample.interval_s * 1000)
        if late_uwh:
            self._late(
                source,
                offset,
                sample.node_id,
                start_ms,
                raw or encode(sample),
                "sample interval overlaps closed minutes",
                late_uwh / UWH_PER_WH,
            )
        self._advance(start_ms)

    def on_request(
        self, req: RequestLog, *, source: str = "request", offset: int = -1, raw: bytes = b""
    ) -> None:
        if req.node_id not in self._known_nodes:
            raise UnknownReferenceError(f"node {req.node_id!r} is not in the fleet")
        finished_ms = (req.finished_at - EPOCH) // ONE_MS  # epoch_ms(), inlined: hot path
        minute = finished_ms - finished_ms % MINUTE_MS
        clock = self.state.clock
        if clock.closed_before_ms is not None and minute < clock.closed_before_ms:
            reason = "request finished in a closed minute"
            self._late(source, offset, req.node_id, finished_ms, raw or encode(req), reason, None)
            self._advance(finished_ms)
            return
        minute_acc = self.state.minutes.get(minute) or self._minute(minute)
        per_node = minute_acc.services.get(req.node_id)
        if per_node is None:
            per_node = minute_acc.services[req.node_id] = {}
        acc = per_node.get(req.service)
        if acc is None:
            acc = per_node[req.service] = ServiceAcc(team=req.team)
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
        if clock.max_event_ms is None or finished_ms > clock.max_event_ms:
            self._advance(finished_ms)

    def flush(self) -> None:
        """Close every open minute (end of a bounded input, e.g. the embedded demo)."""
        for minute in sorted(self.state.minutes):
            self._close(minute)
        if self.state.clock.max_event_ms is not None:
            self.state.clock.closed_before_ms = minute_of(self.state.clock.max_event_ms) + MINUTE_MS
            self._mark()

    # -- internals -----------------------------------------------------------------------------
    def _minute(self, minute: int) -> MinuteAcc:
        acc = self.state.minutes.get(minute)
        if acc is None:
            acc = self.state.minutes[minute] = MinuteAcc()
        return acc

    def _advance(self, event_ms: int) -> None:
        if self.state.clock.observe(event_ms):
            closed_before = self.state.clock.closed_before_ms
            assert closed_before is not None
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
    ) -> None:
        closed_before = self.state.clock.closed_before_ms
        assert closed_before is not None
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
        # The partition's fleet nodes (so silent nodes still carry their embodied carbon) plus
        # any node whose records arrived here although its key hashes elsewhere.
        seen = (acc.nodes.keys() | acc.services.keys()) - self._node_ids
        for node in [*self._nodes, *(self.fleet.node_by_id[n] for n in sorted(seen))]:
            self._close_node(node, acc, start, stamp)

    def _close_node(self, node: Node, acc: MinuteAcc, start: datetime, stamp: str) -> None:
        energy = acc.nodes.get(node.node_id) or NodeAcc()
        services = acc.services.get(node.node_id, {})
        busy = {name: ServiceBusy(name, s.team, s.busy_us) for name, s in services.items()}
        node_wh = energy.energy_uwh / UWH_PER_WH
        embodied = self._embodied[node.node_id]
        coverage = energy.covered_ms / MINUTE_MS
        for row in attribute(energy.energy_uwh, energy.covered_ms, node.idle_power_w, busy):
            s = services.get(row.service)
            if node_wh > 0:
                row_embodied = embodied * row.share
            else:
                row_embodied = embodied if row.service == IDLE_SERVICE else 0.0
            self.outputs.append(
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
                    latency=msgspec.to_builtins(s.latency.to_wire())
                    if s and s.latency.count
                    else None,
                    partition=self.state.partition,
                )
            )
