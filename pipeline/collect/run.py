"""Drive a `Collector`: where its records go (JSON-lines files or Kafka) and its /metrics.

Kafka: every poll's records go to a bounded on-disk buffer first (`buffer.DiskBuffer`) and
`sender.BufferedKafkaSender` drains it, keyed by the topic contracts and partitioned as
Kafka's default partitioner does; while Kafka is down they wait on disk, and a restart
resumes from there. A full buffer refuses the poll's records (counted and logged): that poll
is a gap, nothing older is dropped.

Files: `<out>/mdc.node-telemetry.jsonl` and `<out>/mdc.facility-telemetry.jsonl` (what
`microdc process --in <out>` reads) and `<out>/mdc.dead-letters.jsonl`, appended poll by poll
and flushed after each (a reader may tail them).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import msgspec

from pipeline.collect.buffer import BufferFull, DiskBuffer, Record
from pipeline.collect.config import CollectorConfig, OtlpSource
from pipeline.collect.service import Collector, CollectorMetrics, PollResult
from pipeline.collect.sources import reader
from pipeline.contracts.records import CollectedRequestLog
from pipeline.contracts.topics import (
    DEAD_LETTERS,
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
    NODE_TELEMETRY,
    REQUEST_LOG,
    TopicSpec,
)
from pipeline.errors import PipelineError
from pipeline.fleet.model import Fleet

_encode = msgspec.json.Encoder().encode


@dataclass
class CollectStats:
    polls: int = 0
    samples: int = 0
    gaps: int = 0
    dead_letters: int = 0
    requests: int = 0
    grid: int = 0

    def add(self, result: PollResult) -> None:
        self.samples += len(result.samples) + len(result.facility_samples)
        self.gaps += len(result.gaps)
        self.dead_letters += len(result.dead_letters)
        self.requests += len(result.requests)
        self.grid += len(result.grid)


class FileOutput:
    """Appends each poll's records to one JSON-lines file per topic."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, IO[bytes]] = {}

    def __enter__(self) -> FileOutput:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for spec in (
                NODE_TELEMETRY,
                FACILITY_TELEMETRY,
                REQUEST_LOG,
                GRID_INTENSITY,
                DEAD_LETTERS,
            ):
                self._files[spec.name] = (self.folder / f"{spec.name}.jsonl").open("ab")
        except OSError as exc:
            raise PipelineError(f"cannot write collector output to {self.folder}: {exc}") from exc
        return self

    async def __call__(self, result: PollResult) -> bool:
        files = self._files
        for spec, records in records_of(result):
            f = files[spec.name]
            for record in records:
                f.write(_encode(record) + b"\n")
            f.flush()
        return True

    def __exit__(self, *_: object) -> None:
        for f in self._files.values():
            f.close()


def records_of(result: PollResult) -> list[tuple[TopicSpec, list[msgspec.Struct]]]:
    """A poll's records by topic."""
    return [
        (NODE_TELEMETRY, list(result.samples)),
        (FACILITY_TELEMETRY, list(result.facility_samples)),
        (REQUEST_LOG, list(result.requests)),
        (GRID_INTENSITY, list(result.grid)),
        (DEAD_LETTERS, list(result.dead_letters)),
    ]


class BufferedOutput:
    """Appends each poll's records, keyed by their topic contracts, to a `DiskBuffer` (a
    `BufferedKafkaSender` drains it); `wake` tells the sender there is more."""

    def __init__(
        self, buffer: DiskBuffer, wake: Callable[[], None], metrics: CollectorMetrics
    ) -> None:
        self.buffer = buffer
        self.wake = wake
        self.metrics = metrics

    async def __call__(self, result: PollResult) -> bool:
        """Whether the records are on disk (False: the buffer is full and refused them)."""
        records = [
            Record(spec.name, spec.key_of(record), _encode(record))
            for spec, batch in records_of(result)
            for record in batch
        ]
        if not records:
            return True
        try:
            await asyncio.to_thread(self.buffer.append, records)  # fsync: off the event loop
        except BufferFull:  # logged once per full spell by the buffer
            self.metrics.buffer_refused.inc(len(records))
            return False
        self.metrics.buffered_bytes.set(self.buffer.disk_bytes)
        self.wake()
        return True


async def collect(
    config: CollectorConfig,
    fleet: Fleet,
    emit: Callable[[PollResult], Awaitable[bool]],
    *,
    state_dir: Path,
    once: bool = False,
    metrics: CollectorMetrics | None = None,
    report: Callable[[CollectStats], None] | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[int]], None] | None = None,
) -> CollectStats:
    """Run every source of `config` until SIGINT/SIGTERM (or `stop`), or `once`.

    Node and site sources are polled every `poll_interval_s`, access logs followed (positions
    in `state_dir`), OTLP receivers served, grid services polled on their own intervals; all
    their records go to `emit` one batch at a time. `once`: one power poll, the access logs
    read to their current end, one grid poll (OTLP receivers are not started). `on_ready`
    gets the OTLP receivers' bound ports once they listen.
    """
    from pipeline.collect.gridpoll import GridPoller
    from pipeline.collect.otlp import OtlpBatch, OtlpReceiver
    from pipeline.collect.requests import RequestFollower, RequestPrivacy

    metrics = metrics or CollectorMetrics()
    privacy = RequestPrivacy.from_env()
    stats = CollectStats()
    lock = asyncio.Lock()

    async def counted(result: PollResult) -> bool:
        async with lock:  # one batch at a time into the buffer or the files
            ok = await emit(result)
        if ok:
            stats.add(result)
            if report is not None:
                report(stats)
        return ok

    async def polled(result: PollResult) -> bool:
        stats.polls += 1
        return await counted(result)

    collector = (
        Collector(config, fleet, reader, metrics=metrics) if config.nodes or config.sites else None
    )
    follower = RequestFollower(config, fleet, state_dir, privacy=privacy, metrics=metrics)
    poller = GridPoller(config, metrics=metrics)
    receivers: list[OtlpReceiver] = []
    for source in config.requests:
        if isinstance(source, OtlpSource):
            mapping = source.mapping or config.request_mapping
            assert mapping is not None  # the collector file's check

            def accept_for(label: str) -> Callable[[OtlpBatch], Awaitable[bool]]:
                async def accept(batch: OtlpBatch) -> bool:
                    # built with hash_ip: every record is a CollectedRequestLog
                    records = cast(list[CollectedRequestLog], batch.records)
                    result = PollResult(
                        requests=records,
                        dead_letters=[privacy.redacted(d) for d in batch.dead_letters],
                    )
                    ok = await counted(result)
                    if ok:
                        metrics.requests.labels(label).inc(len(result.requests))
                        metrics.dead_letters.labels(label).inc(len(result.dead_letters))
                    return ok

                return accept

            label = f"otlp {source.bind}:{source.port}"
            receivers.append(
                OtlpReceiver(
                    accept_for(label),
                    mapping,
                    fleet,
                    bind=source.bind,
                    port=source.port,
                    max_body_bytes=round(source.max_body_mb * 1024 * 1024),
                    hash_ip=privacy.policy,
                )
            )
    try:
        if once:
            if collector is not None:
                await polled(await collector.poll())
            while await follower.step(counted):
                pass
            await poller.step(counted)
            return stats
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on every platform
                loop.add_signal_handler(sig, stop.set)
        ports = [await receiver.start() for receiver in receivers]
        if on_ready is not None:
            on_ready(ports)
        tasks = []
        if collector is not None:
            tasks.append(collector.run(polled, stop))
        if follower.logs:
            tasks.append(follower.run(counted, stop))
        if poller.sources:
            tasks.append(poller.run(counted, stop))
        await asyncio.gather(*tasks, stop.wait())
        return stats
    finally:
        for receiver in receivers:
            await receiver.stop()
        follower.close()
        await poller.close()
        if collector is not None:
            await collector.close()
