"""Simulated minutes produced to Kafka from a thread at a fixed pace, like a live fleet: each
minute is flushed (every topic) before the next is written. Tests kill workers and landers while
it runs."""

from __future__ import annotations

import asyncio
import threading

from pipeline.simulate import Envelope
from pipeline.simulate.sinks import KafkaSink


class LiveFeed:
    def __init__(
        self, bootstrap: str, prefix: str, batches: list[list[Envelope]], pace_s: float
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.pace_s = pace_s
        self.batches = batches
        self.produced = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)

    @property
    def envelopes(self) -> list[Envelope]:
        return [env for batch in self.batches for env in batch]

    @property
    def total(self) -> int:
        return sum(len(batch) for batch in self.batches)

    @property
    def done(self) -> bool:
        if self.error is not None:
            raise AssertionError(f"live feed failed: {self.error!r}")
        return self.produced == len(self.batches)

    def start(self) -> LiveFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # noqa: BLE001 - reported through `done`
            self.error = exc

    async def _produce(self) -> None:
        async with KafkaSink(self.bootstrap, topic_prefix=self.prefix) as sink:
            for batch in self.batches:
                if self._stop.is_set():
                    return
                await sink.write(batch)
                await sink.flush()
                self.produced += 1
                await asyncio.sleep(self.pace_s)  # the fleet's pace, not a wait on a condition
