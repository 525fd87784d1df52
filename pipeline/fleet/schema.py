"""JSON Schema (2020-12) of fleet files, generated from the fleet types so the two cannot drift."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from pipeline.fleet.model import Fleet


def fleet_json_schema() -> str:
    """The schema as stable, indented JSON text (what `schemas/fleet.schema.json` holds)."""
    schema: dict[str, Any] = msgspec.json.schema(Fleet)
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://microdc-pipeline.dev/schemas/fleet.schema.json",
        "title": "Fleet",
        "description": (
            "Reference data of a micro data center fleet (YAML or JSON). Generated from "
            "pipeline/fleet/model.py by `microdc fleet schema`; cross-references (node sites, "
            "service teams, tariff order, time zones) are checked by the loader."
        ),
        **schema,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
