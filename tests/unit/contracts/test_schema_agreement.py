"""schemas/*.schema.json and the msgspec Structs accept and reject exactly the same records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from pipeline.contracts import FacilitySample, GridIntensity, NodeSample, RequestLog
from pipeline.contracts.codec import decode
from pipeline.errors import ContractError

SCHEMAS = Path(__file__).parents[3] / "schemas"

NODE: dict[str, Any] = {
    "observed_at": "2026-03-02T14:00:30Z",
    "site_id": "bog1",
    "rack_id": "bog1-r1",
    "node_id": "bog1-r1-n01",
    "interval_s": 30,
    "power_w": 212.5,
    "cpu_util": 0.31,
    "gpu_util": None,
    "mem_util": 0.5,
    "inlet_temp_c": 22.1,
    "outlet_temp_c": 31.0,
    "net_rx_bytes": 1024,
    "net_tx_bytes": 4096,
}
REQUEST: dict[str, Any] = {
    "finished_at": "2026-03-02T14:00:31.123456Z",
    "request_id": "r-1",
    "site_id": "bog1",
    "node_id": "bog1-r1-n01",
    "service": "checkout-api",
    "team": "payments",
    "route": "/cart",
    "status": 200,
    "latency_ms": 41.5,
    "bytes_in": 900,
    "bytes_out": 12000,
    "client_region": "CO-DC",
    "client_ip": "203.0.113.7",
}
FACILITY: dict[str, Any] = {
    "observed_at": "2026-03-02T14:01:00Z",
    "site_id": "bog1",
    "interval_s": 60,
    "facility_power_w": 9000.0,
    "it_power_w": 6300.0,
    "onsite_renewable_w": 1200.0,
    "water_l": 1.5,
    "outdoor_temp_c": 19.0,
}
GRID: dict[str, Any] = {
    "valid_from": "2026-03-02T14:00:00Z",
    "valid_to": "2026-03-02T15:00:00Z",
    "zone": "CO",
    "carbon_intensity_gco2e_per_kwh": 260.0,
    "emission_factor_type": "lifecycle",
    "signal": "average",
    "source": "ember-2023",
    "is_estimated": False,
}

REMOVE = object()


def variant(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = dict(base)
    for key, value in changes.items():
        if value is REMOVE:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


# (record type, schema file, example, should it be valid, label)
CORPUS: list[tuple[type[msgspec.Struct], str, dict[str, Any], bool, str]] = [
    (NodeSample, "node_sample", NODE, True, "node: complete"),
    (
        NodeSample,
        "node_sample",
        variant(NODE, gpu_util=REMOVE, mem_util=REMOVE),
        True,
        "node: optional fields absent",
    ),
    (NodeSample, "node_sample", variant(NODE, gpu_util=0.8), True, "node: gpu present"),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="2026-03-02T14:00:30+00:00"),
        True,
        "node: +00:00 offset",
    ),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="2026-03-02T14:00:30.5Z"),
        True,
        "node: fractional seconds",
    ),
    (NodeSample, "node_sample", variant(NODE, firmware="1.2"), True, "node: unknown extra field"),
    (NodeSample, "node_sample", variant(NODE, power_w=0), True, "node: zero power"),
    (NodeSample, "node_sample", variant(NODE, cpu_util=1.0), True, "node: util at upper bound"),
    (NodeSample, "node_sample", variant(NODE, power_w=-1.0), False, "node: negative power"),
    (NodeSample, "node_sample", variant(NODE, power_w="212"), False, "node: power as string"),
    (NodeSample, "node_sample", variant(NODE, power_w=True), False, "node: power as bool"),
    (NodeSample, "node_sample", variant(NODE, cpu_util=1.2), False, "node: util above 1"),
    (NodeSample, "node_sample", variant(NODE, cpu_util=-0.1), False, "node: util below 0"),
    (NodeSample, "node_sample", variant(NODE, gpu_util=2), False, "node: gpu util above 1"),
    (NodeSample, "node_sample", variant(NODE, mem_util="high"), False, "node: mem util string"),
    (NodeSample, "node_sample", variant(NODE, node_id=REMOVE), False, "node: missing node_id"),
    (NodeSample, "node_sample", variant(NODE, observed_at=REMOVE), False, "node: missing time"),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="2026-03-02T14:00:30"),
        False,
        "node: naive timestamp",
    ),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="2026-03-02T09:00:30-05:00"),
        False,
        "node: non-UTC offset",
    ),
    (NodeSample, "node_sample", variant(NODE, observed_at="2026-03-02"), False, "node: date only"),
    (NodeSample, "node_sample", variant(NODE, observed_at="yesterday"), False, "node: not a time"),
    (NodeSample, "node_sample", variant(NODE, interval_s=0), False, "node: zero interval"),
    (NodeSample, "node_sample", variant(NODE, net_rx_bytes=1.5), False, "node: fractional bytes"),
    (NodeSample, "node_sample", variant(NODE, net_tx_bytes=-1), False, "node: negative bytes"),
    (NodeSample, "node_sample", variant(NODE, node_id=""), False, "node: empty id"),
    (NodeSample, "node_sample", variant(NODE, site_id="../../etc"), False, "node: path in id"),
    (NodeSample, "node_sample", variant(NODE, inlet_temp_c=500), False, "node: impossible temp"),
    (RequestLog, "request_log", REQUEST, True, "request: complete"),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, route=None, client_region=None, client_ip=None),
        True,
        "request: nullable fields null",
    ),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, route=REMOVE, client_ip=REMOVE),
        True,
        "request: optional fields absent",
    ),
    (RequestLog, "request_log", variant(REQUEST, status=599), True, "request: status 599"),
    (RequestLog, "request_log", variant(REQUEST, status=100), True, "request: status 100"),
    (RequestLog, "request_log", variant(REQUEST, client_ip="2001:db8::1"), True, "request: IPv6"),
    (RequestLog, "request_log", variant(REQUEST, status=42), False, "request: status 42"),
    (RequestLog, "request_log", variant(REQUEST, status=600), False, "request: status 600"),
    (RequestLog, "request_log", variant(REQUEST, status="200"), False, "request: status string"),
    (RequestLog, "request_log", variant(REQUEST, latency_ms=-3), False, "request: neg latency"),
    (RequestLog, "request_log", variant(REQUEST, team=REMOVE), False, "request: missing team"),
    (RequestLog, "request_log", variant(REQUEST, service=None), False, "request: null service"),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, finished_at="2026-03-02T14:00:31.1"),
        False,
        "request: naive timestamp",
    ),
    (RequestLog, "request_log", variant(REQUEST, bytes_out=-5), False, "request: neg bytes"),
    (FacilitySample, "facility_sample", FACILITY, True, "facility: complete"),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, water_l=REMOVE, outdoor_temp_c=None),
        True,
        "facility: optional absent/null",
    ),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, it_power_w=-1),
        False,
        "facility: negative IT power",
    ),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, onsite_renewable_w=REMOVE),
        False,
        "facility: missing renewable",
    ),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, water_l=-0.1),
        False,
        "facility: negative water",
    ),
    (GridIntensity, "grid_intensity", GRID, True, "grid: complete"),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, signal="marginal", is_estimated=True),
        True,
        "grid: marginal estimate",
    ),
    (GridIntensity, "grid_intensity", variant(GRID, signal="median"), False, "grid: bad signal"),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, emission_factor_type="scope3"),
        False,
        "grid: bad factor type",
    ),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, is_estimated="no"),
        False,
        "grid: bool as string",
    ),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, carbon_intensity_gco2e_per_kwh=-2),
        False,
        "grid: negative intensity",
    ),
    (GridIntensity, "grid_intensity", variant(GRID, valid_to=REMOVE), False, "grid: no valid_to"),
    # Bounds (issue 11): each of these crashed or poisoned a worker before the contracts had them.
    (NodeSample, "node_sample", variant(NODE, power_w=1e308), False, "node: power 1e308"),
    (NodeSample, "node_sample", variant(NODE, power_w=100_000.0), True, "node: power at bound"),
    (NodeSample, "node_sample", variant(NODE, power_w=100_000.5), False, "node: power > bound"),
    (NodeSample, "node_sample", variant(NODE, net_rx_bytes=10**15), True, "node: bytes at bound"),
    (NodeSample, "node_sample", variant(NODE, net_rx_bytes=10**30), False, "node: bytes 10**30"),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="9999-12-31T23:59:59Z"),
        False,
        "node: year 9999",
    ),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="1969-12-31T23:59:59Z"),
        False,
        "node: before 1970",
    ),
    (
        NodeSample,
        "node_sample",
        variant(NODE, observed_at="2999-12-31T23:59:59Z"),
        True,
        "node: year 2999 (plausibility is the core's job)",
    ),
    (RequestLog, "request_log", variant(REQUEST, bytes_in=10**30), False, "request: 10**30 bytes"),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, bytes_out=10**12),
        True,
        "request: bytes at bound",
    ),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, latency_ms=1e308),
        False,
        "request: latency 1e308",
    ),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, latency_ms=86_400_000),
        True,
        "request: latency of a day",
    ),
    (
        RequestLog,
        "request_log",
        variant(REQUEST, finished_at="9999-12-31T23:59:59Z"),
        False,
        "request: year 9999",
    ),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, facility_power_w=1e308),
        False,
        "facility: power 1e308",
    ),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, water_l=1e12),
        False,
        "facility: water 1e12 L",
    ),
    (
        FacilitySample,
        "facility_sample",
        variant(FACILITY, observed_at="9999-12-31T00:00:00Z"),
        False,
        "facility: year 9999",
    ),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, valid_from="9999-01-01T00:00:00Z", valid_to="9999-01-01T01:00:00Z"),
        False,
        "grid: year 9999",
    ),
]

#: Cases the Struct rejects by a rule the schema lists under `x-invariants` (JSON Schema cannot
#: compare two fields): (record type, doc, the invariant it breaks).
CROSS_FIELD: list[tuple[type[msgspec.Struct], str, dict[str, Any], str]] = [
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, valid_to="2026-03-02T13:00:00Z"),
        "valid_to > valid_from",
    ),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, valid_to=GRID["valid_from"]),
        "valid_to > valid_from",
    ),
    (
        GridIntensity,
        "grid_intensity",
        variant(GRID, valid_to="2026-05-02T14:00:00Z"),
        "valid_to - valid_from <= 31 days",
    ),
]


def schema_validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def struct_accepts(record_type: type[msgspec.Struct], doc: dict[str, Any]) -> bool:
    try:
        decode(record_type, msgspec.json.encode(doc))
    except ContractError:
        return False
    return True


@pytest.mark.parametrize(
    ("record_type", "schema_name", "doc", "expected"),
    [pytest.param(*case[:4], id=case[4]) for case in CORPUS],
)
def test_schema_and_struct_agree(
    record_type: type[msgspec.Struct], schema_name: str, doc: dict[str, Any], expected: bool
) -> None:
    schema_ok = schema_validator(schema_name).is_valid(doc)
    struct_ok = struct_accepts(record_type, doc)
    assert schema_ok == expected, f"schema said {schema_ok}"
    assert struct_ok == expected, f"struct said {struct_ok}"


@pytest.mark.parametrize(
    ("record_type", "schema_name", "doc", "invariant"),
    [pytest.param(*case, id=case[3]) for case in CROSS_FIELD],
)
def test_cross_field_rules_are_declared_and_enforced(
    record_type: type[msgspec.Struct], schema_name: str, doc: dict[str, Any], invariant: str
) -> None:
    schema = json.loads((SCHEMAS / f"{schema_name}.schema.json").read_text())
    assert invariant in schema["x-invariants"]
    assert schema_validator(schema_name).is_valid(doc), "only the cross-field rule is broken"
    assert not struct_accepts(record_type, doc)


#: Each input record type and its schema file.
RECORD_SCHEMAS = [
    (NodeSample, "node_sample"),
    (RequestLog, "request_log"),
    (FacilitySample, "facility_sample"),
    (GridIntensity, "grid_intensity"),
]
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
_LENGTHS = {"min_length": "minLength", "max_length": "maxLength"}


def _non_null(field_type: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """`T` of a field typed `T | None`; any other type as it is."""
    if isinstance(field_type, msgspec.inspect.UnionType):
        (field_type,) = [t for t in field_type.types if not isinstance(t, msgspec.inspect.NoneType)]
    return field_type


def _constraints(field_type: msgspec.inspect.Type) -> dict[str, Any]:
    """The schema keywords a Struct field's msgspec constraints mean (null branch ignored)."""
    field_type = _non_null(field_type)
    out: dict[str, Any] = {}
    for attr, keyword in {**_BOUNDS, **_LENGTHS}.items():
        value = getattr(field_type, attr, None)
        if value is not None:
            out[keyword] = value
    return out


def _schema_constraints(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        prop = {**schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]], **prop}
    return {k: prop[k] for k in (*_BOUNDS.values(), *_LENGTHS.values()) if k in prop}


@pytest.mark.parametrize(("record_type", "schema_name"), RECORD_SCHEMAS)
def test_every_bound_is_the_same_in_schema_and_struct(
    record_type: type[msgspec.Struct], schema_name: str
) -> None:
    """Field by field, the numeric bounds and lengths of the Struct equal the schema's."""
    schema = json.loads((SCHEMAS / f"{schema_name}.schema.json").read_text())
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        struct_side = _constraints(field.type)
        schema_side = _schema_constraints(schema, schema["properties"][field.name])
        assert struct_side == schema_side, field.name
        if isinstance(_non_null(field.type), msgspec.inspect.FloatType | msgspec.inspect.IntType):
            assert "maximum" in struct_side or "exclusiveMaximum" in struct_side, (
                f"{record_type.__name__}.{field.name} has no upper bound"
            )


def test_corpus_covers_every_topic_with_both_outcomes() -> None:
    for record_type, _ in RECORD_SCHEMAS:
        outcomes = {case[3] for case in CORPUS if case[0] is record_type}
        assert outcomes == {True, False}, record_type.__name__


@pytest.mark.parametrize(("record_type", "schema_name"), RECORD_SCHEMAS)
def test_schema_fields_match_struct_fields(
    record_type: type[msgspec.Struct], schema_name: str
) -> None:
    schema = json.loads((SCHEMAS / f"{schema_name}.schema.json").read_text())
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    assert set(schema["properties"]) == {f.name for f in info.fields}
    assert set(schema["required"]) == {f.name for f in info.fields if f.required}


def test_rejection_reason_names_the_field() -> None:
    with pytest.raises(ContractError, match=r"\$\.status") as info:
        decode(
            RequestLog, msgspec.json.encode(variant(REQUEST, status=42)), topic="mdc.request-log"
        )
    assert "mdc.request-log" in str(info.value)
    with pytest.raises(ContractError, match="malformed JSON"):
        decode(RequestLog, b'{"finished_at": ', topic="mdc.request-log")
