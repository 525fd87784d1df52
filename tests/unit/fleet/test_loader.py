"""Fleet files: the demo fleet is valid, and every kind of mistake is reported with file, line,
path and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from pipeline.errors import FleetError
from pipeline.fleet import demo_fleet_path, load_fleet, parse_fleet
from pipeline.fleet.schema import fleet_json_schema

SCHEMA = Path(__file__).parents[3] / "schemas" / "fleet.schema.json"


def test_demo_fleet_matches_the_design() -> None:
    fleet = load_fleet()
    assert {s.country for s in fleet.sites} == {"CO", "MX", "BR"}
    assert all(len(fleet.nodes_by_site[s.site_id]) >= 10 for s in fleet.sites)
    assert len(fleet.teams) >= 3
    assert all(s.slo.availability_target < 1 for s in fleet.services)
    # Ember 2023 lifecycle intensities via Our World in Data (DESIGN.md §4).
    assert fleet.grid_fallback_gco2e_per_kwh == {
        "BR": 98.0,
        "CO": 260.0,
        "CL": 291.0,
        "MX": 507.0,
        "US": 369.0,
    }


def test_committed_fleet_schema_is_current_and_accepts_the_demo_fleet() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == fleet_json_schema(), (
        "schemas/fleet.schema.json is stale: run `microdc fleet schema --out "
        "schemas/fleet.schema.json`"
    )
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    doc = yaml.safe_load(demo_fleet_path().read_text(encoding="utf-8"))
    errors = list(Draft202012Validator(schema).iter_errors(doc))
    assert errors == []


def test_tariff_uses_local_time_across_a_boundary() -> None:
    bog = load_fleet().site_by_id["bog1"]  # America/Bogota, UTC-5; 18:00 local starts the peak
    assert bog.price_usd_per_kwh(datetime(2026, 3, 2, 22, 59, tzinfo=UTC)) == 0.19  # 17:59 local
    assert bog.price_usd_per_kwh(datetime(2026, 3, 2, 23, 0, tzinfo=UTC)) == 0.25  # 18:00 local
    assert bog.price_usd_per_kwh(datetime(2026, 3, 3, 5, 0, tzinfo=UTC)) == 0.14  # 00:00 local


def demo_text() -> str:
    return demo_fleet_path().read_text(encoding="utf-8")


def broken(old: str, new: str, count: int = 1) -> str:
    text = demo_text()
    assert old in text, old
    return text.replace(old, new, count)


@pytest.mark.parametrize(
    ("text", "path", "reason", "line_has"),
    [
        pytest.param(
            broken("design_pue: 1.42", "design_pue: high"),
            "$.sites[0].design_pue",
            "Expected `float`",
            "design_pue",
            id="wrong type",
        ),
        pytest.param(
            broken("design_pue: 1.42", "design_pue: 0.8"),
            "$.sites[0].design_pue",
            ">= 1.0",
            "design_pue",
            id="PUE below 1",
        ),
        pytest.param(
            broken("    city: Bogotá\n", ""),
            "$.sites[0]",
            "missing required field `city`",
            "site_id: bog1",
            id="missing field",
        ),
        pytest.param(
            broken("solar_peak_kw: 18.0", "solar_peak_kwh: 18.0"),
            "$.sites[0]",
            "unknown field `solar_peak_kwh`",
            None,
            id="typo in key",
        ),
        pytest.param(
            broken("timezone: America/Bogota", "timezone: America/Gotham"),
            "$.sites[0].timezone",
            "unknown IANA time zone",
            "America/Gotham",
            id="bad time zone",
        ),
        pytest.param(
            broken("node_id: bog1-r1-n02, site_id: bog1", "node_id: bog1-r1-n02, site_id: bogx"),
            "$.nodes[1].site_id",
            "unknown site 'bogx'",
            "bog1-r1-n02",
            id="node on unknown site",
        ),
        pytest.param(
            broken("node_id: bog1-r1-n02", "node_id: bog1-r1-n01"),
            "$.nodes[1].node_id",
            "duplicate node_id 'bog1-r1-n01'",
            "bog1-r1-n01, site_id",
            id="duplicate node",
        ),
        pytest.param(
            broken("idle_power_w: 135, max_power_w: 480", "idle_power_w: 500, max_power_w: 480"),
            "$.nodes[0].idle_power_w",
            "must be below max power",
            "bog1-r1-n01",
            id="idle above max",
        ),
        pytest.param(
            broken("    team: payments\n", "    team: treasury\n"),
            "$.services[0].team",
            "unknown team 'treasury'",
            "treasury",
            id="unknown team",
        ),
        pytest.param(
            broken(
                '{start: "06:00", usd_per_kwh: 0.19}',
                '{start: "05:00", usd_per_kwh: 0.19}\n      - {start: "04:00", usd_per_kwh: 0.1}',
            ),
            "$.sites[0].tariff[2].start",
            "increasing start order",
            "04:00",
            id="tariff out of order",
        ),
        pytest.param(
            broken('{start: "00:00", usd_per_kwh: 0.14}', '{start: "25:00", usd_per_kwh: 0.14}'),
            "$.sites[0].tariff[0].start",
            "Expected `str` matching regex",
            "25:00",
            id="tariff time invalid",
        ),
        pytest.param(
            broken("grid_zone: CO", "grid_zone: AR"),
            "$.sites[0].grid_zone",
            "no entry in grid_fallback",
            "grid_zone: AR",
            id="zone without fallback",
        ),
    ],
)
def test_errors_name_file_line_path_and_reason(
    text: str, path: str, reason: str, line_has: str | None
) -> None:
    with pytest.raises(FleetError) as info:
        parse_fleet(text, "fleet.yaml")
    err = info.value
    assert err.file == "fleet.yaml"
    assert err.path == path
    assert reason in err.reason
    assert str(err).startswith(f"fleet.yaml:{err.line}: {path}: ")
    assert err.line is not None
    if line_has is not None:
        assert line_has in text.splitlines()[err.line - 1]


def test_invalid_yaml_reports_the_line() -> None:
    with pytest.raises(FleetError) as info:
        parse_fleet("sites:\n  - site_id: [unclosed\n", "f.yaml")
    assert info.value.line is not None
    assert "not valid YAML" in info.value.reason


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(FleetError, match="expected a mapping"):
        parse_fleet("- a\n- b\n", "f.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FleetError, match="cannot read file") as info:
        load_fleet(missing)
    assert info.value.file == str(missing)


def load_broken(tmp_path: Path, content: str | bytes) -> FleetError:
    """`load_fleet` of a file holding `content`: the FleetError it must raise."""
    file = tmp_path / "fleet.yaml"
    if isinstance(content, str):
        file.write_text(content, encoding="utf-8")
    else:
        file.write_bytes(content)
    with pytest.raises(FleetError) as info:
        load_fleet(file)
    assert info.value.file == str(file)
    assert str(info.value).startswith(f"{file}:{info.value.line}: {info.value.path}: ")
    return info.value


def line_no(text: str, needle: str) -> int:
    """1-based line of the first line of `text` containing `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_byte_that_is_not_utf8_is_named_by_line_and_column(tmp_path: Path) -> None:
    # Saved as Latin-1 by an editor: "Bogotá" becomes b"Bogot\xe1".
    raw = demo_text().encode("utf-8").replace("city: Bogotá".encode(), b"city: Bogot\xe1")
    err = load_broken(tmp_path, raw)
    line = line_no(demo_text(), "city: Bogotá")
    assert err.line == line
    assert err.path == "$"
    assert "not UTF-8: byte 0xe1" in err.reason
    assert f"line {line}, column {len('    city: Bogot') + 1}" in err.reason
    assert "save the file as UTF-8" in err.reason


def test_a_control_character_is_named_by_line(tmp_path: Path) -> None:
    err = load_broken(tmp_path, broken("city: Bogotá", "city: Bog\x00otá"))
    assert err.line == line_no(demo_text(), "city: Bogotá")
    assert "not valid YAML" in err.reason


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "+.Inf", "1.0e+999"])
def test_non_finite_numbers_are_refused_with_path_and_line(tmp_path: Path, value: str) -> None:
    text = broken("capex_usd: 420000", f"capex_usd: {value}")
    err = load_broken(tmp_path, text)
    assert err.path == "$.sites[0].capex_usd"
    assert err.reason == f"must be a finite number, got {value}"
    assert err.line == line_no(text, f"capex_usd: {value}")


def test_non_finite_numbers_in_flow_mappings_too(tmp_path: Path) -> None:
    text = broken("idle_power_w: 135, max_power_w: 480", "idle_power_w: 135, max_power_w: .inf")
    err = load_broken(tmp_path, text)
    assert err.path == "$.nodes[0].max_power_w"
    assert err.line == line_no(text, ".inf")


@pytest.mark.parametrize(
    ("old", "new", "path", "expected"),
    [
        pytest.param("cores: 64", 'cores: "64"', "$.nodes[0].cores", "`int`", id="quoted int"),
        pytest.param(
            "design_pue: 1.42",
            'design_pue: "1.42"',
            "$.sites[0].design_pue",
            "`float`",
            id="quoted float",
        ),
        pytest.param(
            "has_water_meter: false",
            'has_water_meter: "false"',
            "$.sites[0].has_water_meter",
            "`bool`",
            id="quoted bool",
        ),
        pytest.param("cores: 64", "cores: 64.5", "$.nodes[0].cores", "`int`", id="float as int"),
    ],
)
def test_values_are_not_coerced_between_types(
    tmp_path: Path, old: str, new: str, path: str, expected: str
) -> None:
    text = broken(old, new)
    err = load_broken(tmp_path, text)
    assert err.path == path
    assert f"Expected {expected}, got" in err.reason
    assert err.line == line_no(text, new)


def test_ints_still_count_as_floats() -> None:
    fleet = parse_fleet(broken("design_pue: 1.42", "design_pue: 2"))
    assert fleet.sites[0].design_pue == 2.0
    assert isinstance(fleet.sites[0].design_pue, float)


@pytest.mark.parametrize(
    ("old", "new", "path", "key", "twice"),
    [
        pytest.param(
            "    capex_usd: 420000  # racks",
            "    capex_usd: 1\n    capex_usd: 420000  # racks",
            "$.sites[0].capex_usd",
            "capex_usd",
            "capex_usd: 420000",
            id="block mapping",
        ),
        pytest.param(
            "cores: 64, idle_power_w: 135",
            "cores: 64, idle_power_w: 135, cores: 8",
            "$.nodes[0].cores",
            "cores",
            "cores: 8",
            id="flow mapping",
        ),
        pytest.param(
            "grid_fallback_gco2e_per_kwh: {BR: 98.0,",
            "grid_fallback_gco2e_per_kwh: {BR: 98.0, 'BR': 1.0,",
            "$.grid_fallback_gco2e_per_kwh.BR",
            "BR",
            "'BR': 1.0",
            id="quoted and plain key",
        ),
        pytest.param(
            "\nsites:\n",
            "\nidle_policy: even\nsites:\n",
            "$.idle_policy",
            "idle_policy",
            "idle_policy: even",
            id="top level",
        ),
    ],
)
def test_duplicate_keys_are_refused_with_both_lines(
    tmp_path: Path, old: str, new: str, path: str, key: str, twice: str
) -> None:
    text = broken(old, new)
    err = load_broken(tmp_path, text)
    assert err.path == path
    first = line_no(text, f"{key}:")
    assert err.reason == f"duplicate key {key!r} (first at line {first})"
    assert err.line is not None and twice in text.splitlines()[err.line - 1]


def test_merge_keys_are_not_duplicates() -> None:
    text = broken(
        "    climate: {mean_temp_c: 14.0, daily_swing_c: 9.0}",
        "    climate:\n      <<: {mean_temp_c: 14.0, daily_swing_c: 9.0}\n      mean_temp_c: 15.0",
    )
    assert parse_fleet(text).sites[0].climate.mean_temp_c == 15.0
