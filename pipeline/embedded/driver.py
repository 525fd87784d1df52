"""Embedded runner: the stream core driven in-process from the simulator or JSON-lines files.

No Kafka: records are decoded, dead-lettered or placed on the partition Kafka's default
partitioner would pick, given per-partition offsets, and fed to one stage-1 processor per
partition and to stage 2 — the same core, in the same order rules, as the Faust workers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.contracts.codec import decoder
from pipeline.contracts.outputs import LateEvent, NodeMinute, PartitionMark
from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.records import FacilitySample, GridIntensity, NodeSample, RequestLog
from pipeline.contracts.topics import (
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
    NODE_MINUTES,
    NODE_TELEMETRY,
    REQUEST_LOG,
    TopicSpec,
    output_topic,
)
from pipeline.fleet.model import Fleet
from pipeline.stream.dead_letters import classify, dead_letter
from pipeline.stream.node_stage import NodeStage, NowMs
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S, SiteStage
from pipeline.wallclock import wall_clock_ms

log = logging.getLogger(__name__)

#: (topic, key bytes or None, value bytes) — what the simulator or a file reader hands over.
Message = tuple[TopicSpec, bytes | None, bytes]


@dataclass
class RunResult:
    """Every output record, per output topic name, in emission order."""

    outputs: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    consumed: int = 0
    #: Records whose processing raised inside the core (dead-lettered as `internal_error`).
    internal_errors: int = 0
    #: Redeliveries counted once (same request_id; same node or site and observed_at).
    duplicates: int = 0

    def count(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.outputs.items()}


class EmbeddedPipeline:
    """Stage 1 per partition plus stage 2, fed message by message."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        partitions: int = NODE_TELEMETRY.partitions,
        lateness_s: float = 120.0,
        now_ms: NowMs = wall_clock_ms,
        facility_wait_s: float = FACILITY_WAIT_S,
        grid_wait_s: float = GRID_WAIT_S,
    ) -> None:
        self.fleet = fleet
        self.partitions = partitions
        self.stage_one = [
            NodeStage(fleet, p, partitions, lateness_s, now_ms=now_ms) for p in range(partitions)
        ]
        self.stage_two = SiteStage(
            fleet,
            lateness_s,
            now_ms=now_ms,
            facility_wait_s=facility_wait_s,
            grid_wait_s=grid_wait_s,
        )
        self.result = RunResult()
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._node = decoder(NodeSample).decode
        self._request = decoder(RequestLog).decode
        self._facility = decoder(FacilitySample).decode
        self._grid = decoder(GridIntensity).decode
        self._handlers: dict[str, Callable[[int, int, bytes], None]] = {
            NODE_TELEMETRY.name: self._on_node,
            REQUEST_LOG.name: self._on_request,
            FACILITY_TELEMETRY.name: self._on_facility,
            GRID_INTENSITY.name: self._on_grid,
        }

    def feed(self, messages: Iterable[Message]) -> None:
        for spec, key, value in messages:
            self.feed_one(spec, key, value)

    def feed_one(
        self, spec: TopicSpec, key: bytes | None, value: bytes, partition: int | None = None
    ) -> None:
        """Apply one message. `partition` is the one its producer chose (tests of other
        partitioners); by default the project's key rule picks it."""
        if partition is None:
            partition = partition_for(key, spec.partitions) if key is not None else 0
        slot = (spec.name, partition)
        offset = self._offsets[slot]
        self._offsets[slot] = offset + 1
        self.result.consumed += 1
        handler = self._handlers.get(spec.name)
        if handler is None:
            raise ValueError(f"{spec.name} is not an input topic")
        try:
            handler(partition, offset, value)
        except Exception as exc:  # every record that fails is a dead letter (defence in depth)
            kind, detail = classify(exc)
            if kind == "internal_error":
                self.result.internal_errors += 1
                log.error("%s[%d]@%d raised in the core: %s", spec.name, partition, offset, detail)
                log.debug("traceback", exc_info=exc)
            self._emit(dead_letter(spec.name, partition, offset, key, value, kind, detail))
        if self.stage_two.outputs:
            self._stage_two_outputs()

    def _on_node(self, partition: int, offset: int, value: bytes) -> None:
        stage = self.stage_one[partition]
        stage.on_sample(self._node(value), offset=offset, raw=value)
        if stage.outputs:
            self._stage_one_outputs(partition)

    def _on_request(self, partition: int, offset: int, value: bytes) -> None:
        stage = self.stage_one[partition]
        stage.on_request(self._request(value), offset=offset, raw=value)
        if stage.outputs:
            self._stage_one_outputs(partition)

    def _on_facility(self, partition: int, offset: int, value: bytes) -> None:
        self.stage_two.on_facility(self._facility(value))

    def _on_grid(self, partition: int, offset: int, value: bytes) -> None:
        self.stage_two.on_grid(self._grid(value))

    def close(self) -> RunResult:
        """End of input: close every open minute in both stages."""
        for p, stage in enumerate(self.stage_one):
            stage.flush()
            self._stage_one_outputs(p)
        self.stage_two.flush()
        self._stage_two_outputs()
        self.result.duplicates = self.stage_two.duplicate_samples + sum(
            stage.duplicate_samples + stage.duplicate_requests for stage in self.stage_one
        )
        return self.result

    def _stage_one_outputs(self, partition: int) -> None:
        handoff: list[NodeMinute | PartitionMark] = []
        for item in self.stage_one[partition].drain():
            if isinstance(item, LateEvent):
                self._emit(item)
            else:
                handoff.append(item)
        if handoff:
            self.result.outputs[NODE_MINUTES.name].extend(handoff)
            self.stage_two.on_stage_one(handoff)

    def _stage_two_outputs(self) -> None:
        for item in self.stage_two.drain():
            self._emit(item)

    def _emit(self, item: Any) -> None:
        self.result.outputs[output_topic(item).name].append(item)


def run_embedded(fleet: Fleet, messages: Iterable[Message], **kwargs: Any) -> RunResult:
    """Run the whole stream core over `messages` (in order) and close every minute at the end."""
    pipeline = EmbeddedPipeline(fleet, **kwargs)
    pipeline.feed(messages)
    return pipeline.close()


def from_envelopes(envelopes: Iterable[Any]) -> Iterator[Message]:
    """Simulator envelopes as messages."""
    for env in envelopes:
        yield env.topic, env.key, env.value
