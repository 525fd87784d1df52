"""`microdc collect` errors before it polls: one line naming what is wrong, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.fleet.loader import demo_fleet_path
from tests.support.cli_run import one_error_line, run


def test_without_a_collector_file_it_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(["collect", "--once", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "give --collectors, or name one in the fleet file" in one_error_line(err)


def test_the_fleet_files_collector_file_is_found_beside_it_and_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(demo_fleet_path().read_text() + "\ncollectors: sources/collectors.yaml\n")
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "collectors.yaml").write_text(
        "nodes:\n  - node_id: no-such-node\n    sources:\n"
        "      - {kind: prometheus, url: 'http://127.0.0.1:9100/metrics'}\n"
    )
    code, _, err = run(["collect", "--once", "--fleet", str(fleet), "--out", str(tmp_path)], capsys)
    assert code == 2
    line = one_error_line(err)
    assert (
        "sources/collectors.yaml:2: $.nodes[0].node_id: 'no-such-node' is not in the fleet" in line
    )


FIXTURES = Path(__file__).parents[2] / "fixtures" / "grid"


def test_grid_backfill_loads_a_portal_csv_for_a_fleet_zone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv = FIXTURES / "electricitymaps_portal.csv"
    out = tmp_path / "out"
    code, stdout, _ = run(
        ["grid-backfill", "--csv", str(csv), "--zone", "CO", "--out", str(out)], capsys
    )
    assert code == 0
    values = [
        json.loads(line) for line in (out / "mdc.grid-intensity.jsonl").read_text().splitlines()
    ]
    assert values and {v["zone"] for v in values} == {"CO"}
    assert values[0]["valid_from"] == "2025-01-01T00:00:00Z"
    assert values[0]["carbon_intensity_gco2e_per_kwh"] == 171.4
    assert f"{len(values):,} grid values" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zone", "CO"], "give --csv FILE --zone Z, or --from DAY --to DAY"),
        (["--csv", "x.csv", "--from", "2026-01-01"], "not both"),
        (["--csv", "CSV"], "--csv needs --zone"),
        (["--csv", "CSV", "--zone", "XX"], "--zone 'XX' is no site's grid_zone"),
        (["--csv", "nope.csv", "--zone", "CO"], "nope.csv: cannot read"),
        (["--from", "2026-13-01", "--to", "2026-02-01"], "--from '2026-13-01' must be a day"),
    ],
)
def test_grid_backfill_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    csv = str(FIXTURES / "electricitymaps_portal.csv")
    argv = [a.replace("CSV", csv).replace("nope.csv", str(tmp_path / "nope.csv")) for a in args]
    code, _, err = run(["grid-backfill", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code != 0
    assert message in one_error_line(err)
