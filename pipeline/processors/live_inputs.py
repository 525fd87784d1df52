"""The live view's "Inputs (this worker)" section: the input sources this worker reads, as
`inputs` in `GET /live.json` (drawn by `live_page`).

Unlike the rest of the view (the whole fleet, read back from the output topics by every
replica), this is about one worker: per input topic-partition it owns, the consumer lag, the
watermark and how far it trails the fastest source of its stage partition (and whether the skew
rule stopped waiting for it); per input topic, the records consumed, late records by reason and
duplicates dropped; and the worker-wide count of node-minutes merged from several partitions.

Design decisions:

- **One source of truth: what `/metrics` exports.** The per-partition numbers come from the
  agents' `describe()` (what `StageCollector` turns into `microdc_consumer_lag_records` and
  `microdc_source_behind_seconds` at scrape time, through the same `behind_seconds`), the
  counts from the `WorkerMetrics` counters (`microdc_events_in_total`,
  `microdc_late_records_total`, `microdc_duplicates_dropped_total`,
  `microdc_split_node_minutes_total`), read when `/live.json` is asked for. Nothing is counted
  a second time, so the page and a scrape taken at the same moment agree.
- **Counts are per topic.** The counters carry a `topic` label and no partition, so records
  consumed, late records and duplicates are per topic (summed over the partitions the worker
  owns or owned since it started), the rest per topic-partition.
- **Pure.** `inputs_view` builds the section from plain values (a `describe()` list and the
  counter values), so it is tested without Kafka; `counter_values` reads the counters.
- **Warnings are decided here, not in the page:** a source the skew rule excluded or more than
  `BEHIND_WARN_S` behind, nonzero late / duplicate / split counts, each with a one-line hint of
  what to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from prometheus_client import Counter

from pipeline.processors.web import WorkerMetrics, behind_seconds

#: A source trailing the fastest of its stage partition by more than this (event time) is shown
#: as a warning: it holds closing back.
BEHIND_WARN_S = 60.0

EXCLUDED_HINT = (
    "not waited for (skew rule): its records for minutes closed meanwhile become late; "
    "raise --max-source-skew if its producer runs this far behind"
)
BEHIND_HINT = "holds its partition's closing back: its producer runs behind the other topic"
LATE_HINT = (
    "records for closed minutes: raise --lateness-s for producers out of order, "
    "--max-source-skew for one running behind"
)
DUPLICATE_HINT = "redeliveries, counted once: producer retries? set enable.idempotence=true"
SPLIT_HINT = "a node's records of a minute arrived on several partitions: key them by node_id"


class InputPartition(msgspec.Struct, frozen=True, kw_only=True):
    """One input topic-partition this worker owns (times: event time)."""

    stage: str
    partition: int
    topic: str
    #: Records in the broker not yet read (None: high watermark not known yet).
    consumer_lag: int | None
    #: Max event time seen - allowed lateness (None: no record yet, or not tracked per source,
    #: as for stage 2's inputs).
    watermark: str | None
    watermark_ms: int | None
    #: Event-time seconds the watermark trails the fastest source of the same stage partition.
    behind_s: float | None
    #: True: the skew rule stopped waiting for it (in the partition's `excluded_topics`); None:
    #: the stage does not apply the rule to its sources (stage 2).
    excluded: bool | None
    warn: bool
    hint: str | None


class InputTopic(msgspec.Struct, frozen=True, kw_only=True):
    """The counters of one input topic (since the worker started)."""

    topic: str
    records_consumed: int
    #: Late records per reason (`LateEvent.reason`).
    late: dict[str, int]
    late_total: int
    duplicates_dropped: int
    warn: bool
    hint: str | None


class InputsView(msgspec.Struct, frozen=True, kw_only=True):
    """`inputs` of `/live.json`."""

    partitions: list[InputPartition]
    topics: list[InputTopic]
    split_node_minutes: int
    split_warn: bool
    split_hint: str | None
    behind_warn_s: float


@dataclass(frozen=True)
class CounterValues:
    """The values of the `WorkerMetrics` counters the section shows."""

    #: `microdc_events_in_total` per topic.
    events_in: Mapping[str, float] = field(default_factory=dict)
    #: `microdc_late_records_total` per (topic, reason).
    late: Mapping[tuple[str, str], float] = field(default_factory=dict)
    #: `microdc_duplicates_dropped_total` per topic.
    duplicates: Mapping[str, float] = field(default_factory=dict)
    #: `microdc_split_node_minutes_total`.
    split_node_minutes: float = 0.0


def _totals(counter: Counter) -> dict[tuple[str, ...], float]:
    """A counter's `_total` samples, by label values (in the counter's label order)."""
    out: dict[tuple[str, ...], float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[tuple(sample.labels.values())] = sample.value
    return out


def counter_values(metrics: WorkerMetrics) -> CounterValues:
    """Read the counters of `metrics` (what a `/metrics` scrape would show now)."""
    late = _totals(metrics.late_by_reason)
    return CounterValues(
        events_in={labels[0]: v for labels, v in _totals(metrics.events_in).items()},
        late={(labels[0], labels[1]): v for labels, v in late.items()},
        duplicates={labels[0]: v for labels, v in _totals(metrics.duplicates).items()},
        split_node_minutes=sum(_totals(metrics.split_nodes).values()),
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _partition_rows(part: Mapping[str, Any], behind_warn_s: float) -> list[InputPartition]:
    lag: Mapping[str, int] = part.get("consumer_lag") or {}
    marks: Mapping[str, int | None] = part.get("source_watermark_ms") or {}
    behind = behind_seconds(marks)
    # stage 1 applies the skew rule to its sources and says which it excluded; stage 2 does not
    excluded_topics = part.get("excluded_topics")
    rows = []
    for topic in list(marks) + [t for t in lag if t not in marks]:
        mark = marks.get(topic)
        excluded = (
            None if excluded_topics is None or topic not in marks else topic in excluded_topics
        )
        seconds = behind.get(topic)
        hint = None
        if excluded:
            hint = EXCLUDED_HINT
        elif seconds is not None and seconds > behind_warn_s:
            hint = BEHIND_HINT
        rows.append(
            InputPartition(
                stage=str(part.get("stage", "")),
                partition=int(part["partition"]),
                topic=topic,
                consumer_lag=lag.get(topic),
                watermark=_iso(mark) if mark is not None else None,
                watermark_ms=mark,
                behind_s=seconds,
                excluded=excluded,
                warn=hint is not None,
                hint=hint,
            )
        )
    return rows


def inputs_view(
    partitions: Iterable[Mapping[str, Any]],
    counters: CounterValues,
    *,
    behind_warn_s: float = BEHIND_WARN_S,
) -> InputsView:
    """The section from `describe()["partitions"]` (the stage runs this worker owns) and the
    counter values: partitions in `describe()`'s order, topics in the order they first appear
    there, then any other topic a counter knows (a partition owned earlier), by name."""
    rows = [row for part in partitions for row in _partition_rows(part, behind_warn_s)]
    order = list(dict.fromkeys(row.topic for row in rows))
    known = set(counters.events_in) | set(counters.duplicates) | {t for t, _ in counters.late}
    order += sorted(known - set(order))
    topics = []
    for topic in order:
        late = {reason: round(n) for (t, reason), n in sorted(counters.late.items()) if t == topic}
        late_total = sum(late.values())
        duplicates = round(counters.duplicates.get(topic, 0.0))
        hints = [LATE_HINT] if late_total else []
        if duplicates:
            hints.append(DUPLICATE_HINT)
        topics.append(
            InputTopic(
                topic=topic,
                records_consumed=round(counters.events_in.get(topic, 0.0)),
                late=late,
                late_total=late_total,
                duplicates_dropped=duplicates,
                warn=bool(hints),
                hint="; ".join(hints) or None,
            )
        )
    split = round(counters.split_node_minutes)
    return InputsView(
        partitions=rows,
        topics=topics,
        split_node_minutes=split,
        split_warn=split > 0,
        split_hint=SPLIT_HINT if split else None,
        behind_warn_s=behind_warn_s,
    )
