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
from typing import IO

import msgspec

from pipeline.collect.buffer import BufferFull, DiskBuffer, Record
from pipeline.collect.config import CollectorConfig
from pipeline.collect.service import Collector, CollectorMetrics, PollResult
from pipeline.collect.sources import reader
from pipeline.contracts.topics import DEAD_LETTERS, FACILITY_TELEMETRY, NODE_TELEMETRY, TopicSpec
from pipeline.errors import PipelineError
from pipeline.fleet.model import Fleet

_encode = msgspec.json.Encoder().encode


@dataclass
class CollectStats:
    polls: int = 0
    samples: int = 0
    gaps: int = 0
    dead_letters: int = 0

    def add(self, result: PollResult) -> None:
        self.polls += 1
        self.samples += len(result.samples) + len(result.facility_samples)
        self.gaps += len(result.gaps)
        self.dead_letters += len(result.dead_letters)


class FileOutput:
    """Appends each poll's records to one JSON-lines file per topic."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, IO[bytes]] = {}

    def __enter__(self) -> FileOutput:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for spec in (NODE_TELEMETRY, FACILITY_TELEMETRY, DEAD_LETTERS):
                self._files[spec.name] = (self.folder / f"{spec.name}.jsonl").open("ab")
        except OSError as exc:
            raise PipelineError(f"cannot write collector output to {self.folder}: {exc}") from exc
        return self

    async def __call__(self, result: PollResult) -> None:
        files = self._files
        for spec, records in records_of(result):
            f = files[spec.name]
            for record in records:
                f.write(_encode(record) + b"\n")
            f.flush()

    def __exit__(self, *_: object) -> None:
        for f in self._files.values():
            f.close()


def records_of(result: PollResult) -> list[tuple[TopicSpec, list[msgspec.Struct]]]:
    """A poll's records by topic."""
    return [
        (NODE_TELEMETRY, list(result.samples)),
        (FACILITY_TELEMETRY, list(result.facility_samples)),
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

    async def __call__(self, result: PollResult) -> None:
        records = [
            Record(spec.name, spec.key_of(record), _encode(record))
            for spec, batch in records_of(result)
            for record in batch
        ]
        if not records:
            return
        try:
            await asyncio.to_thread(self.buffer.append, records)  # fsync: off the event loop
        except BufferFull:  # logged once per full spell by the buffer
            self.metrics.buffer_refused.inc(len(records))
            return
        self.metrics.buffered_bytes.set(self.buffer.disk_bytes)
        self.wake()


async def collect(
    config: CollectorConfig,
    fleet: Fleet,
    emit: Callable[[PollResult], Awaitable[None]],
    *,
    once: bool = False,
    metrics: CollectorMetrics | None = None,
    report: Callable[[CollectStats], None] | None = None,
) -> CollectStats:
    """Poll once, or until SIGINT/SIGTERM; every poll's records go to `emit`."""
    collector = Collector(config, fleet, reader, metrics=metrics)
    stats = CollectStats()

    async def counted(result: PollResult) -> None:
        await emit(result)
        stats.add(result)
        if report is not None:
            report(stats)

    try:
        if once:
            await counted(await collector.poll())
            return stats
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on every platform
                loop.add_signal_handler(sig, stop.set)
        await collector.run(counted, stop)
        return stats
    finally:
        await collector.close()
