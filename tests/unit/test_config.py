"""Settings precedence: flags > MICRODC_* variables > the TOML config file > defaults.

Proved on the settings object and through real commands whose one-line errors name the value
they used (a missing lake for `models build`, a refused address for `topics create`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, use_config_file
from pipeline.errors import ConfigError
from pipeline.localkafka import free_ports
from tests.support.cli_run import one_error_line, run


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No MICRODC_* variable, no ./microdc.toml, no --config left over from another test."""
    import os

    for name in list(os.environ):
        if name.startswith("MICRODC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    use_config_file(None)
    root, ours = logging.getLogger(), logging.getLogger("pipeline")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    yield
    use_config_file(None)
    root.handlers[:], root.level = handlers, level
    ours.setLevel(our_level)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- on the settings object ---------------------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.topic_prefix == ""
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.log_format == "text"


def test_the_file_beats_defaults_and_the_environment_beats_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(Path("microdc.toml"), 'kafka_bootstrap = "file:9092"\ntopic_prefix = "file."\n')
    settings = Settings()
    assert (settings.kafka_bootstrap, settings.topic_prefix) == ("file:9092", "file.")
    assert settings.lake == "out/lake"  # not in the file: the default

    monkeypatch.setenv("MICRODC_KAFKA_BOOTSTRAP", "env:9092")
    settings = Settings()
    assert (settings.kafka_bootstrap, settings.topic_prefix) == ("env:9092", "file.")
    monkeypatch.setenv("MICRODC_TOPIC_PREFIX", "env.")
    assert Settings().topic_prefix == "env."


def test_which_file_explicit_then_variable_then_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write(Path("microdc.toml"), 'topic_prefix = "cwd."\n')
    named = write(tmp_path / "named.toml", 'topic_prefix = "named."\n')
    explicit = write(tmp_path / "explicit.toml", 'topic_prefix = "explicit."\n')
    assert Settings().topic_prefix == "cwd."
    monkeypatch.setenv("MICRODC_CONFIG", str(named))
    assert Settings().topic_prefix == "named."
    use_config_file(explicit)
    assert Settings().topic_prefix == "explicit."


def test_security_settings_from_the_file_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(
        Path("microdc.toml"),
        'kafka_security_protocol = "sasl_ssl"\nkafka_sasl_mechanism = "scram-sha-512"\n'
        'kafka_sasl_username = "alice"\n',
    )
    monkeypatch.setenv("MICRODC_KAFKA_SASL_PASSWORD", "s3cret")
    settings = Settings()
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka_bootstrap = \n", "microdc.toml: not valid TOML: Invalid value (at line 1"),
        ('kafka_bootsrap = "x"\n', "unknown setting 'kafka_bootsrap' (did you mean "),
        ('[kafka]\nbootstrap = "x"\n', "unknown setting 'kafka'"),
        ('kafka_security_protocol = "TLS"\n', "kafka_security_protocol = 'TLS' (from microdc"),
        ('log_format = "xml"\n', "invalid setting log_format = 'xml' (from microdc.toml)"),
    ],
)
def test_bad_config_files_are_one_line_config_errors(text: str, expected: str) -> None:
    write(Path("microdc.toml"), text)
    with pytest.raises(ConfigError) as info:
        Settings()
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICRODC_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ConfigError, match=r"kafka_sasl_mechanism = 'GSSAPI' \(from \$MICRODC_"):
        Settings()


def test_a_missing_named_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICRODC_CONFIG", "nowhere.toml")
    with pytest.raises(ConfigError, match=r"config file nowhere.toml \(from \$MICRODC_CONFIG\)"):
        Settings()


# -- through real commands ----------------------------------------------------------------------


def test_lake_flag_beats_variable_beats_file_beats_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def lake_used(*flags: str) -> str:
        code, _, err = run(["models", "build", "--db", str(tmp_path / "w.duckdb"), *flags], capsys)
        assert code == 2
        line = one_error_line(err)
        assert line.startswith("error: no lake at ")
        return line.removeprefix("error: no lake at ").split(":")[0]

    assert lake_used() == "out/lake"
    write(Path("microdc.toml"), f'lake = "{tmp_path / "from-file"}"\n')
    assert lake_used() == str(tmp_path / "from-file")
    monkeypatch.setenv("MICRODC_LAKE", str(tmp_path / "from-env"))
    assert lake_used() == str(tmp_path / "from-env")
    assert lake_used("--lake", str(tmp_path / "from-flag")) == str(tmp_path / "from-flag")


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_bootstrap_flag_beats_variable_beats_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flag, env, file = (f"127.0.0.1:{port}" for port in free_ports(3))  # nobody listens there

    def address_used(config: Path, *flags: str) -> str:
        args = ["--config", str(config), "topics", "create", "--timeout-s", "5", *flags]
        code, _, err = run(args, capsys)
        assert code == 3
        line = one_error_line(err)
        assert "is a broker running there?" in line
        return line.removeprefix("error: cannot connect to Kafka at ").split(" ")[0]

    config = write(tmp_path / "elsewhere.toml", f'kafka_bootstrap = "{file}"\n')
    assert address_used(config) == file
    monkeypatch.setenv("MICRODC_KAFKA_BOOTSTRAP", env)
    assert address_used(config) == env
    assert address_used(config, "--bootstrap", flag) == flag


def test_config_show_names_each_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(Path("microdc.toml"), 'topic_prefix = "file."\nkafka_sasl_password = "hunter2"\n')
    monkeypatch.setenv("MICRODC_LAKE", "s3://bucket/lake")
    code, out, _ = run(["config", "show"], capsys)
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert "file." in rows["topic_prefix"] and "microdc.toml" in rows["topic_prefix"]
    assert "s3://bucket/lake" in rows["lake"] and "$MICRODC_LAKE" in rows["lake"]
    assert "default" in rows["kafka_bootstrap"]
    assert "****" in rows["kafka_sasl_password"] and "hunter2" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lake = [\n", "not valid TOML"),
        ('lak = "x"\n', "unknown setting 'lak' (did you mean 'lake'?)"),
    ],
)
def test_commands_report_a_bad_config_file_in_one_line(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "bad.toml", text)
    code, _, err = run(["--config", str(config), "models", "build"], capsys)
    assert code == 2
    assert expected in one_error_line(err)
