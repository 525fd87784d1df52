"""File I/O around the embedded runner: read simulator JSON-lines, write one file per output
topic, and summarise per site — `microdc process` and `microdc demo`, no Kafka needed."""

from __future__ import annotations

import contextlib
import heapq
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from pipeline.contracts.outputs import NodeMinute
from pipeline.contracts.records import FacilitySample, GridIntensity, NodeSample, RequestLog
from pipeline.contracts.topics import INPUT_TOPICS, TopicSpec
from pipeline.errors import PipelineError
from pipeline.metrics.energy import IDLE_SERVICE
from pipeline.metrics.sketch import LatencySketch, SketchWire
from pipeline.runner import Message, RunResult

_TIME_FIELD = {
    NodeSample: "observed_at",
    RequestLog: "finished_at",
    FacilitySample: "observed_at",
    GridIntensity: "valid_from",
}


class _Stamp(msgspec.Struct):
    observed_at: str | None = None
    finished_at: str | None = None
    valid_from: str | None = None


_stamp = msgspec.json.Decoder(_Stamp)
#: Top-level values only as raw JSON: a key is a string; nothing nested is parsed.
_key_doc = msgspec.json.Decoder(dict[str, msgspec.Raw])
_key_text = msgspec.json.Decoder(str)


def _lines(spec: TopicSpec, path: Path) -> Iterator[tuple[str, int, Message]]:
    """(event time text, line number, message) per line; bad lines keep their neighbours' time."""
    last = ""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            value = line.rstrip(b"\n")
            if not value:
                continue
            try:
                stamp = _stamp.decode(value)
                at = stamp.observed_at or stamp.finished_at or stamp.valid_from or last
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                at = last  # malformed: goes to dead letters at its place in the file
            last = at
            key = _key(spec, value)
            yield at, number, (spec, key, value)


def _key(spec: TopicSpec, value: bytes) -> bytes | None:
    """The message key the contract prescribes, read from the record (None if unreadable)."""
    if spec.key_field is None:
        return None
    try:
        doc = _key_doc.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # not a JSON object (or nested too deeply): a dead letter, unkeyed
    raw = doc.get(spec.key_field)
    if raw is None:
        return None
    try:
        return _key_text.decode(raw).encode()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def read_jsonl_dir(folder: Path) -> Iterator[Message]:
    """The four input topics' JSON-lines files of `folder`, merged in event-time order."""
    streams = []
    for spec in INPUT_TOPICS:
        path = folder / f"{spec.name}.jsonl"
        if not path.exists():
            raise PipelineError(
                f"{path} is missing: expected one JSON-lines file per input topic "
                f"(run `microdc simulate --out {folder}` to make some)"
            )
        streams.append(_lines(spec, path))
    # RFC 3339 UTC text sorts like time only with one format; compare parsed seconds instead.
    for _, _, message in heapq.merge(*streams, key=lambda item: (_seconds(item[0]), item[1])):
        yield message


def _seconds(text: str) -> float:
    from datetime import datetime

    if not text:
        return float("-inf")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("-inf")


def write_outputs(result: RunResult, folder: Path) -> dict[str, Path]:
    """One JSON-lines file per output topic; returns topic name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    paths: dict[str, Path] = {}
    for topic, records in sorted(result.outputs.items()):
        path = folder / f"{topic}.jsonl"
        with path.open("wb") as f:
            for rec in records:
                f.write(encoder.encode(rec) + b"\n")
        paths[topic] = path
    return paths


@dataclass(frozen=True)
class SiteSummary:
    """Totals of one site over the run (ratios re-derived as sum/sum)."""

    site_id: str
    requests: int
    it_kwh: float
    facility_kwh: float
    pue: float
    wh_per_request: float | None
    gco2e_per_request: float | None
    p95_latency_ms: float | None
    alerts: int


def summarize(result: RunResult) -> list[SiteSummary]:
    """Per-site totals: facility kWh, PUE, Wh and gCO2e per request, p95 latency, alerts fired."""
    acc: dict[str, dict[str, float]] = {}
    for row in result.outputs.get("mdc.energy-minutes", []):
        a = acc.setdefault(row.site_id, {"req": 0, "it": 0.0, "fac": 0.0, "co2": 0.0})
        a["req"] += row.requests
        a["it"] += row.it_energy_wh
        a["fac"] += row.facility_energy_wh
        a["co2"] += row.operational_gco2e + row.embodied_gco2e
    sketches: dict[str, LatencySketch] = {}
    for item in result.outputs.get("mdc.node-minutes", []):
        if isinstance(item, NodeMinute) and item.latency and item.service != IDLE_SERVICE:
            sketch = LatencySketch.from_wire(msgspec.convert(item.latency, SketchWire))
            sketches.setdefault(item.site_id, LatencySketch()).merge(sketch)
    alerts: dict[str, int] = {}
    for alert in result.outputs.get("mdc.alerts", []):
        if alert.state == "firing" and alert.site_id:
            alerts[alert.site_id] = alerts.get(alert.site_id, 0) + 1
    out = []
    for site_id, a in sorted(acc.items()):
        requests = int(a["req"])
        site_sketch = sketches.get(site_id)
        out.append(
            SiteSummary(
                site_id=site_id,
                requests=requests,
                it_kwh=a["it"] / 1000,
                facility_kwh=a["fac"] / 1000,
                pue=a["fac"] / a["it"] if a["it"] else 0.0,
                wh_per_request=a["fac"] / requests if requests else None,
                gco2e_per_request=a["co2"] / requests if requests else None,
                p95_latency_ms=site_sketch.quantile(0.95) if site_sketch else None,
                alerts=alerts.get(site_id, 0),
            )
        )
    return out


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
    from pipeline.lake.embedded import EmbeddedLander, output_event_ms, output_key
    from pipeline.runner import EmbeddedPipeline
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
    from pipeline.lake.embedded import EmbeddedLander

    try:
        landing = _InlineLanding(EmbeddedLander(Lake(lake_uri), ip_policy=IpPolicy(secret)))
        while (records := inbox.get()) is not None:
            landing.send(records)
        outbox.put(landing.close())
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        outbox.put(f"{type(exc).__name__}: {exc}")
