"""Every path pipeline.localkafka hands the JVM is absolute, even from a relative state dir.

The broker runs with its workdir as cwd, so a relative path there names another file: `microdc
kafka up` with the default `.kafka-local` used to fail with `NoSuchFileException:
.kafka-local/broker/server.properties`. No JVM is started here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.localkafka import LocalKafka, server_properties


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _paths_in(args: list[str]) -> list[str]:
    """The file-system paths of a JVM command line: `-Dkey=/path` values, `-cp`, bare paths."""
    found = []
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("-D") and "=" in arg else arg
        if "/" in value or value.endswith((".properties", "/*")):
            found.append(value.removesuffix("/*"))
    return found


@pytest.fixture
def relative_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalKafka:
    monkeypatch.chdir(tmp_path)
    kafka = LocalKafka(Path(".kafka-local") / "broker", port=19092, controller_port=19093)
    kafka.write_server_properties()
    return kafka


def test_a_relative_workdir_becomes_absolute(relative_broker: LocalKafka, tmp_path: Path) -> None:
    kafka = relative_broker
    assert kafka.workdir == (tmp_path / ".kafka-local" / "broker").resolve()
    for path in (kafka.properties_path, kafka.data_dir, kafka.log_path, kafka.log4j_path):
        assert path.is_absolute(), path
    assert kafka.properties_path.is_file()


def test_server_properties_name_only_absolute_paths(
    relative_broker: LocalKafka, tmp_path: Path
) -> None:
    props = _props(relative_broker.properties_path.read_text(encoding="utf-8"))
    assert Path(props["log.dirs"]).is_absolute()
    assert props["log.dirs"] == str((tmp_path / ".kafka-local" / "broker" / "data").resolve())
    # Given a relative log dir directly, the generated text is still absolute.
    text = server_properties(port=1, controller_port=2, log_dir=Path("relative") / "data")
    assert _props(text)["log.dirs"] == str((tmp_path / "relative" / "data").resolve())


def test_jvm_commands_name_only_absolute_paths(relative_broker: LocalKafka) -> None:
    kafka = relative_broker
    jvm = kafka.jvm_command("java", Path("cache") / "kafka" / "libs")  # a relative $MICRODC_CACHE
    commands = {
        "format": kafka.format_command(jvm, "cluster-id"),
        "broker": kafka.broker_command(jvm),
    }
    for name, cmd in commands.items():
        paths = _paths_in(cmd[1:])  # cmd[0] is the java executable, found on PATH
        assert paths, name
        assert all(Path(p).is_absolute() for p in paths), (name, paths)
        assert str(kafka.properties_path) in cmd, name
    assert f"{Path('cache/kafka/libs').resolve()}/*" in jvm
    assert f"-Dkafka.logs.dir={kafka.workdir}" in jvm
    assert f"-Dlog4j2.configurationFile={kafka.log4j_path}" in jvm
