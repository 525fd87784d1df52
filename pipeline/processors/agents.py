"""The two stage agents: fetched batches in, the pure stream core in the middle, outputs out.

Both do, record by record, what `pipeline.embedded.driver.EmbeddedPipeline` does: decode, dead-
letter what cannot be used, feed the stage, forward its outputs. Stage 1 runs one `NodeStage`
per assigned partition of the co-partitioned node-telemetry + request-log topics and hands
closed node minutes to stage 2 through `mdc.node-minutes`; stage 2 runs one `SiteStage` on node
minutes, facility meters and grid intensity.

Crash consistency (the order "outputs -> state -> offset"):

1. A batch is applied in the merged order of `merge.Merger`, skipping what the stage's own
   offsets say it has applied (`stage.seen`).
2. Its outputs are sent; the next batch does not wait for their acks.
3. Between batches, at most every `SNAPSHOT_EVERY_S` (and on revocation and shutdown), the agent
   waits until every output sent so far is acknowledged by the broker, then writes the stage
   snapshot - state plus the last applied offset per source, one value - to the
   changelog-backed table, keyed by partition. Everything it covers is already in Kafka.
4. Offsets are committed to the group only once that snapshot's changelog write is confirmed,
   and they are advisory: whenever a partition is (re)loaded its snapshot decides where to read,
   and the agent seeks there if Faust positioned the consumer anywhere else (a commit ahead of
   a snapshot lost in a crash, the log start, a fetch that raced a rebalance).

So reading resumes exactly after the restored state (nothing lost), records the state already
holds are skipped (nothing double counted), and what was applied after the last snapshot is
replayed, re-emitting outputs with identical values: the core is deterministic and, for data
already in the log, the merge order depends on the log alone. Stage 2 keeps one row per natural
key, so node minutes a failed-over stage 1 emits again are not counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline import compat
from pipeline.contracts.codec import decoder
from pipeline.contracts.outputs import LateEvent, SiteMinute, StageOne
from pipeline.contracts.records import (
    FacilitySample,
    GridIntensity,
    NodeSample,
    RequestLog,
    epoch_ms,
)
from pipeline.fleet.model import Fleet
from pipeline.processors.merge import KafkaRecord, Merger
from pipeline.processors.offsets import Offsets, ReadPositions
from pipeline.processors.sink import OutputSink
from pipeline.processors.state import SnapshotStore, on_partition
from pipeline.processors.web import WorkerMetrics
from pipeline.stream.dead_letters import classify, dead_letter
from pipeline.stream.node_stage import NodeStage
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S, SiteStage
from pipeline.wallclock import wall_clock_ms

log = logging.getLogger(__name__)

#: A partition's snapshot is written at most this often (and when its partitions are revoked or
#: the worker stops): the cost of a crash is replaying at most this much, re-emitting identical
#: outputs. Stage 2 holds up to an hour of node minutes (it waits for hourly grid data), so a
#: snapshot per batch would cost more than the batch.
SNAPSHOT_EVERY_S = 2.0


@dataclass(frozen=True)
class Source:
    """One input of a stage: the stage's name for it and its real topic. A stage's sources are
    listed in tie-break order (equal Kafka timestamps: the first source goes first)."""

    name: str
    topic: str


class PartitionRun:
    """One partition of a stage: its stage object, merge buffers and read positions."""

    positions: ReadPositions

    def __init__(self, partition: int, stage: Any, sources: tuple[Source, ...]) -> None:
        self.partition = partition
        self.stage = stage
        self.sources = sources
        self.by_topic = {s.topic: s for s in sources}
        self.by_source = {s.name: s for s in sources}
        self.merger = Merger(s.name for s in sources)
        self.positions = ReadPositions(partition, {s.name: s.topic for s in sources})
        #: Per source: its last watermark seen by the driver and when (monotonic) it moved; the
        #: skew rule (`StageOneAgent.after_batch`) stops waiting for a source that has not moved for
        #: `max_source_skew_s` while another is ahead.
        self.watermarks: dict[str, int | None] = {}
        self.moved_at: dict[str, float] = {s.name: time.monotonic() for s in sources}
        #: Per source: since when (monotonic) it has been behind the lead.
        self.behind_since: dict[str, float] = {}
        self.dirty = False
        self.saved_at = time.monotonic()

    def stalled(
        self, marks: Mapping[str, int | None], bound_s: float, now: float | None = None
    ) -> frozenset[str]:
        """The skew rule, for sources (stage 1) or stage-1 partitions (stage 2) alike: those
        whose mark is behind the furthest one (or missing) and has been, without moving, for
        `bound_s` of wall clock. The clock starts when a mark is both unmoved and behind: marks
        that were all waiting together (a backlog's start, every request stream quiet at once)
        are not dropped the moment one of them moves first."""
        now = time.monotonic() if now is None else now
        for name, mark in marks.items():
            if mark != self.watermarks.get(name, -1):
                self.watermarks[name] = mark
                self.moved_at[name] = now
        lead = max((m for m in marks.values() if m is not None), default=None)
        stalled = set()
        for name, mark in marks.items():
            if lead is None or (mark is not None and mark >= lead):
                self.behind_since.pop(name, None)
                continue
            since = max(self.moved_at[name], self.behind_since.setdefault(name, now))
            if now - since > bound_s:
                stalled.add(name)
        return frozenset(stalled)


class StageAgent:
    """What both stages share: partition loading, positions, seeks, snapshots, commits."""

    stage_name = "?"
    #: How many partitions each source topic had when the worker started; records of a
    #: partition added later are not read until the workers restart (`_unknown_partition`).
    partition_count = 1

    def __init__(
        self,
        app: Any,
        fleet: Fleet,
        snapshots: SnapshotStore,
        sources: tuple[Source, ...],
        metrics: WorkerMetrics,
        prefix: str,
        lateness_s: float,
        max_source_skew_s: float = 600.0,
    ) -> None:
        self.app = app
        #: How long (wall clock) a source that stopped moving while others are ahead holds
        #: closing back (`after_batch` of each stage).
        self.max_source_skew_s = max_source_skew_s
        self.fleet = fleet
        self.snapshots = snapshots
        self.sources = sources
        self.metrics = metrics
        self.prefix = prefix
        self.lateness_s = lateness_s
        self.lock = asyncio.Lock()
        self.runs: dict[int, PartitionRun] = {}
        self.generation: int | None = None
        self.offsets = Offsets(lambda: app.consumer, self.stage_name, metrics)
        self.stopping = False
        self.sink = OutputSink(app, prefix)
        self._unknown_warned: set[tuple[str, int]] = set()

    # -- to implement --------------------------------------------------------------------------
    def new_stage(self, partition: int) -> Any:
        raise NotImplementedError

    def restore_stage(self, data: bytes) -> Any:
        raise NotImplementedError

    def apply(self, run: PartitionRun, source: str, records: list[KafkaRecord]) -> None:
        raise NotImplementedError

    def forward(self, run: PartitionRun) -> None:
        """Move the stage's drained outputs into the sink."""
        raise NotImplementedError

    def after_batch(self, run: PartitionRun) -> None:
        """After each batch of a partition: the driver's wall-clock decisions (none here)."""

    # -- entry points ----------------------------------------------------------------------------
    async def handle(self, generation: int, seq: int, batches: Mapping[Any, list[Any]]) -> None:
        """A fetched batch (topic-partition -> records) of this stage's topics; `seq` numbers
        the fetch (see `BulkConsumer`)."""
        started = time.perf_counter()
        async with self.lock:
            if self.stopping:
                return  # read again after the restart, from the last snapshot
            current = self.app.consumer_generation_id
            if current != self.generation:
                self.reset()
                self.generation = current
            assignment = self.offsets.assignment()
            touched: dict[int, PartitionRun] = {}
            for tp, records in batches.items():
                if not records or tp not in assignment:
                    continue  # revoked meanwhile: the new owner reads these
                if tp.partition >= self.partition_count:
                    self._unknown_partition(tp)
                    continue  # left in Kafka: read after the restart
                run = await self._run_for(tp.partition)
                source = run.by_topic[tp.topic]
                records = await self.offsets.accept(run.positions, source.name, records, seq)
                if records:
                    run.merger.add(source.name, records)
                    self.metrics.events_in.labels(source.topic).inc(len(records))
                    touched[run.partition] = run
            await self._process(touched.values())
        self.metrics.batch_seconds.labels(self.stage_name).inc(time.perf_counter() - started)

    def _unknown_partition(self, tp: Any) -> None:
        key = (tp.topic, tp.partition)
        if key in self._unknown_warned:
            return
        self._unknown_warned.add(key)
        log.error(
            "%s: %s[%d] was added after this worker started (it was built for %d partitions): "
            "its records wait in Kafka until every worker is restarted",
            self.stage_name,
            tp.topic,
            tp.partition,
            self.partition_count,
        )

    async def tick(self) -> None:
        """Release records held by the merge once their other sources are caught up (end of a
        backlog, a quiet topic) and commit confirmed positions."""
        if self.lock.locked():
            return  # a batch is being processed: it releases what it can itself
        async with self.lock:
            if self.generation == self.app.consumer_generation_id:
                # every run, not only those with records held: `after_batch` decides on the
                # wall clock (a silent source stops holding closing back even if nothing comes)
                if self.runs:
                    await self._process(list(self.runs.values()))
                await self.offsets.unstick(run.positions for run in self.runs.values())
            await self._save_due(self.runs.values())
            await self.offsets.commit()

    async def revoke(self) -> None:
        """A rebalance starts: finish the batch in hand, store every partition's state (the new
        owner then replays little), then forget them all."""
        async with self.lock:
            try:
                await self._save_due(self.runs.values(), force=True)
            except compat.SEND_FAILED as exc:  # the new owner replays from the last snapshot
                log.warning("%s: no snapshot at revocation (%r)", self.stage_name, exc)
            self.reset()

    async def checkpoint(self) -> None:
        """The worker stops: store every partition's state and take no more batches."""
        async with self.lock:
            self.stopping = True
            await self._save_due(self.runs.values(), force=True)

    def reset(self) -> None:
        self.runs.clear()
        self.generation = None
        self.offsets.reset()

    # -- internals -----------------------------------------------------------------------------
    async def _run_for(self, partition: int) -> PartitionRun:
        run = self.runs.get(partition)
        if run is not None:
            return run
        data = self.snapshots.load(partition)
        stage = self.restore_stage(data) if data is not None else self.new_stage(partition)
        run = PartitionRun(partition, stage, self.sources)
        await self.offsets.load(run.positions, stage.state.offsets)
        self.runs[partition] = run
        log.info(
            "%s partition %d loaded (%s), reading from %s",
            self.stage_name,
            partition,
            "snapshot" if data else "fresh",
            run.positions.next_offset,
        )
        return run

    async def _process(self, runs: Iterable[PartitionRun]) -> None:
        runs = sorted(runs, key=lambda r: r.partition)
        for run in runs:
            for source, records in run.merger.release(self.offsets.caught_up(run.positions)):
                self.apply(run, source, records)
                run.dirty = True
            self.after_batch(run)
            self.forward(run)
        outputs = len(self.sink)
        await self.sink.flush()
        if outputs:
            for name, n in self.sink.counts.items():
                self.metrics.outputs.labels(name).inc(n)
            self.sink.counts.clear()
        await self._save_due(runs)

    async def _save_due(self, runs: Iterable[PartitionRun], *, force: bool = False) -> None:
        """Snapshot the runs whose state changed, if their last snapshot is old enough. Called
        between batches; first waits until the broker has acknowledged every output sent so far
        (outputs of later batches are not waited for batch by batch: they travel while the
        next batch is processed)."""
        now = time.monotonic()
        due = [r for r in runs if r.dirty and (force or now - r.saved_at >= SNAPSHOT_EVERY_S)]
        if not due:
            return
        await self.sink.drain()
        for run in due:
            self._save(run)
            run.saved_at = now

    def _save(self, run: PartitionRun) -> None:
        try:
            snapshot = run.stage.snapshot()
        except Exception as exc:  # noqa: BLE001 - a last resort: keep running, keep the old one
            # Contract bounds and the stages' caps make this unreachable; should it happen, the
            # worker goes on with the previous snapshot (a restart replays from there) and says so.
            self.metrics.internal_errors.labels(self.stage_name).inc()
            log.error("%s: partition %d snapshot failed: %r", self.stage_name, run.partition, exc)
            return
        run.dirty = False
        self.metrics.snapshot_bytes.labels(self.stage_name, str(run.partition)).set(len(snapshot))
        fut = self.snapshots.save(run.partition, snapshot)
        applied = run.stage.state.offsets
        self.offsets.saved(
            fut,
            {
                (s.topic, run.partition): applied[s.name] + 1
                for s in run.sources
                if s.name in applied
            },
        )

    def dead(self, run: PartitionRun, source: str, rec: KafkaRecord, exc: Exception) -> None:
        """Send a record that could not be used to the dead-letter topic, with its reason.

        Called for every exception a record causes, expected (contract, fleet, plausibility) or
        not (`internal_error`: a bug in the core, logged in one line; the traceback only at
        debug level). The record's offset is already marked applied, so a replay after a restart
        dead-letters it again (same natural key) instead of crashing: no restart loop.
        """
        topic = run.by_source[source].topic
        kind, detail = classify(exc)
        self.sink.add(
            dead_letter(topic, run.partition, rec.offset, rec.key, rec.value or b"", kind, detail)
        )
        self.metrics.dead_letters.labels(topic, kind).inc()
        if kind == "internal_error":
            log.error(
                "%s: %s[%d]@%d raised in the core, dead-lettered: %s",
                self.stage_name,
                topic,
                run.partition,
                rec.offset,
                detail,
            )
            log.debug("traceback of the internal error", exc_info=exc)

    # -- health --------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        out = []
        for p, run in sorted(self.runs.items()):
            lag = self.offsets.lag(run.positions)
            out.append(
                {
                    "stage": self.stage_name,
                    "partition": p,
                    "buffered": run.merger.buffered(),
                    "consumer_lag": lag,
                    **self.stage_info(run.stage),
                }
            )
        return out

    def stage_info(self, stage: Any) -> dict[str, Any]:
        raise NotImplementedError


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class StageOneAgent(StageAgent):
    """Stage 1: node telemetry + request logs of one partition -> node minutes, late events."""

    stage_name = "stage-one"

    def __init__(self, *args: Any, partitions: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.partition_count = partitions
        self._source_topic = {s.name: s.topic for s in self.sources}
        self._warned: set[tuple[str, int]] = set()
        self._node = decoder(NodeSample).decode
        self._request = decoder(RequestLog).decode

    def new_stage(self, partition: int) -> NodeStage:
        return NodeStage(
            self.fleet, partition, self.partition_count, self.lateness_s, now_ms=wall_clock_ms
        )

    def restore_stage(self, data: bytes) -> NodeStage:
        return NodeStage.restore(self.fleet, data, self.lateness_s, now_ms=wall_clock_ms)

    def apply(self, run: PartitionRun, source: str, records: list[KafkaRecord]) -> None:
        stage: NodeStage = run.stage
        seen = stage.seen
        feed: Callable[..., None]
        decode: Callable[[bytes], Any]
        if source == "request":
            decode, feed = self._request, stage.on_request
        else:
            decode, feed = self._node, stage.on_sample
        duplicates = stage.duplicate_requests + stage.duplicate_samples
        for rec in records:
            offset = rec.offset
            if seen(source, offset):
                continue
            value = rec.value
            try:
                if value is None:
                    raise msgspec.DecodeError("empty message value (a tombstone)")
                feed(decode(value), source=source, offset=offset, raw=value)
            except Exception as exc:  # noqa: BLE001 - every failing record is a dead letter
                self.dead(run, source, rec, exc)
        dropped = stage.duplicate_requests + stage.duplicate_samples - duplicates
        if dropped:
            self.metrics.duplicates.labels(run.by_source[source].topic).inc(dropped)

    def after_batch(self, run: PartitionRun) -> None:
        """The skew rule: a source (topic-partition) whose watermark is behind another's and
        has not moved for `max_source_skew_s` of wall clock (a dead shipper, a quiet stream)
        stops holding the partition's closing back, until it moves again; its records for the
        minutes closed meanwhile become late events. Within the bound, a stream running behind
        (a batching log shipper, a backfill one topic after the other) loses nothing."""
        stage: NodeStage = run.stage
        marks = stage.source_watermarks()
        excluded = run.stalled(marks, self.max_source_skew_s)
        if excluded == stage.excluded:
            return
        lead = max((m for m in marks.values() if m is not None), default=None)
        for name in sorted(excluded - stage.excluded):
            topic = run.by_source[name].topic
            mark = marks[name]
            behind = (
                "has sent nothing"
                if mark is None or lead is None
                else f"is {(lead - mark) / 1000:,.0f} s of event time behind"
            )
            how = logging.WARNING if (topic, run.partition) not in self._warned else logging.INFO
            self._warned.add((topic, run.partition))
            log.log(
                how,
                "%s[%d] %s and has not moved for %.0f s: minutes close without it (its "
                "records for them become late events). If its producer runs this far behind, "
                "raise --max-source-skew.",
                topic,
                run.partition,
                behind,
                self.max_source_skew_s,
            )
        stage.exclude(excluded)

    def forward(self, run: PartitionRun) -> None:
        late = 0
        reasons: Counter[tuple[str, str]] = Counter()
        for item in run.stage.drain():
            if isinstance(item, LateEvent):
                self.sink.add(item)  # pinned to its source partition
                late += 1
                reasons[(self._source_topic.get(item.source_topic, ""), item.reason)] += 1
            else:
                self.sink.add(item)
        if late:
            self.metrics.late_events.labels(str(run.partition)).inc(late)
            for (topic, reason), n in reasons.items():
                self.metrics.late_by_reason.labels(topic, reason).inc(n)

    def stage_info(self, stage: Any) -> dict[str, Any]:
        clock = stage.state.clock
        watermark = (
            clock.max_event_ms - clock.lateness_ms if clock.max_event_ms is not None else None
        )
        closed = clock.closed_before_ms
        return {
            "source_watermarks": {k: _iso(v) for k, v in stage.source_watermarks().items()},
            "source_watermark_ms": {
                self._source_topic[k]: v for k, v in stage.source_watermarks().items()
            },
            "waiting_for": sorted(set(stage.expected) - stage.excluded),
            #: the sources the skew rule stopped waiting for, by topic (the live view's inputs)
            "excluded_topics": sorted(self._source_topic[s] for s in stage.excluded),
            "open_minutes": len(stage.state.minutes),
            "watermark_ms": watermark,
            "watermark": _iso(watermark),
            "last_closed_minute": _iso(closed - 60_000) if closed is not None else None,
            "offsets": dict(stage.state.offsets),
        }


class StageTwoAgent(StageAgent):
    """Stage 2: node minutes + facility meters + grid intensity -> energy, site, SLO, alerts."""

    stage_name = "stage-two"

    def __init__(
        self,
        *args: Any,
        pue_table: Any,
        grid_table: Any,
        facility_wait_s: float = FACILITY_WAIT_S,
        grid_wait_s: float = GRID_WAIT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.facility_wait_s = facility_wait_s  # SiteStage's bounds for silent feeds
        self.grid_wait_s = grid_wait_s
        self._split_warned: set[str] = set()
        self.pue_table = pue_table
        self.grid_table = grid_table
        self._stage_one = msgspec.json.Decoder(StageOne).decode
        self._facility = decoder(FacilitySample).decode
        self._grid = decoder(GridIntensity).decode
        self._zone = {s.site_id: s.grid_zone for s in self.fleet.sites}

    def new_stage(self, partition: int) -> SiteStage:
        return SiteStage(
            self.fleet,
            self.lateness_s,
            now_ms=wall_clock_ms,
            facility_wait_s=self.facility_wait_s,
            grid_wait_s=self.grid_wait_s,
        )

    def restore_stage(self, data: bytes) -> SiteStage:
        return SiteStage.restore(
            self.fleet,
            data,
            self.lateness_s,
            now_ms=wall_clock_ms,
            facility_wait_s=self.facility_wait_s,
            grid_wait_s=self.grid_wait_s,
        )

    def apply(self, run: PartitionRun, source: str, records: list[KafkaRecord]) -> None:
        stage: SiteStage = run.stage
        duplicates = stage.duplicate_samples
        for rec in records:
            if stage.seen(source, rec.offset):
                continue
            value = rec.value
            try:
                if value is None:
                    raise msgspec.DecodeError("empty message value (a tombstone)")
                if source == "node-minutes":
                    stage.on_stage_one([self._stage_one(value)])
                elif source == "facility":
                    stage.on_facility(self._facility(value))
                else:
                    stage.on_grid(self._grid(value))
            except Exception as exc:  # noqa: BLE001 - every failing record is a dead letter
                self.dead(run, source, rec, exc)
            # Stage 2 emits per closed minute; forward as we go so outputs keep their order.
            self.forward(run)
        if stage.duplicate_samples > duplicates:
            topic = run.by_source[source].topic
            self.metrics.duplicates.labels(topic).inc(stage.duplicate_samples - duplicates)

    def after_batch(self, run: PartitionRun) -> None:
        """The skew rule across stage-1 partitions (as `StageOneAgent.after_batch` within
        one): a partition whose closing mark is behind another's and has not moved for
        `max_source_skew_s` of wall clock (all its nodes dark, an empty partition, a stage-1
        worker gone) stops holding stage 2 back until it moves again."""
        stage: SiteStage = run.stage
        parts = stage.state.partitions
        if parts is None:
            return
        marks = {str(p): stage.state.marks.get(p) for p in range(parts)}
        excluded = frozenset(int(p) for p in run.stalled(marks, self.max_source_skew_s))
        for p in sorted(excluded - stage.excluded_partitions):
            log.warning(
                "stage 2: stage-1 partition %d has not moved its closing mark for %.0f s while "
                "others are ahead: closing without it (its later node minutes for closed "
                "minutes are dropped); see --max-source-skew",
                p,
                self.max_source_skew_s,
            )
        stage.exclude_partitions(excluded)

    def forward(self, run: PartitionRun) -> None:
        stage: SiteStage = run.stage
        if stage.split_node_minutes:
            self.metrics.split_nodes.inc(stage.split_node_minutes)
            stage.split_node_minutes = 0
            for node_id, partitions in sorted(stage.split_nodes.items()):
                if node_id not in self._split_warned:
                    self._split_warned.add(node_id)
                    log.warning(
                        "node %s: its records of one minute arrived on stage-1 partitions %s "
                        "(an unkeyed or round-robin producer?); stage 2 merges them, but a "
                        "record delivered twice to two partitions then counts twice. Produce "
                        "node telemetry and request logs keyed by node_id (any partitioner).",
                        node_id,
                        sorted(partitions),
                    )
            stage.split_nodes.clear()
        for item in run.stage.drain():
            self.sink.add(item)
            if isinstance(item, SiteMinute):
                self._lookups(item)

    def _lookups(self, row: SiteMinute) -> None:
        """Latest PUE per site and grid intensity per zone, for any worker to read."""
        stamp = _iso(epoch_ms(row.window_start))
        with on_partition(self.snapshots.source_topic, 0):
            self.pue_table[row.site_id] = {
                "window_start": stamp,
                "pue": row.pue,
                "pue_source": row.pue_source,
            }
            self.grid_table[self._zone[row.site_id]] = {
                "window_start": stamp,
                "gco2e_per_kwh": row.grid_intensity_gco2e_per_kwh,
                "intensity_source": row.intensity_source,
            }

    def stage_info(self, stage: Any) -> dict[str, Any]:
        st = stage.state
        closed = st.closed_before_ms
        watermark = min(st.marks.values()) if st.marks else None
        return {
            "open_minutes": len(st.rows),
            "watermark_ms": watermark,
            "watermark": _iso(watermark),
            "last_closed_minute": _iso(closed - 60_000) if closed is not None else None,
            "offsets": dict(st.offsets),
        }
