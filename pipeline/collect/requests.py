"""Request logs for `microdc collect`: access logs tailed line by line, client IPs kept private.

Each `access_log` source of the collector file is a `LogSource`: a `tail.Tailer` on the file
(its position checkpointed in the state folder, one file per log), the parser of its format
(`access_log.parse_nginx_json` / `parse_envoy_json`) and its mapping rules. `RequestFollower`
reads every log's new lines, turns them into `CollectedRequestLog` records (and lines that make
none into dead letters with the reason) and hands them to the output; only once the output
says they are safe (on disk in the buffer, or written to the files) are the positions
committed. A refused batch (the disk buffer is full) rewinds to the last committed position:
the lines are read again later, from the log, not lost.

Across restarts this is at-least-once with a window of one batch (a crash after the buffer
append and before the commit repeats it); a repeated line has the same `request_id`, and the
stream and the warehouse count a request once by its id.

Client IPs: `RequestPrivacy` applies the lake's policy before anything is written (buffer,
output files, Kafka): with `MICRODC_LAKE_IP_SECRET` set (the lake's secret, so both hash alike)
the record carries `client_ip_hmac`, the lake's keyed hash, else the IP is dropped; a dead
letter's quoted line has every address replaced the same way. Log lines are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from pipeline.collect.access_log import (
    AccessEntry,
    AccessLogError,
    AccessMapping,
    RequestMapper,
    parse_envoy_json,
    parse_nginx_json,
)
from pipeline.collect.config import AccessLogSource, CollectorConfig
from pipeline.collect.service import COLLECT_TOPIC, CollectorMetrics, PollResult, SourceHealth
from pipeline.collect.tail import Position, Tailer
from pipeline.contracts.outputs import DeadLetter
from pipeline.contracts.records import CollectedRequestLog
from pipeline.fleet.model import Fleet
from pipeline.lake.privacy import IP_SECRET_ENV, IpPolicy
from pipeline.stream.dead_letters import dead_letter
from pipeline.wallclock import wall_clock_ms

log = logging.getLogger(__name__)

PARSERS: dict[str, Callable[[bytes], AccessEntry]] = {
    "nginx_json": parse_nginx_json,
    "envoy_json": parse_envoy_json,
}
#: Lines read per log per step (a step's records go to the output as one batch).
MAX_LINES = 5_000
#: How often the logs are read when there was nothing new, s.
FOLLOW_INTERVAL_S = 0.5


class RequestPrivacy:
    """The lake's IP policy, applied at the collector (see the module docstring)."""

    def __init__(self, policy: IpPolicy) -> None:
        self.policy = policy

    @classmethod
    def from_env(cls) -> RequestPrivacy:
        secret = os.environ.get(IP_SECRET_ENV)
        return cls(IpPolicy(secret.encode() if secret else None))

    def redacted(self, letter: DeadLetter) -> DeadLetter:
        """`letter` with every address in its quoted record hashed or removed."""
        return msgspec.structs.replace(letter, value=self.policy.redact(letter.value))

    def dead(self, source: str, at_ms: int, line: bytes, reason: str) -> DeadLetter:
        value = self.policy.redact(line)
        return dead_letter(COLLECT_TOPIC, -1, at_ms, source.encode(), value, "invalid", reason)


def checkpoint_of(state_dir: Path, log_path: str) -> Path:
    """Where the position of `log_path` is kept: one file per log, named by its path."""
    digest = hashlib.sha256(str(Path(log_path).absolute()).encode()).hexdigest()[:16]
    return state_dir / f"tail-{Path(log_path).name}-{digest}.json"


class LogSource:
    """One access log: its tailer, parser and mapping."""

    def __init__(
        self,
        source: AccessLogSource,
        mapping: AccessMapping,
        fleet: Fleet,
        state_dir: Path,
        privacy: RequestPrivacy,
    ) -> None:
        self.source = source
        self.label = f"access_log {source.path}"
        self.mapper = RequestMapper(mapping, fleet)
        self.parse = PARSERS[source.format]
        self.privacy = privacy
        self.path = Path(source.path)
        self.checkpoint = checkpoint_of(state_dir, source.path)
        self.health = SourceHealth(self.label)
        self._tailer: Tailer | None = None
        #: The position after the last line handed out and not yet committed.
        self.pending: Position | None = None

    def read(
        self, at_ms: int, max_lines: int = MAX_LINES
    ) -> tuple[list[CollectedRequestLog], list[DeadLetter]]:
        """The records and dead letters of the log's next lines (raises OSError when the log
        or its checkpoint cannot be read)."""
        if self._tailer is None:
            self._tailer = Tailer(self.path, self.checkpoint)
        lines = self._tailer.read(max_lines)
        records: list[CollectedRequestLog] = []
        dead: list[DeadLetter] = []
        for line, position in lines:
            self.pending = position
            if not line.strip():
                continue
            try:
                records.append(self.mapper.collected(self.parse(line), self.privacy.policy))
            except AccessLogError as exc:
                dead.append(self.privacy.dead(self.label, at_ms, line, exc.reason))
        return records, dead

    def commit(self) -> None:
        if self.pending is not None and self._tailer is not None:
            self._tailer.commit(self.pending)
            self.pending = None

    def rewind(self) -> None:
        """Forget what was read since the last commit: the next read starts there again."""
        self.close()
        self.pending = None

    def close(self) -> None:
        if self._tailer is not None:
            self._tailer.close()
            self._tailer = None


class RequestFollower:
    """Reads every access log of a collector file and hands the records to `emit`."""

    def __init__(
        self,
        config: CollectorConfig,
        fleet: Fleet,
        state_dir: Path,
        *,
        privacy: RequestPrivacy | None = None,
        metrics: CollectorMetrics | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        max_lines: int = MAX_LINES,
    ) -> None:
        self.metrics = metrics or CollectorMetrics()
        self.clock_ms = clock_ms
        self.max_lines = max_lines
        self.poll_interval_s = config.poll_interval_s
        privacy = privacy or RequestPrivacy.from_env()
        self.logs: list[LogSource] = []
        for source in config.requests:
            if isinstance(source, AccessLogSource):
                mapping = source.mapping or config.request_mapping
                assert mapping is not None  # the collector file's check
                self.logs.append(LogSource(source, mapping, fleet, state_dir, privacy))
        if self.logs:
            state_dir.mkdir(parents=True, exist_ok=True)

    async def step(self, emit: Callable[[PollResult], Awaitable[bool]]) -> int:
        """Read each due log once and emit what it gave; the number of lines handled."""
        now = self.clock_ms()
        result = PollResult()
        read: list[LogSource] = []
        for source in self.logs:
            if not source.health.due(now):
                continue
            try:
                records, dead = source.read(now, self.max_lines)
            except OSError as exc:
                self.metrics.failures.labels(source.label, type(exc).__name__).inc()
                source.health.failed(now, str(exc), self.poll_interval_s)
                self.metrics.stale(source.health, now)
                source.rewind()
                continue
            source.health.ok(now)
            self.metrics.last_success.labels(source.label).set(now / 1000)
            self.metrics.stale(source.health, now)
            if source.pending is None:
                continue
            read.append(source)
            result.requests += records
            result.dead_letters += dead
            self.metrics.requests.labels(source.label).inc(len(records))
            if dead:
                self.metrics.dead_letters.labels(source.label).inc(len(dead))
        if not read:
            return 0
        if not await emit(result):
            for source in read:  # the buffer is full: read these lines again later
                source.rewind()
            return 0
        for source in read:
            source.commit()
        return len(result.requests) + len(result.dead_letters)

    async def run(self, emit: Callable[[PollResult], Awaitable[bool]], stop: asyncio.Event) -> None:
        """Follow the logs until `stop` is set: at once again while there was more to read,
        else every FOLLOW_INTERVAL_S."""
        while not stop.is_set():
            handled = await self.step(emit)
            if handled:
                await asyncio.sleep(0)  # let the other tasks (sender, receivers) run
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=FOLLOW_INTERVAL_S)

    def close(self) -> None:
        for source in self.logs:
            source.close()
