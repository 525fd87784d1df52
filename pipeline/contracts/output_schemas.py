"""JSON Schemas (2020-12) of the stream's output topics, generated from their msgspec Structs.

The input contracts in `schemas/` are written by hand (they are what producers code against);
the output contracts are what the stream core emits, so they are generated from the Structs and
committed as `schemas/outputs/<dataset>.schema.json`. A test fails when a committed file is
stale (`microdc schemas write` regenerates them). The lake derives its Arrow schemas from both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from pipeline.contracts.topics import OUTPUT_TOPICS, TopicSpec

#: Output dataset (the topic name after `mdc.`, with underscores) -> its topic and the Struct its
#: records decode into, both from the topic declarations.
OUTPUT_RECORDS: dict[str, tuple[TopicSpec, type[msgspec.Struct]]] = {
    spec.name.removeprefix("mdc.").replace("-", "_"): (spec, spec.record_type)
    for spec in OUTPUT_TOPICS
    if spec.record_type is not None
}


def output_json_schema(dataset: str) -> str:
    """The schema of one output dataset as stable, indented JSON text."""
    spec, record_type = OUTPUT_RECORDS[dataset]
    generated: dict[str, Any] = msgspec.json.schema(record_type)
    name = record_type.__name__
    body = generated["$defs"].pop(name)
    _mark_date_times(record_type, body["properties"])
    doc: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://microdc-pipeline.dev/schemas/outputs/{dataset}.schema.json",
        "title": name,
        "description": (
            f"Topic {spec.name}"
            + (f", key {spec.key_field}" if spec.key_field else "")
            + f": {spec.description} Generated from the {name} Struct; do not edit."
        ),
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }
    if generated["$defs"]:
        doc["$defs"] = generated["$defs"]
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _mark_date_times(record_type: type[msgspec.Struct], properties: dict[str, Any]) -> None:
    """Add `format: date-time` to datetime fields (msgspec emits a bare string for them)."""
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kinds = (
            field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        )
        if not any(isinstance(k, msgspec.inspect.DateTimeType) for k in kinds):
            continue
        prop = properties[field.encode_name]
        for option in prop.get("anyOf", [prop]):
            if option.get("type") == "string":
                option["format"] = "date-time"


def write_output_schemas(directory: Path) -> list[Path]:
    """(Re)write every output schema into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in OUTPUT_RECORDS:
        path = directory / f"{dataset}.schema.json"
        path.write_text(output_json_schema(dataset), encoding="utf-8")
        written.append(path)
    return written
