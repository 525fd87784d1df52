"""Arrow schemas derived from the JSON Schema contracts in `schemas/` (never inferred from data).

Mapping (JSON Schema 2020-12 -> Arrow):

| JSON Schema                                   | Arrow                          |
|-----------------------------------------------|--------------------------------|
| `string` with `format: date-time`             | `timestamp[us, tz=UTC]`        |
| `string` with `contentEncoding: base64`       | `binary`                       |
| `string`, `enum` of strings                   | `string`                       |
| `integer`                                     | `int64`                        |
| `number`                                      | `float64`                      |
| `boolean`                                     | `bool`                         |
| `object` with `additionalProperties: <T>`     | `map<string, T>`               |
| `[<T>, "null"]`, `anyOf [<T>, null]`          | `T`, nullable                  |

A field is non-nullable only when it is `required` and admits no null. Fields appear in the
schema's `properties` order, so a field added to a contract becomes a new (nullable) column at
the end, and files written before it stay readable next to new ones (readers unify by name).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.resources import schemas_dir


class SchemaError(PipelineError):
    """A contract cannot be mapped to Arrow (names the file and the JSON path)."""


@cache
def load_contract(relative: str) -> dict[str, Any]:
    """A contract document, e.g. `request_log.schema.json` or `outputs/alerts.schema.json`."""
    path = schemas_dir() / relative
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read the contract: {exc}") from exc
    return doc


def arrow_schema(doc: dict[str, Any], *, source: str = "<schema>") -> pa.Schema:
    """The Arrow schema of a contract whose top level is an object with `properties`."""
    required = set(doc.get("required", ()))
    fields = []
    for name, prop in doc.get("properties", {}).items():
        arrow_type, nullable = _type(doc, prop, f"{source}: $.properties.{name}")
        fields.append(pa.field(name, arrow_type, nullable=nullable or name not in required))
    if not fields:
        raise SchemaError(f"{source}: no properties to map")
    return pa.schema(fields)


def _resolve(doc: dict[str, Any], prop: dict[str, Any], where: str) -> dict[str, Any]:
    ref = prop.get("$ref")
    if ref is None:
        return prop
    if not ref.startswith("#/$defs/"):
        raise SchemaError(f"{where}: only local $defs references are supported, got {ref!r}")
    target = doc.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
    if target is None:
        raise SchemaError(f"{where}: unresolved reference {ref!r}")
    # Keywords next to the $ref (e.g. a description) do not change the type.
    return _resolve(doc, target, where)


def _type(doc: dict[str, Any], prop: dict[str, Any], where: str) -> tuple[pa.DataType, bool]:
    """(Arrow type, admits null) of one property."""
    prop = _resolve(doc, prop, where)
    if "anyOf" in prop:
        options = [_resolve(doc, option, where) for option in prop["anyOf"]]
        nullable = any(option.get("type") == "null" for option in options)
        rest = [option for option in options if option.get("type") != "null"]
        if len(rest) != 1:
            raise SchemaError(f"{where}: anyOf must be one type, optionally with null")
        arrow_type, inner_null = _type(doc, rest[0], where)
        return arrow_type, nullable or inner_null
    if "enum" in prop:
        values = [v for v in prop["enum"] if v is not None]
        if not all(isinstance(v, str) for v in values):
            raise SchemaError(f"{where}: only string enums are supported")
        return pa.string(), None in prop["enum"]
    kind = prop.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise SchemaError(f"{where}: a field must have one type (plus null), got {kind}")
        kind = kinds[0]
    if kind == "string":
        if prop.get("format") == "date-time":
            return pa.timestamp("us", tz="UTC"), nullable
        if prop.get("contentEncoding") == "base64":
            return pa.binary(), nullable
        return pa.string(), nullable
    if kind == "integer":
        return pa.int64(), nullable
    if kind == "number":
        return pa.float64(), nullable
    if kind == "boolean":
        return pa.bool_(), nullable
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        value_type, _ = _type(doc, prop["additionalProperties"], f"{where}.additionalProperties")
        return pa.map_(pa.string(), value_type), nullable
    raise SchemaError(f"{where}: cannot map type {kind!r} to an Arrow column")
