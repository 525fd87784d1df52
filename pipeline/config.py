"""Settings: command-line flags > `MICRODC_*` environment variables > a TOML file > defaults.

The TOML file is the one given with `microdc --config PATH` (see `use_config_file`), else
`$MICRODC_CONFIG`, else `./microdc.toml` when it exists; there is none otherwise. Its keys are the
field names below, at the top level (the environment variable without `MICRODC_`, lowercased)::

    kafka_bootstrap = "kafka-1.internal:9093"
    kafka_security_protocol = "SASL_SSL"
    kafka_sasl_username = "microdc"
    lake = "s3://my-bucket/lake"

Unknown keys, malformed TOML and invalid values are `ConfigError`s naming the file (or the
variable) and the key. Relative paths are relative to the current directory, as for flags.
Flags are applied by the commands themselves (`flag if given else settings.value`).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "Settings",
    "config_file",
    "describe_settings",
    "use_config_file",
]

ENV_PREFIX = "MICRODC_"
#: Names the config file when `--config` is not given.
CONFIG_ENV = "MICRODC_CONFIG"
#: Read from the current directory when neither `--config` nor `$MICRODC_CONFIG` names a file.
DEFAULT_CONFIG_FILE = Path("microdc.toml")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogFormat = Literal["text", "json"]

_explicit_config: Path | None = None


def use_config_file(path: Path | None) -> None:
    """Make every later `Settings()` read `path` (the `--config` flag); None: the default."""
    global _explicit_config
    _explicit_config = path


def config_file() -> tuple[Path | None, str]:
    """The TOML file settings come from, and what chose it (for messages); (None, "") if none."""
    if _explicit_config is not None:
        return _must_exist(_explicit_config, "--config"), "--config"
    named = os.environ.get(CONFIG_ENV, "").strip()
    if named:
        return _must_exist(Path(named), f"${CONFIG_ENV}"), f"${CONFIG_ENV}"
    if DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE, "the current directory"
    return None, ""


def _must_exist(path: Path, source: str) -> Path:
    if not path.expanduser().is_file():
        raise ConfigError(f"config file {path} (from {source}) does not exist or is not a file")
    return path.expanduser()


class _TomlFile(TomlConfigSettingsSource):
    """pydantic-settings' TOML source with errors that name the file, the line and the key."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        super().__init__(settings_cls, toml_file=path)
        known = set(settings_cls.model_fields)
        for key in self.toml_data:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see `microdc config show`"
                raise ConfigError(f"{path}: unknown setting {key!r} ({hint})")

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot read the config file: {exc}") from exc


class Settings(BaseSettings):
    """Process-wide settings; see the module docstring for where each value comes from."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    fleet: Path | None = None
    kafka_state_dir: Path = Path(".kafka-local")
    #: Where the Parquet lake lives: a local folder or a pyarrow filesystem URI.
    lake: str = "out/lake"
    #: The DuckDB warehouse `models build` writes and `export`, `report`, `quality` read.
    warehouse: Path = Path("out/warehouse.duckdb")
    #: Key of the HMAC that replaces client IPs in the lake; unset: IPs are dropped.
    lake_ip_secret: str | None = None

    #: How every Kafka client (producer, consumers, admin, Faust) talks to the brokers.
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    #: SASL mechanism for SASL_PLAINTEXT / SASL_SSL.
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    #: CA bundle (PEM) that signed the brokers' certificates; unset: the system's CAs.
    kafka_ssl_cafile: Path | None = None
    #: Client certificate (PEM) for mutual TLS, with its private key.
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None

    #: Log lines of the long-running commands (worker, land, simulate): text or json.
    log_format: LogFormat = "text"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from exc

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Earlier wins: keyword arguments, then the environment, then the TOML file."""
        path, _ = config_file()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, _TomlFile(settings_cls, path))


def _explain(exc: ValidationError) -> str:
    """One line for the first invalid value, naming where it came from."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "?"
    env = f"{ENV_PREFIX}{field.split('.')[0].upper()}"
    if env in os.environ:
        source = f"${env}"
    else:
        path, _ = config_file()
        source = str(path) if path is not None else "a keyword argument"
    value = error.get("input")
    shown = "" if "password" in field or "secret" in field else f" = {value!r}"
    return f"invalid setting {field}{shown} (from {source}): {error['msg']}"


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, value, where it came from) per setting; secrets are shown as `****`.

    The source is `$MICRODC_<NAME>`, the config file, or `default` (flags are per command).
    """
    path, _ = config_file()
    in_file: set[str] = set()
    if path is not None:
        with path.open("rb") as handle:
            in_file = set(tomllib.load(handle))
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        env = f"{ENV_PREFIX}{name.upper()}"
        if env in os.environ:
            source = f"${env}"
        elif name in in_file:
            source = str(path)
        else:
            source = "default"
        secret = isinstance(value, SecretStr) or (name == "lake_ip_secret" and value)
        shown = "****" if secret and value is not None else ("-" if value is None else str(value))
        rows.append((name, shown, source))
    return rows
