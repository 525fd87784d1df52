"""Fleet simulator: seeded, realistic input streams for the demo fleet, to files or Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.contracts.partitioning import partition_for
from pipeline.fleet.model import Fleet
from pipeline.kafka_security import KafkaSecurity
from pipeline.simulate.faults import FaultConfig
from pipeline.simulate.generator import Envelope, SimConfig, SimStats, Simulator
from pipeline.simulate.sinks import JsonlSink, KafkaSink

__all__ = [
    "Envelope",
    "FaultConfig",
    "SimConfig",
    "SimResult",
    "SimStats",
    "Simulator",
    "partition_for",
    "simulate_to_files",
    "simulate_to_kafka",
]

#: Called after each simulated minute with the number of records just written.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class SimResult:
    """Counts, wall time and where the records went."""

    stats: SimStats
    seconds: float
    destination: str
    files: Mapping[str, Path] | None = None

    @property
    def events_per_s(self) -> float:
        return self.stats.emitted / self.seconds if self.seconds > 0 else 0.0


def simulate_to_files(
    fleet: Fleet, config: SimConfig, out_dir: Path, progress: Progress | None = None
) -> SimResult:
    """Write one JSON-lines file per input topic into `out_dir`."""
    sim = Simulator(fleet, config)
    started = time.perf_counter()
    with JsonlSink(out_dir) as sink:
        for batch in sim.minutes():
            sink.write(batch)
            if progress:
                progress(len(batch))
        files = sink.paths()
    return SimResult(sim.stats, time.perf_counter() - started, str(out_dir), files)


def simulate_to_kafka(
    fleet: Fleet,
    config: SimConfig,
    bootstrap: str,
    *,
    topic_prefix: str = "",
    progress: Progress | None = None,
    client_options: Mapping[str, Any] | None = None,
    security: KafkaSecurity | None = None,
) -> SimResult:
    """Produce to the input topics of the broker at `bootstrap` (they must exist)."""

    async def run() -> SimResult:
        sim = Simulator(fleet, config)
        started = time.perf_counter()
        async with KafkaSink(
            bootstrap, topic_prefix=topic_prefix, client_options=client_options, security=security
        ) as sink:
            for batch in sim.minutes():
                await sink.write(batch)
                if progress:
                    progress(len(batch))
        return SimResult(sim.stats, time.perf_counter() - started, f"kafka://{bootstrap}")

    return asyncio.run(run())
