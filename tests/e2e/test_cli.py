"""The command line: every command documented with an example; errors are one clean line."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli import WORKER_STORES, app, parse_duration
from pipeline.errors import PipelineError
from pipeline.localkafka import free_ports
from tests.support.cli_run import one_error_line, run

runner = CliRunner()


def all_commands() -> list[tuple[str, Any]]:
    """(full name, click command) for every command and group, walking the tree; root is ""."""
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = [("", root)]

    def walk(group: Any, prefix: str) -> None:
        for name, cmd in group.commands.items():
            found.append((f"{prefix}{name}", cmd))
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")

    walk(root, "")
    return found


def test_the_walk_finds_every_command() -> None:
    names = {name for name, cmd in all_commands() if not hasattr(cmd, "commands")}
    assert {
        "simulate",
        "process",
        "demo",
        "worker",
        "land",
        "topics create",
        "fleet validate",
        "fleet schema",
        "kafka up",
        "kafka down",
        "kafka status",
        "models build",
        "lake compact",
        "export chargeback",
        "export roi",
        "quality check",
        "schemas write",
        "config show",
    } <= names


@pytest.mark.parametrize(
    ("name", "cmd"), all_commands(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_command_has_help_an_example_and_documented_parameters(name: str, cmd: Any) -> None:
    assert cmd.help and cmd.help.strip(), f"{name or 'microdc'}: no help text"
    if not hasattr(cmd, "commands") or name == "":
        examples = [ln.strip() for ln in cmd.help.splitlines() if ln.strip().startswith("Example:")]
        assert examples and all(ln.startswith("Example: microdc ") for ln in examples), (
            f"{name or 'microdc'}: help needs a line 'Example: microdc ...'"
        )
    for param in cmd.params:
        assert (getattr(param, "help", None) or "").strip(), f"{name} {param.opts}: no help"
    result = runner.invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0, (name, result.output)


@pytest.mark.parametrize(("text", "minutes"), [("90m", 90), ("6h", 360), ("14d", 20160)])
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean working directory, no MICRODC_* variables, logging restored afterwards."""
    for name in list(os.environ):
        if name.startswith("MICRODC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root, ours = logging.getLogger(), logging.getLogger("pipeline")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    yield tmp_path
    root.handlers[:], root.level = handlers, level
    ours.setLevel(our_level)


REFUSED = "127.0.0.1:{port}"  # a free port: nobody listens, the connection is refused at once
ERROR_CASES = [
    (
        "missing input",
        ["process", "--in", "{tmp}/nothing"],
        1,
        "mdc.node-telemetry.jsonl is missing",
    ),
    ("missing fleet", ["fleet", "validate", "{tmp}/f.yaml"], 2, "f.yaml: $: cannot read file"),
    (
        "bad fleet",
        ["fleet", "validate", "{tmp}/bad.yaml"],
        2,
        "bad.yaml:1: $.sites: Expected `array`",
    ),
    (
        "bad duration",
        ["simulate", "--duration", "5x", "--out", "{tmp}/s"],
        2,
        "duration '5x' is not",
    ),
    ("bad start", ["simulate", "--start", "2026-03-02T00:00"], 2, "has no time zone; add Z"),
    ("bad sink", ["simulate", "--sink", "s3"], 2, "--sink 's3' must be files or kafka"),
    (
        "missing warehouse",
        ["export", "roi", "--db", "{tmp}/w.duckdb", "--out", "{tmp}/roi.csv"],
        2,
        "w.duckdb: no warehouse",
    ),
    (
        "bad month",
        [
            "export",
            "chargeback",
            "--month",
            "2026-13",
            "--db",
            "{tmp}/w.duckdb",
            "--out",
            "{tmp}/c",
        ],
        2,
        "--month '2026-13': expected YYYY-MM",
    ),
    ("bad format", ["export", "roi", "--format", "pdf", "--out", "{tmp}/r"], 2, "--format 'pdf'"),
    ("missing lake", ["models", "build", "--lake", "{tmp}/lake"], 2, "lake: land one with"),
    ("nothing to compact", ["lake", "compact", "--lake", "{tmp}/lake"], 2, "nothing to compact"),
    ("quality without db", ["quality", "check", "--db", "{tmp}/w.duckdb"], 2, "no warehouse"),
    ("no local broker", ["kafka", "status", "--state-dir", "{tmp}/k"], 1, "no local broker is"),
    ("missing config", ["--config", "{tmp}/c.toml", "config", "show"], 2, "c.toml (from --config)"),
    (
        "unreachable bootstrap",
        ["topics", "create", "--bootstrap", REFUSED, "--timeout-s", "5"],
        3,
        "cannot connect to Kafka at 127.0.0.1:",
    ),
    (
        "simulate to nowhere",
        ["simulate", "--sink", "kafka", "--bootstrap", REFUSED, "--duration", "1m"],
        3,
        "Connect call failed",
    ),
    (
        "land from nowhere",
        ["land", "--bootstrap", REFUSED, "--lake", "{tmp}/lake"],
        3,
        "is a broker running there?",
    ),
    ("bad store", ["worker", "--store", "redis://"], 2, "--store 'redis://': use one of"),
    (
        "worker on nowhere",
        ["worker", "--bootstrap", REFUSED, "--store", "memory://", "--web-port", "{port2}"],
        3,
        "is a broker running there?",
    ),
]


@pytest.mark.parametrize(
    ("args", "code", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_are_one_line_without_traceback(
    args: list[str], code: int, expected: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "bad.yaml").write_text("sites: 3\n")
    port, port2 = free_ports(2)
    argv = [a.format(tmp=isolated, port=port, port2=port2) for a in args]
    exit_code, out, err = run(argv, capsys)
    assert exit_code == code, err
    line = one_error_line(err)
    assert expected in line
    assert "Traceback" not in err + out


def test_incomplete_sasl_settings_are_one_line(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MICRODC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    code, _, err = run(["topics", "create"], capsys)
    assert code == 2
    assert "needs kafka_sasl_username and kafka_sasl_password" in one_error_line(err)


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_json_logs_of_a_long_running_command(
    how: str, isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    land = ["land", "--bootstrap", f"127.0.0.1:{free_ports(1)[0]}", "--lake", str(isolated / "l")]
    if how == "flag":
        args = ["--log-format", "json", *land]
    else:
        monkeypatch.setenv("MICRODC_LOG_FORMAT", "JSON")
        args = land
    code, out, err = run(args, capsys)
    assert code == 3
    *logs, error = [line for line in err.splitlines() if line.strip()]
    assert error.startswith("error: cannot connect to Kafka at 127.0.0.1:")
    entries = [json.loads(line) for line in logs]
    assert [(e["level"], e["logger"]) for e in entries] == [("INFO", "pipeline.cli")]
    assert entries[0]["msg"] == f"landing into {isolated / 'l'} (client_ip: drop)"
    assert out == ""


def test_usage_errors_stay_typers(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["simulate", "--no-such-flag"], capsys)
    assert code == 2
    assert "No such option" in err and "Traceback" not in err
    code, _, err = run(["--log-format", "xml", "land"], capsys)
    assert code == 2
    assert "'xml' is not text or json" in err


def test_unexpected_errors_are_one_line_naming_the_exception(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline.fleet

    def broken(path: object = None) -> None:
        raise KeyError("site_id")

    monkeypatch.setattr(pipeline.fleet, "load_fleet", broken)
    code, _, err = run(["fleet", "validate"], capsys)
    assert code == 1
    assert one_error_line(err) == (
        "error: unexpected KeyError: 'site_id' (a bug? rerun with --debug or MICRODC_DEBUG=1 "
        "for the traceback)"
    )
    code, _, err = run(["--debug", "fleet", "validate"], capsys)
    assert code == 1
    assert err.startswith("Traceback") and "in broken" in err
    assert err.rstrip().splitlines()[-1].startswith("error: unexpected KeyError")
    monkeypatch.setenv("MICRODC_DEBUG", "1")
    code, _, err = run(["fleet", "validate"], capsys)
    assert err.startswith("Traceback")


def test_multi_line_messages_keep_their_first_and_last_line_and_no_markup(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline.fleet

    def broken(path: object = None) -> None:
        raise PipelineError("broker exited [log: x]:\n  a log line\n\n[bold]the cause[/bold]")

    monkeypatch.setattr(pipeline.fleet, "load_fleet", broken)
    code, _, err = run(["fleet", "validate"], capsys)
    assert code == 1
    assert one_error_line(err) == "error: broker exited [log: x]: … [bold]the cause[/bold]"


@pytest.mark.parametrize(
    "args",
    [
        ["fleet", "validate", "{tmp}/bad.yaml"],
        ["topics", "create", "--bootstrap", REFUSED],
        ["simulate", "--sink", "kafka", "--bootstrap", REFUSED, "--duration", "1m"],
    ],
    ids=["bad fleet", "topics create", "simulate"],
)
def test_a_real_process_prints_one_line_too(args: list[str], tmp_path: Path) -> None:
    """Nothing else reaches stderr in a fresh process either (no library log lines)."""
    (tmp_path / "bad.yaml").write_text("sites: 3\n")
    argv = [a.format(tmp=tmp_path, port=free_ports(1)[0]) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRODC_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode in (2, 3)
    assert "Traceback" not in proc.stderr + proc.stdout
    one_error_line(proc.stderr)


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
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo", "--days", "0.02", "--no-quality", "--out", out],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    for text in ("bog1", "mex1", "sao1", "PUE", "chargeback", "ROI", "HTML report"):
        assert text in proc.stdout, text
    flat = proc.stdout.replace("\n", "")
    for path in (out / "report.html", out / "warehouse.duckdb", out / "lake"):
        assert path.exists(), path
        assert str(path.resolve()) in flat, path
    assert not (out / "quality-docs").exists()


def test_a_missing_input_folder_names_it_in_the_fix(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["process", "--in", str(isolated / "nothing")], capsys)
    assert code == 1
    line = one_error_line(err)
    assert f"run `microdc simulate --out {isolated / 'nothing'}` to make some" in line
    assert "{folder}" not in line


def test_the_cli_knows_the_workers_stores() -> None:
    from pipeline.processors.app import STORES

    assert WORKER_STORES == STORES


# Each command that writes, pointed below a file: (argv, the path it names, the flag to change).
UNWRITABLE = [
    (["process", "--in", "{tmp}/sim", "--out", "{file}/out"], "{file}/out", "--out"),
    (["process", "--in", "{tmp}/sim", "--out", "{file}"], "{file}", "--out"),
    (["fleet", "schema", "--out", "{file}/f.json"], "{file}/f.json", "--out"),
    (["docs", "data-dictionary", "--out", "{file}/d.md"], "{file}/d.md", "--out"),
    (["schemas", "write", "--dir", "{file}"], "{file}/outputs", "--dir"),
    (["models", "build", "--lake", "{tmp}", "--db", "{file}/w.duckdb"], "{file}/w.duckdb", "--db"),
    (["land", "--lake", "{file}/lake", "--bootstrap", REFUSED], "{file}/lake", "--lake"),
    (["worker", "--store", "memory://", "--data-dir", "{file}/w"], "{file}/w", "--data-dir"),
    (["demo", "--days", "0.01", "--no-quality", "--out", "{file}/demo"], "{file}/demo", "--out"),
]


@pytest.mark.parametrize(
    ("args", "target", "option"), UNWRITABLE, ids=[" ".join(c[0][:2]) for c in UNWRITABLE]
)
def test_an_unwritable_output_is_one_plain_line(
    args: list[str],
    target: str,
    option: str,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not `unexpected NotADirectoryError (a bug?)`: which path, why and what to do instead."""
    file = isolated / "a-file"
    file.write_text("not a folder\n")
    port = free_ports(1)[0]
    fill = {"tmp": isolated, "file": file, "port": port}
    code, out, err = run([a.format(**fill) for a in args], capsys)
    assert code == 1, err
    line = one_error_line(err)
    assert line == (
        f"error: cannot write {target.format(**fill)}: {file} is a file, not a folder "
        f"({line.split('(', 1)[1].split(')', 1)[0]}); pass another {option} or make that place "
        "writable"
    )
    assert "a bug?" not in err + out and "Traceback" not in err + out


def test_an_unwritable_output_keeps_its_traceback_for_debug(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "a-file").write_text("x")
    code, _, err = run(["--debug", "fleet", "schema", "--out", "a-file/f.json"], capsys)
    assert code == 1
    assert err.startswith("Traceback") and "NotADirectoryError" in err
    assert err.rstrip().splitlines()[-1].startswith("error: cannot write a-file/f.json: ")


def test_an_error_reading_an_input_is_not_called_an_output_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline.report

    def unreadable(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(isolated / "in" / "x.css"))

    monkeypatch.setattr(pipeline.report, "build_report", unreadable)
    code, _, err = run(["report", "--out", str(isolated / "out" / "r.html")], capsys)
    assert "unexpected PermissionError" in one_error_line(err)
    assert code == 1


# -- land: a fake consumer (no broker) over one request-log partition ----------------------------
PREFIX = "t1."
TOPIC = f"{PREFIX}mdc.request-log"


def request_record(offset: int) -> SimpleNamespace:
    value = {
        "finished_at": f"2026-03-02T10:00:{offset:02d}Z",
        "request_id": f"r{offset}",
        "site_id": "bog1",
        "node_id": "bog1-r1-n01",
        "service": "checkout-api",
        "team": "payments",
        "status": 200,
        "latency_ms": 12.5,
        "bytes_in": 100,
        "bytes_out": 2000,
    }
    return SimpleNamespace(offset=offset, timestamp=0, value=json.dumps(value).encode())


class FakeConsumer:
    """Just enough of `AIOKafkaConsumer` for a `Lander`: one partition holding three records."""

    made: ClassVar[list[FakeConsumer]] = []

    def __init__(self, **kwargs: Any) -> None:
        from aiokafka import TopicPartition

        self.kwargs = kwargs
        self.tp = TopicPartition(TOPIC, 0)
        self.records = [request_record(i) for i in range(3)]
        self.at = 0
        self.commits: list[dict[Any, int]] = []
        self.listener: Any = None
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert TOPIC in topics
        self.listener = listener

    async def start(self) -> None:
        await self.listener.on_partitions_assigned({self.tp})

    async def stop(self) -> None:
        pass

    async def committed(self, tp: Any) -> int | None:
        return None

    async def seek_to_beginning(self, tp: Any) -> None:
        self.at = 0

    def seek(self, tp: Any, offset: int) -> None:
        self.at = offset

    async def getmany(self, timeout_ms: int) -> dict[Any, list[SimpleNamespace]]:
        batch, self.at = self.records[self.at :], len(self.records)
        await asyncio.sleep(0.01)  # lets a landing thread finish, as a real fetch wait would
        return {self.tp: batch} if batch else {}

    def highwater(self, tp: Any) -> int:
        return len(self.records)

    async def position(self, tp: Any) -> int:
        return self.at

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(offsets)


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeConsumer]]:
    import pipeline.lake.land as land

    async def no_admin(*args: object, **kwargs: object) -> None:
        pass

    FakeConsumer.made = []
    monkeypatch.setattr(land, "AIOKafkaConsumer", FakeConsumer)
    monkeypatch.setattr(land, "ensure_topics", no_admin)
    yield FakeConsumer.made


LAND = ["land", "--until-idle", "--topic-prefix", PREFIX, "--bootstrap", "127.0.0.1:1"]


def test_land_until_idle_lands_and_commits_with_the_fake_consumer(
    isolated: Path, fake_kafka: list[FakeConsumer], capsys: pytest.CaptureFixture[str]
) -> None:
    """The fake is faithful enough: without a failure the records land and exit is 0."""
    with pytest.raises(SystemExit) as info:
        from pipeline.cli import main

        main([*LAND, "--lake", str(isolated / "lake")])
    assert info.value.code in (None, 0), capsys.readouterr().err
    assert "landed 3 rows" in capsys.readouterr().out
    (consumer,) = fake_kafka
    assert consumer.commits == [{consumer.tp: 3}]
    assert consumer.kwargs["group_id"] == f"{PREFIX}microdc-land"  # the default follows the prefix


def test_land_takes_an_explicit_group(
    isolated: Path, fake_kafka: list[FakeConsumer], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        from pipeline.cli import main

        main([*LAND, "--lake", str(isolated / "lake"), "--group-id", "mine"])
    assert fake_kafka[0].kwargs["group_id"] == "mine"


@pytest.mark.parametrize("stage", ["write", "build"])
def test_land_until_idle_exits_1_when_a_segment_fails(
    stage: str,
    isolated: Path,
    fake_kafka: list[FakeConsumer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk (write) or a record the lander cannot handle (build) is exit 1, not 0 with 0
    rows: one line naming the topic, partition, offsets and cause; nothing committed."""
    from pipeline.lake import Lake
    from pipeline.lake.segment import SegmentDraft

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def overflow(*args: object) -> None:
        raise OverflowError("int too big to convert")

    if stage == "write":
        monkeypatch.setattr(Lake, "write_segment", disk_full)
        cause = "OSError: [Errno 28] No space left on device"
    else:
        monkeypatch.setattr(SegmentDraft, "build", overflow)
        cause = "OverflowError: int too big to convert"
    code, out, err = run([*LAND, "--lake", str(isolated / "lake")], capsys)
    assert code == 1, err
    *logs, error = [line for line in err.splitlines() if line.strip()]
    assert error == (
        f"error: {TOPIC}[0] offsets 0..2: segment not landed: {cause}; nothing of it was "
        "committed - fix the cause and run `microdc land` again"
    )
    assert all(" INFO pipeline." in line for line in logs), logs  # land's progress, no warning
    assert "Traceback" not in err and "a bug?" not in err
    assert fake_kafka[0].commits == []
    assert "landed" not in out.replace("landing into", "")
