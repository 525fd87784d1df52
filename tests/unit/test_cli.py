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


def test_process_runs_the_stream_core_over_simulated_files(tmp_path: Path) -> None:
    sim, stream = tmp_path / "sim", tmp_path / "stream"
    for args in (
        [
            "simulate",
            "--duration",
            "15m",
            "--rps-scale",
            "0.02",
            "--out",
            str(sim),
            "--malformed-rate",
            "0.01",
        ],
        ["process", "--in", str(sim), "--out", str(stream)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
    assert "bog1" in proc.stdout and "PUE" in proc.stdout
    lines = (stream / "mdc.energy-minutes.jsonl").read_text().splitlines()
    assert len(lines) > 72 * 10  # every node, every closed minute
    assert (stream / "mdc.dead-letters.jsonl").stat().st_size > 0


def test_process_names_a_missing_input_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "process", "--in", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "mdc.node-telemetry.jsonl is missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_runs_end_to_end_and_says_where_output_went(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo", "--duration", "20m", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for site in ("bog1", "mex1", "sao1"):
        assert site in proc.stdout
    assert str(tmp_path / "stream") in proc.stdout.replace("\n", "")
    assert (tmp_path / "stream" / "mdc.site-minutes.jsonl").stat().st_size > 0
    assert (tmp_path / "sim" / "mdc.request-log.jsonl").stat().st_size > 0
