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
