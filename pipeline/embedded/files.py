"""File I/O around the embedded runner: read simulator JSON-lines, write one file per output
topic, and summarise per site — `microdc process` and `microdc demo`, no Kafka needed."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path

import msgspec

from pipeline.contracts.records import FacilitySample, GridIntensity, NodeSample, RequestLog
from pipeline.contracts.topics import INPUT_TOPICS, TopicSpec
from pipeline.embedded.driver import Message, RunResult
from pipeline.errors import PipelineError

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
