"""Landing without Kafka (`microdc demo`): the same segments, files and recovery rules as
`microdc land`, fed in-process.

Records get the topic-partition Kafka would give them (the contract's key, murmur2 like the
producers; late events keep their source partition) and consecutive offsets per partition, so
file names and lineage columns look exactly like a landing from Kafka. Kafka timestamps are
simulated too: an input's emit time, an output's own event time.
"""

from __future__ import annotations

import contextlib
import queue
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.topics import TopicSpec, output_event_ms, output_key
from pipeline.embedded.driver import EmbeddedPipeline, RunResult
from pipeline.errors import PipelineError
from pipeline.lake.datasets import DATASETS, Dataset
from pipeline.lake.land import LandStats
from pipeline.lake.privacy import IpPolicy
from pipeline.lake.segment import HOUR_MS, RollPolicy, SegmentBuffer
from pipeline.lake.store import Lake
from pipeline.wallclock import wall_clock_ms

_encoder = msgspec.json.Encoder()


class EmbeddedLander:
    def __init__(
        self,
        lake: Lake,
        *,
        policy: RollPolicy | None = None,
        ip_policy: IpPolicy | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.lake = lake
        self._now_ms = now_ms()  # a run is short: one reading for the far-future rule
        self.policy = policy or RollPolicy()
        self.ip_policy = ip_policy or IpPolicy()
        self.by_topic: dict[str, Dataset] = {d.topic.name: d for d in DATASETS}
        self.buffers: dict[tuple[str, int], SegmentBuffer] = {}
        self.next_offset: Counter[tuple[str, int]] = Counter()
        self.watermarks: dict[str, int] = {}
        self._checked_hour: dict[str, int] = {}
        self.stats = LandStats()

    def add(
        self,
        spec: TopicSpec,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        *,
        partition: int | None = None,
    ) -> None:
        """One record as it would sit in `spec`'s topic."""
        dataset = self.by_topic[spec.name]
        if partition is None:
            partition = 0 if key is None else partition_for(key, spec.partitions)
        tp = (spec.name, partition)
        buffer = self.buffers.get(tp)
        if buffer is None:
            buffer = self.buffers[tp] = SegmentBuffer(
                dataset, spec.name, partition, self.policy, self.ip_policy
            )
        offset = self.next_offset[tp]
        self.next_offset[tp] += 1
        self.stats.consumed += 1
        buffer.set_horizon(self.watermarks.get(dataset.name), self._now_ms)
        buffer.add(offset, timestamp_ms, value)
        if buffer.full():
            self._land(dataset, buffer)
        watermark = buffer.max_event_ms
        if watermark is None or watermark <= self.watermarks.get(dataset.name, watermark - 1):
            return
        self.watermarks[dataset.name] = watermark
        hour = (watermark - self.policy.lateness_ms) // HOUR_MS
        if hour > self._checked_hour.get(dataset.name, hour - 1):  # an hour boundary passed
            self._checked_hour[dataset.name] = hour
            for other in self.buffers.values():
                if other.dataset is dataset and other.hour_passed(watermark):
                    self._land(dataset, other)

    def add_output(self, spec: TopicSpec, record: Any, fallback_ms: int) -> None:
        """A stream output record (a Struct) as the worker would have produced it."""
        key, partition = output_key(spec, record)
        self.add(
            spec,
            key,
            _encoder.encode(record),
            output_event_ms(record, fallback_ms),
            partition=partition,
        )

    def close(self) -> LandStats:
        """Land every open segment (the end of the input)."""
        for buffer in self.buffers.values():
            self._land(buffer.dataset, buffer)
        return self.stats

    def _land(self, dataset: Dataset, buffer: SegmentBuffer) -> None:
        segment = buffer.take()
        if segment is None:
            return
        if segment.files:
            self.lake.write_segment(dataset, segment)
        self.stats.count(dataset, segment)


@dataclass
class DemoRun:
    """What `simulate_and_land` produced."""

    result: RunResult
    emitted: int
    landed: Any  # pipeline.lake.LandStats


#: A record on its way to the landing process: topic, key, value, Kafka timestamp, partition.
_Landing = tuple[str, bytes | None, bytes, int, int | None]


def simulate_and_land(
    fleet: Any,
    config: Any,
    lake: Any,
    *,
    ip_policy: Any = None,
    jsonl_dir: Path | None = None,
    advance: Any = None,
    parallel: bool = False,
) -> DemoRun:
    """Simulate `config`, run the stream core in-process and land inputs and outputs in `lake`
    through the same segment writer `microdc land` uses (what `microdc demo` runs).

    Outputs are landed minute by minute as the stream core emits them. With `parallel`, landing
    runs in a second process fed through a bounded queue, so simulation and stream core use one
    core and Parquet writing the other (the demo's default on a 2-core machine).
    """
    from pipeline.contracts.topics import OUTPUT_TOPICS
    from pipeline.simulate import Simulator
    from pipeline.simulate.sinks import JsonlSink

    sim = Simulator(fleet, config)
    pipeline = EmbeddedPipeline(fleet)
    landing: _LandingSink = (
        _ProcessLanding(lake.uri, ip_policy)
        if parallel
        else _InlineLanding(EmbeddedLander(lake, ip_policy=ip_policy))
    )
    encode = msgspec.json.Encoder().encode
    sent = {spec.name: 0 for spec in OUTPUT_TOPICS}

    def outputs(fallback_ms: int) -> list[_Landing]:
        batch: list[_Landing] = []
        for spec in OUTPUT_TOPICS:
            records = pipeline.result.outputs.get(spec.name, [])
            for record in records[sent[spec.name] :]:
                key, partition = output_key(spec, record)
                batch.append(
                    (
                        spec.name,
                        key,
                        encode(record),
                        output_event_ms(record, fallback_ms),
                        partition,
                    )
                )
            sent[spec.name] = len(records)
        return batch

    minute_ms = int(config.start.timestamp() * 1000)
    with contextlib.ExitStack() as stack:
        stack.callback(landing.abort)
        sink = stack.enter_context(JsonlSink(jsonl_dir)) if jsonl_dir is not None else None
        for batch in sim.minutes():
            if sink is not None:
                sink.write(batch)
            pipeline.feed((e.topic, e.key, e.value) for e in batch)
            minute_ms += 60_000
            records: list[_Landing] = [
                (e.topic.name, e.key, e.value, e.emit_ms, None) for e in batch
            ]
            records.extend(outputs(minute_ms))
            landing.send(records)
            if advance is not None:
                advance(len(batch))
        result = pipeline.close()
        landing.send(outputs(minute_ms))
        landed = landing.close()
    return DemoRun(result, sim.stats.emitted, landed)


class _LandingSink:
    def send(self, records: list[_Landing]) -> None:
        raise NotImplementedError

    def close(self) -> Any:
        raise NotImplementedError

    def abort(self) -> None:
        """Stop without landing what is still open (after an error)."""


class _InlineLanding(_LandingSink):
    def __init__(self, lander: Any) -> None:
        from pipeline.contracts.topics import ALL_TOPICS

        self.lander = lander
        self.topics = {spec.name: spec for spec in ALL_TOPICS}

    def send(self, records: list[_Landing]) -> None:
        add, topics = self.lander.add, self.topics
        for topic, key, value, timestamp_ms, partition in records:
            add(topics[topic], key, value, timestamp_ms, partition=partition)

    def close(self) -> Any:
        return self.lander.close()


class _ProcessLanding(_LandingSink):
    """Landing in a child process (spawned: no forked threads), fed minute by minute."""

    def __init__(self, lake_uri: str, ip_policy: Any) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.inbox: Any = ctx.Queue(maxsize=256)
        self.outbox: Any = ctx.Queue()
        secret = getattr(ip_policy, "secret", None)
        self.process = ctx.Process(
            target=_landing_process,
            args=(lake_uri, secret, self.inbox, self.outbox),
            name="microdc-demo-lander",
            daemon=True,
        )
        self.process.start()
        self.closed = False

    def send(self, records: list[_Landing]) -> None:
        if records and not self._put(records):
            raise PipelineError(f"landing process failed: {self._outcome()}")

    def close(self) -> Any:
        self._put(None)  # the end of the input (unless the child has already died)
        outcome = self._outcome()
        self.process.join()
        self.closed = True
        if isinstance(outcome, str):
            self.inbox.cancel_join_thread()  # what the child never read must not block exit
            raise PipelineError(f"landing process failed: {outcome}")
        return outcome

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inbox.cancel_join_thread()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()

    def _put(self, item: list[_Landing] | None) -> bool:
        """Queue `item` (waiting while the queue is full); False when the child has died."""
        while self.process.is_alive():
            try:
                self.inbox.put(item, timeout=1.0)
            except queue.Full:
                continue
            return True
        return False

    def _outcome(self) -> Any:
        """The child's last word: its LandStats, or its error as one line."""
        while True:
            try:
                return self.outbox.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    try:
                        return self.outbox.get(timeout=1.0)
                    except queue.Empty:
                        return f"it exited with code {self.process.exitcode}"


def _landing_process(lake_uri: str, secret: bytes | None, inbox: Any, outbox: Any) -> None:
    from pipeline.lake import IpPolicy, Lake

    try:
        landing = _InlineLanding(EmbeddedLander(Lake(lake_uri), ip_policy=IpPolicy(secret)))
        while (records := inbox.get()) is not None:
            landing.send(records)
        outbox.put(landing.close())
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        outbox.put(f"{type(exc).__name__}: {exc}")
