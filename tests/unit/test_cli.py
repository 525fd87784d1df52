"""The command line: every command documented with an example; errors are one clean line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli import app, parse_duration

runner = CliRunner()


def all_commands() -> list[tuple[str, Any]]:
    """(full name, click command) for every leaf command, walking groups."""
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(group: Any, prefix: str) -> None:
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                found.append((f"{prefix}{name}", cmd))

    walk(root, "")
    return found


def test_every_command_has_help_an_example_and_documented_options() -> None:
    commands = all_commands()
    assert {"simulate", "demo", "topics create", "fleet validate", "kafka up"} <= {
        n for n, _ in commands
    }
    for name, cmd in commands:
        assert cmd.help and "Example: microdc" in cmd.help, name
        for param in cmd.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts}"
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, (name, result.output)


@pytest.mark.parametrize(("text", "minutes"), [("90m", 90), ("6h", 360), ("14d", 20160)])
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("sites: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "fleet", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {bad}:1: $.sites: Expected `array`")


def test_simulate_to_files_writes_each_topic(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "simulate",
            "--duration",
            "3m",
            "--rps-scale",
            "0.01",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for topic in (
        "mdc.node-telemetry",
        "mdc.request-log",
        "mdc.facility-telemetry",
        "mdc.grid-intensity",
    ):
        assert (tmp_path / f"{topic}.jsonl").stat().st_size > 0
    assert "events/s" in proc.stdout
