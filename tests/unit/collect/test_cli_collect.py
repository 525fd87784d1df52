"""`microdc collect` errors before it polls: one line naming what is wrong, exit 2."""

from __future__ import annotations

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
