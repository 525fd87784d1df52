"""Grid intensity for `microdc collect`: poll each carbon-intensity service on its own interval.

Each `grid:` source of the collector file is polled for its latest values every
`poll_interval_s` (`grid_http.GridClient.latest`). A value is sent when it is new or revised
(an estimate replaced by a measured value, a forecast updated): the last value sent per
(zone, valid_from, signal, factor type) is remembered, so a service that answers the same
hour for an hour is sent once. A service that is down, slow or refuses the key is logged once
per change and retried with the collector's capped backoff; a payload of the wrong shape
(`grid.GridError`) and every value the parsers skipped become dead letters with the reason.

`backfill` loads a date range once (or `csv_records` an Electricity Maps data-portal CSV) into
the same outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import msgspec

from pipeline.collect import grid
from pipeline.collect.config import CollectorConfig, GridSource
from pipeline.collect.grid_http import GridClient, GridHttpError, grid_client
from pipeline.collect.service import COLLECT_TOPIC, CollectorMetrics, PollResult, SourceHealth
from pipeline.contracts.outputs import DeadLetter
from pipeline.contracts.records import GridIntensity
from pipeline.errors import PipelineError
from pipeline.stream.dead_letters import dead_letter
from pipeline.wallclock import wall_clock_ms

#: What makes two values the same hour of the same signal.
Key = tuple[str, datetime, str, str]
#: Values remembered per source (a week of 5-minute values).
_SENT_MAX = 4096


def key_of(record: GridIntensity) -> Key:
    return (record.zone, record.valid_from, record.signal, record.emission_factor_type)


def skipped_letters(label: str, at_ms: int, skipped: list[grid.Skipped]) -> list[DeadLetter]:
    """Dead letters of the values a parser skipped (where in the payload, and why)."""
    return [
        dead_letter(COLLECT_TOPIC, -1, at_ms, label.encode(), s.where.encode(), "invalid", s.reason)
        for s in skipped
    ]


class GridSourceState:
    def __init__(self, source: GridSource, client: GridClient) -> None:
        self.source = source
        self.client = client
        self.health = SourceHealth(client.label)
        self.next_at_ms = 0
        self.sent: dict[Key, GridIntensity] = {}

    def fresh(self, records: list[GridIntensity]) -> list[GridIntensity]:
        return [r for r in records if self.sent.get(key_of(r)) != r]

    def remember(self, records: list[GridIntensity]) -> None:
        if len(self.sent) + len(records) > _SENT_MAX:
            for key in sorted(self.sent, key=lambda k: k[1])[: len(records)]:
                del self.sent[key]
        for record in records:
            self.sent[key_of(record)] = record


class GridPoller:
    """Polls the grid sources of a collector file (clients built by `make_client`)."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        metrics: CollectorMetrics | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        make_client: Callable[[GridSource], GridClient] = grid_client,
    ) -> None:
        self.metrics = metrics or CollectorMetrics()
        self.clock_ms = clock_ms
        self.sources = [GridSourceState(s, make_client(s)) for s in config.grid]

    async def step(self, emit: Callable[[PollResult], Awaitable[bool]]) -> PollResult:
        """Poll every due source once; what was emitted."""
        now = self.clock_ms()
        due = [s for s in self.sources if now >= s.next_at_ms and s.health.due(now)]
        result = PollResult()
        polled = await asyncio.gather(*(self._poll(s, now, result) for s in due))
        fresh = [(state, records) for state, records in zip(due, polled, strict=True) if records]
        result.grid = [r for _, records in fresh for r in records]
        if (result.grid or result.dead_letters) and not await emit(result):
            return PollResult()  # refused (buffer full): not remembered, sent next time
        for state, records in fresh:
            state.remember(records)
            self.metrics.grid_values.labels(state.health.label).inc(len(records))
        return result

    async def _poll(
        self, state: GridSourceState, now: int, result: PollResult
    ) -> list[GridIntensity]:
        label = state.health.label
        self.metrics.polls.labels(label).inc()
        interval_s = state.source.poll_interval_s
        try:
            records, skipped = await state.client.latest()
        except (GridHttpError, grid.GridError, OSError, TimeoutError) as exc:
            reason = type(exc).__name__
            self.metrics.failures.labels(label, reason).inc()
            state.health.failed(now, str(exc) or reason, interval_s)
            self.metrics.stale(state.health, now)
            if isinstance(exc, grid.GridError):
                self.metrics.dead_letters.labels(label).inc()
                result.dead_letters.append(
                    dead_letter(COLLECT_TOPIC, -1, now, label.encode(), b"", "invalid", str(exc))
                )
            return []
        state.health.ok(now)
        self.metrics.last_success.labels(label).set(now / 1000)
        self.metrics.stale(state.health, now)
        state.next_at_ms = now + round(interval_s * 1000)
        if skipped:
            self.metrics.dead_letters.labels(label).inc(len(skipped))
            result.dead_letters += skipped_letters(label, now, skipped)
        return state.fresh(records)

    async def run(self, emit: Callable[[PollResult], Awaitable[bool]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step(emit)
            now = self.clock_ms()
            wake = min((max(s.next_at_ms, s.health.retry_at_ms) for s in self.sources), default=now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(1.0, (wake - now) / 1000))

    async def close(self) -> None:
        for state in self.sources:
            await state.client.close()


async def backfill(
    source: GridSource,
    start: datetime,
    end: datetime,
    *,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> PollResult:
    """The source's values over `[start, end)`, once (skipped values as dead letters)."""
    client = grid_client(source)
    try:
        try:
            records, skipped = await client.history(start, end)
        except (GridHttpError, grid.GridError) as exc:
            raise PipelineError(f"{client.label}: {exc}") from exc
    finally:
        await client.close()
    return PollResult(grid=records, dead_letters=skipped_letters(client.label, clock_ms(), skipped))


def csv_records(
    path: Path, zone: str, emission_factor_type: grid.FactorType, *, at_ms: int
) -> PollResult:
    """An Electricity Maps data-portal CSV file, its zone set to the fleet's `zone`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text: {exc}") from exc
    try:
        records, skipped = grid.electricity_maps_csv(
            text, emission_factor_type=emission_factor_type
        )
    except grid.GridError as exc:
        raise PipelineError(f"{path}: {exc}") from exc
    zones = sorted({r.zone for r in records})
    if len(zones) > 1:
        raise PipelineError(f"{path}: holds {len(zones)} zones ({', '.join(zones)}): give one")
    records = [msgspec.structs.replace(r, zone=zone) for r in records]
    return PollResult(grid=records, dead_letters=skipped_letters(str(path), at_ms, skipped))
