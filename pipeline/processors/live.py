"""The worker's live view: a reader of the fleet's per-minute output topics feeding a `LiveState`,
served as `GET /live` (page) and `GET /live.json` (data) on the worker's web port.

Design decisions (the numbers themselves are defined in `pipeline.stream.live`):

- **The whole fleet on every replica, from the output topics.** Stage 2 (site minutes, burn
  rates, alerts) runs on whichever worker owns the single `mdc.node-minutes` partition, and stage
  1 is split over the replicas, so no worker's own outputs show the fleet. Each worker therefore
  reads `mdc.site-minutes`, `mdc.slo-burn`, `mdc.alerts` and `mdc.node-minutes` (latency
  sketches, for p95) back with a consumer of its own: no consumer group (all partitions, never a
  member of the pipeline's group, never commits), outside the bulk hot path. Every replica shows
  the same page, and a restarted one shows the whole window at once.
- **Where it starts reading.** `mdc.alerts` from the log start (an alert firing now may have
  fired hours ago; the topic carries only state changes). The others from the end minus what
  the window needs: every closed minute has exactly one site minute per site and one burn row
  per service and site (plus `__all__`) - x2 for re-emissions after a failover - and at most
  one node minute per node and service (plus idle) and a mark per stage-1 partition, for
  `AHEAD_MINUTES` more minutes (stage 1 runs ahead of stage 2). For the demo fleet that is
  ~70,000 node minutes (~40 MB) read once at start, well under a second of decoding.
- **Cost.** A few hundred records per minute of event time (demo fleet: ~330 node minutes, 3
  site minutes, ~28 burn rows), decoded with msgspec in fetches of at most `MAX_RECORDS`, so the
  event loop the stages share is never held for long; no per-event work.
- **Refresh.** The page polls `live.json` every 2 s (see `live_page`); the view is rebuilt only
  when an input changed since the last request.
- **This worker's inputs.** `live.json` also carries `inputs` (`live_inputs`): the input
  topic-partitions this worker owns, from the agents' `describe()` and the `WorkerMetrics`
  counters that `/metrics` exports, read per request (no Kafka reads, no counting of its own).
  Unlike the rest of the view it differs between replicas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.contracts.outputs import AlertEvent, SiteMinute, SloBurn
from pipeline.contracts.topics import (
    ALERTS,
    CO_PARTITIONS,
    NODE_MINUTES,
    SITE_MINUTES,
    SLO_BURN,
    TopicSpec,
)
from pipeline.fleet.model import Fleet
from pipeline.kafka_security import KafkaSecurity, client_kwargs
from pipeline.processors.live_inputs import counter_values, inputs_view
from pipeline.processors.web import WorkerMetrics, install_live_views
from pipeline.stream.live import AHEAD_MINUTES, LiveState, NodeMinuteItem

log = logging.getLogger(__name__)

#: Records per fetch: a fetch is applied in one go on the event loop the stages share.
MAX_RECORDS = 2000
#: Re-emitted minutes (a failover) may double what a window spans in a topic.
REEMIT_MARGIN = 2
#: What the view reads; each of these topics has one partition (`pipeline.contracts.topics`).
LIVE_TOPICS: tuple[TopicSpec, ...] = (SITE_MINUTES, SLO_BURN, ALERTS, NODE_MINUTES)


def records_per_minute(fleet: Fleet) -> dict[str, int]:
    """Upper bounds of records per closed minute, per (unprefixed) output topic."""
    services_at = {
        s.site_id: sum(1 for v in fleet.services if s.site_id in v.sites) for s in fleet.sites
    }
    node_rows = sum(services_at.get(n.site_id, 0) + 1 for n in fleet.nodes)  # + the idle row
    return {
        SITE_MINUTES.name: len(fleet.sites),
        SLO_BURN.name: sum(len(v.sites) + 1 for v in fleet.services),
        NODE_MINUTES.name: node_rows + CO_PARTITIONS,  # + a mark per stage-1 partition
    }


def start_offsets(
    fleet: Fleet, window_minutes: int, begin: Mapping[str, int], end: Mapping[str, int]
) -> dict[str, int]:
    """Where to start reading each topic (by unprefixed name) of a single-partition log."""
    per_minute = records_per_minute(fleet)
    out: dict[str, int] = {}
    for name, first in begin.items():
        if name == ALERTS.name:
            out[name] = first
            continue
        if name == NODE_MINUTES.name:  # the bound over-counts enough: no margin for this one
            back = (window_minutes + AHEAD_MINUTES) * per_minute[name]
        else:
            back = REEMIT_MARGIN * window_minutes * per_minute[name]
        out[name] = max(first, end[name] - back)
    return out


class LiveReader(Service):  # type: ignore[misc]
    """Reads the live topics into `state` (kept as `live`: `Service.state` is mode's) until the
    worker stops."""

    def __init__(
        self,
        state: LiveState,
        fleet: Fleet,
        *,
        bootstrap: str,
        prefix: str,
        metrics: WorkerMetrics,
        client_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.live = state
        self.fleet = fleet
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.metrics = metrics
        self.client_options = dict(client_options or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._apply: dict[str, Callable[[bytes], None]] = {
            f"{prefix}{SITE_MINUTES.name}": self._decoded(SiteMinute, state.add_site_minute),
            f"{prefix}{SLO_BURN.name}": self._decoded(SloBurn, state.add_slo_burn),
            f"{prefix}{ALERTS.name}": self._decoded(AlertEvent, state.add_alert),
            f"{prefix}{NODE_MINUTES.name}": self._decoded(NodeMinuteItem, state.add_node_minute),
        }

    @staticmethod
    def _decoded(kind: Any, feed: Callable[[Any], None]) -> Callable[[bytes], None]:
        decode = msgspec.json.Decoder(kind).decode

        def apply(value: bytes) -> None:
            feed(decode(value))

        return apply

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            client_id="microdc-live",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=500,
            **self.client_options,
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        tps = {spec.name: TopicPartition(f"{self.prefix}{spec.name}", 0) for spec in LIVE_TOPICS}
        consumer.assign(list(tps.values()))
        begin = await consumer.beginning_offsets(list(tps.values()))
        end = await consumer.end_offsets(list(tps.values()))
        starts = start_offsets(
            self.fleet,
            self.live.window_minutes,
            {name: begin[tp] for name, tp in tps.items()},
            {name: end[tp] for name, tp in tps.items()},
        )
        for name, tp in tps.items():
            consumer.seek(tp, starts[name])
        log.info("live view reading from %s", starts)

    @Service.task
    async def _read(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            try:
                await self._assign(consumer)
                break
            except KafkaError as exc:  # topics not there yet, broker away: try again
                log.warning("live view: cannot position its consumer (%r); retrying", exc)
                await self.sleep(1.0)
        while not self.should_stop:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            except KafkaError as exc:  # aiokafka reconnects; keep asking
                log.warning("live view: fetch failed (%r); retrying", exc)
                await self.sleep(1.0)
                continue
            for tp, records in batches.items():
                try:
                    self._feed(tp.topic, records)
                except Exception:  # logged and counted: a live-view bug must not crash
                    # this service and, with it, the worker
                    log.exception("live view: %s batch skipped", tp.topic)
                    name = tp.topic.removeprefix(self.prefix)
                    self.metrics.live_errors.labels(name).inc(len(records))

    def _feed(self, topic: str, records: list[Any]) -> None:
        apply = self._apply[topic]
        name = topic.removeprefix(self.prefix)
        bad = 0
        for rec in records:
            try:
                apply(rec.value)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                bad += 1
                if bad == 1:
                    log.warning("live view: %s offset %d unusable: %s", topic, rec.offset, exc)
        self.metrics.live_records.labels(name).inc(len(records) - bad)
        if bad:
            self.metrics.live_errors.labels(name).inc(bad)


_encode = msgspec.json.Encoder().encode


def live_json(
    state: LiveState, describe: Callable[[], Mapping[str, Any]], metrics: WorkerMetrics
) -> bytes:
    """The body of `GET /live.json`: the fleet's view (`LiveState.view()`, its fields at the top
    level) plus `inputs`, this worker's input sources (`live_inputs.inputs_view`)."""
    inputs = inputs_view(describe()["partitions"], counter_values(metrics))
    return _encode({**msgspec.structs.asdict(state.view()), "inputs": inputs})


def install_live(
    app: Any,
    fleet: Fleet,
    *,
    bootstrap: str,
    prefix: str,
    metrics: WorkerMetrics,
    describe: Callable[[], Mapping[str, Any]],
    security: KafkaSecurity | None = None,
) -> LiveState:
    """Add the live view to a worker app: the reader (started with the app's tasks, stopped
    with it) and the `/live` and `/live.json` pages. `describe` is the stage runs' state, as for
    `/health` and `StageCollector` (`{"partitions": [...]}`)."""
    state = LiveState(fleet)

    @app.task
    async def start_live_reader() -> None:
        reader = LiveReader(
            state,
            fleet,
            bootstrap=bootstrap,
            prefix=prefix,
            metrics=metrics,
            client_options=client_kwargs(security),
            loop=app.loop,
            beacon=app.beacon,
        )
        await app.add_runtime_dependency(reader)

    install_live_views(app, lambda: live_json(state, describe, metrics))
    return state
