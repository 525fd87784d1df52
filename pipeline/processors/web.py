"""Worker web endpoints: `GET /health` (JSON state of the stages), `GET /metrics` (Prometheus),
`GET /live` (the live view page) and `GET /live.json` (its data, see `pipeline.stream.live`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.processors.live_page import CONTENT_SECURITY_POLICY, PAGE


class WorkerMetrics:
    """Counters the agents bump per batch (never per record), in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # RSS, CPU, open files of the worker
        r = self.registry
        self.events_in = Counter(
            "microdc_events_in", "Records consumed, per input topic.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "microdc_dead_letters",
            "Records sent to the dead-letter topic, per source topic and error kind.",
            ["topic", "kind"],
            registry=r,
        )
        self.internal_errors = Counter(
            "microdc_internal_errors",
            "Failures inside a stage not caused by one record (e.g. a snapshot).",
            ["stage"],
            registry=r,
        )
        self.late_events = Counter(
            "microdc_late_events",
            "Records (or parts) that arrived after their minute closed.",
            ["partition"],
            registry=r,
        )
        self.late_by_reason = Counter(
            "microdc_late_records",
            "Late events per source topic and reason (a stream running behind past the skew "
            "bound, a record beyond the allowed lateness in its own stream).",
            ["topic", "reason"],
            registry=r,
        )
        self.outputs = Counter(
            "microdc_outputs", "Records produced, per output topic.", ["topic"], registry=r
        )
        self.replayed = Counter(
            "microdc_replayed",
            "Records skipped because the restored state already had them.",
            ["topic"],
            registry=r,
        )
        self.duplicates = Counter(
            "microdc_duplicates_dropped",
            "Records delivered again (same request_id, or same node/site and observed_at) while "
            "their minute was open: counted once.",
            ["topic"],
            registry=r,
        )
        self.split_nodes = Counter(
            "microdc_split_node_minutes",
            "Node-minutes reported by more than one stage-1 partition and merged by stage 2: a "
            "producer spreading one node's records over partitions (key them by node_id, or a "
            "copy delivered to two partitions counts twice).",
            registry=r,
        )
        self.seeks = Counter(
            "microdc_seeks",
            "Consumer seeks to the position a stage's state needs.",
            ["topic"],
            registry=r,
        )
        self.batch_seconds = Counter(
            "microdc_batch_seconds",
            "Time spent processing fetched batches.",
            ["stage"],
            registry=r,
        )
        self.live_records = Counter(
            "microdc_live_records",
            "Output records read back for the live view, per topic.",
            ["topic"],
            registry=r,
        )
        self.live_errors = Counter(
            "microdc_live_errors",
            "Output records the live view could not use, per topic.",
            ["topic"],
            registry=r,
        )
        self.snapshot_bytes = Gauge(
            "microdc_snapshot_bytes",
            "Size of the last state snapshot.",
            ["stage", "partition"],
            registry=r,
        )

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


def behind_seconds(marks: Mapping[str, int | None]) -> dict[str, float]:
    """Per source with a watermark (ms, event time): seconds it trails the fastest of `marks`,
    the sources of one stage partition (`microdc_source_behind_seconds`, the live view's
    inputs)."""
    known = [m for m in marks.values() if m is not None]
    if not known:
        return {}
    lead = max(known)
    return {name: (lead - mark) / 1000 for name, mark in marks.items() if mark is not None}


class StageCollector(Collector):
    """Gauges read from the live stages at scrape time: open minutes, watermark lag, backlog."""

    def __init__(self, describe: Callable[[], dict[str, Any]]) -> None:
        self._describe = describe

    def collect(self) -> Any:
        state = self._describe()
        now_ms = time.time() * 1000  # wall clock for monitoring only, never in results
        open_minutes = GaugeMetricFamily(
            "microdc_open_minutes", "Minutes held open by a stage.", labels=["stage", "partition"]
        )
        lag = GaugeMetricFamily(
            "microdc_watermark_lag_seconds",
            "Wall clock minus the stage watermark (event time).",
            labels=["stage", "partition"],
        )
        backlog = GaugeMetricFamily(
            "microdc_consumer_lag_records",
            "Records in the broker not yet read, per input topic-partition.",
            labels=["topic", "partition"],
        )
        buffered = GaugeMetricFamily(
            "microdc_merge_buffered_records",
            "Records fetched but held back by the timestamp merge.",
            labels=["stage", "partition"],
        )
        behind = GaugeMetricFamily(
            "microdc_source_behind_seconds",
            "Per stage-1 input topic-partition: event time its watermark trails the partition's "
            "fastest source (what holds closing back; see --max-source-skew).",
            labels=["topic", "partition"],
        )
        for part in state["partitions"]:
            marks = part.get("source_watermark_ms") or {}
            for topic, seconds in behind_seconds(marks).items():
                behind.add_metric([topic, str(part["partition"])], seconds)
            labels = [part["stage"], str(part["partition"])]
            open_minutes.add_metric(labels, part["open_minutes"])
            buffered.add_metric(labels, part["buffered"])
            if part["watermark_ms"] is not None:
                lag.add_metric(labels, (now_ms - part["watermark_ms"]) / 1000)
            for topic, records in part["consumer_lag"].items():
                backlog.add_metric([topic, str(part["partition"])], records)
        yield from (open_minutes, lag, backlog, buffered, behind)


def install_views(app: Any, metrics: WorkerMetrics, health: Callable[[], dict[str, Any]]) -> None:
    """Register `/health` and `/metrics` on the Faust web server of `app`."""

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        return web.json(health())

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside `content_type`; the header carries it whole.
        return web.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def install_live_views(app: Any, view_json: Callable[[], bytes]) -> None:
    """Register `/live` (a self-contained page: inline CSS and JS, no external requests, which
    its Content-Security-Policy enforces) and `/live.json` (`view_json()`, polled by the page)."""

    @app.page("/live")
    async def live_page(web: Any, request: Any) -> Any:
        return web.html(
            PAGE,
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.page("/live.json")
    async def live_json(web: Any, request: Any) -> Any:
        return web.bytes(
            view_json(),
            headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
        )
