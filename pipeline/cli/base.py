"""Shared pieces of every command: the Typer apps, consoles, global options, settings from flags,
choices as enums, shared options, and errors about output paths."""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.config import CONFIG_ENV, Settings, use_config_file
from pipeline.errors import ConfigError, OutputError
from pipeline.kafka_security import KafkaSecurity

app = typer.Typer(
    name="microdc",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)  # its help text: the docstring of `global_options`


topics_app = typer.Typer(
    no_args_is_help=True, help="Create and inspect the pipeline's Kafka topics."
)
fleet_app = typer.Typer(no_args_is_help=True, help="Validate and describe fleet reference files.")
kafka_app = typer.Typer(no_args_is_help=True, help="Run a local Apache Kafka broker (no Docker).")
models_app = typer.Typer(no_args_is_help=True, help="Build the DuckDB warehouse from the lake.")
schemas_app = typer.Typer(no_args_is_help=True, help="Generated contracts in schemas/.")
config_app = typer.Typer(
    no_args_is_help=True, help="Inspect settings (flags > MICRODC_* > config file > defaults)."
)
lake_app = typer.Typer(no_args_is_help=True, help="Maintain the Parquet lake.")
export_app = typer.Typer(no_args_is_help=True, help="Export warehouse marts as files.")
docs_app = typer.Typer(no_args_is_help=True, help="Generated documentation in docs/.")
quality_app = typer.Typer(
    no_args_is_help=True, help="Data quality checks of the warehouse (Great Expectations)."
)
for _name, _group in (
    ("topics", topics_app),
    ("fleet", fleet_app),
    ("kafka", kafka_app),
    ("models", models_app),
    ("schemas", schemas_app),
    ("config", config_app),
    ("lake", lake_app),
    ("export", export_app),
    ("docs", docs_app),
    ("quality", quality_app),
):
    app.add_typer(_group, name=_name)

console = Console(stderr=True)


out = Console()


DEBUG_ENV = "MICRODC_DEBUG"


@dataclass
class Globals:
    """The global options of this invocation (set by `global_options`, read by `main`)."""

    log_format: str | None = None
    debug: bool = False


globals_ = Globals()


@app.callback()
def global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=f"TOML settings file (default: ${CONFIG_ENV}, else ./microdc.toml if present). "
            "Flags beat MICRODC_* variables, which beat the file.",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Logs of worker, land and simulate: text or json, one object a line "
            "(default: $MICRODC_LOG_FORMAT or text).",
        ),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Print the traceback of an error (also {DEBUG_ENV}=1)."),
    ] = False,
) -> None:
    """Energy, cost, carbon and SLOs per request for micro data centers.

    Settings: flags > MICRODC_* variables > the TOML file (--config) > defaults.

    Example: microdc demo
    """
    if log_format is not None and log_format not in ("text", "json"):
        raise typer.BadParameter(f"{log_format!r} is not text or json", param_hint="--log-format")
    use_config_file(config)
    globals_.log_format = log_format
    globals_.debug = debug


def start_logging(settings: Settings, level: str = "WARNING") -> str:
    """Set up logging for a long-running command; returns the format (flag > settings)."""
    from pipeline.logs import configure_logging

    if not isinstance(logging.getLevelName(level.upper()), int):
        raise ConfigError(f"log level {level!r}: use debug, info, warning or error")
    fmt = globals_.log_format or settings.log_format
    configure_logging(fmt, level)
    return fmt


def say(message: str) -> None:
    """A progress line of a long-running command as a log record (JSON log format)."""
    logging.getLogger("pipeline.cli").info(message)


def security_of(settings: Settings) -> KafkaSecurity:
    """The Kafka security settings (protocol, SASL, TLS files), validated."""
    return KafkaSecurity.from_settings(settings)


@contextmanager
def writing(target: Path, option: str = "--out") -> Iterator[None]:
    """Turn an `OSError` about `target` into one `OutputError` line: which path, why, what to do.

    It counts when it names `target`, a folder on the way to it, something inside it or a file
    beside it (a temporary file renamed into place), or no file at all (a full disk fails a write
    that way); any other `OSError` (an input, say) passes through unchanged.
    """
    try:
        yield
    except OSError as exc:
        if not names_output(exc, target):
            raise
        raise OutputError(str(target), os_reason(exc, target), option) from exc


def names_output(exc: OSError, target: Path) -> bool:
    """Whether `exc` is about `target` (see `writing`), so that only output errors are renamed."""
    if not isinstance(exc.filename, str):
        return exc.filename is None
    named, wanted = Path(exc.filename).resolve(), target.resolve()
    return (
        named == wanted
        or wanted in named.parents
        or named in wanted.parents
        or named.parent == wanted.parent
    )


def os_reason(exc: OSError, target: Path) -> str:
    """The system's reason, naming the file that stands where a folder must be, if one does."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # a folder was to be made where a file is
        blocker = next((p for p in (target, *target.parents) if p.is_file()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder ({reason})"
    if exc.errno == errno.EISDIR and target.is_dir():
        return f"{target} is a folder, not a file ({reason})"
    if exc.filename is not None and str(exc.filename) != str(target):
        return f"{reason}: {exc.filename}"
    return reason


_DURATION = re.compile(r"^(\d+)([mhd])$")


_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}


FleetOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet", help="Fleet YAML (default: $MICRODC_FLEET or the built-in demo fleet)."
    ),
]


BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap", help="Kafka bootstrap HOST:PORT (default: $MICRODC_KAFKA_BOOTSTRAP)."
    ),
]


PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix", help="Prefix for every topic name (default: $MICRODC_TOPIC_PREFIX)."
    ),
]


def parse_duration(text: str) -> int:
    """Minutes in a duration like `90m`, `6h` or `14d`."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"duration {text!r} is not like 90m, 6h or 14d")
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def parse_start(text: str) -> datetime:
    """An aware UTC start time from RFC 3339 text (a bare date means midnight UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"start {text!r} is not an RFC 3339 time such as 2026-03-02T00:00Z"
        ) from exc
    if value.tzinfo is None:
        if "T" in text:
            raise ConfigError(f"start {text!r} has no time zone; add Z for UTC")
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


FacilityWaitOpt = Annotated[
    float,
    typer.Option(
        help="Event-time seconds a silent facility feed holds energy and site minutes back "
        "(then design PUE). Worker and process must agree.",
        min=0.0,
    ),
]


GridWaitOpt = Annotated[
    float,
    typer.Option(
        help="Event-time seconds a silent grid feed holds energy and site minutes back (then "
        "the last value, or the static fallback). Worker and process must agree.",
        min=0.0,
    ),
]


class Choice(StrEnum):
    """A fixed set of values of an option. `message()` is the error for a value not in the set
    (`{option}`, `{value}` and `{choices}` are filled in); subclasses may word it their way."""

    @classmethod
    def message(cls) -> str:
        return "{option} {value!r}: use one of {choices}"


def parse_choice(enum: type[Choice], option: str, value: Any) -> Choice:
    """`value` as a member of `enum`; a value not in it is one `ConfigError` line (exit 2) in the
    words of `enum.message()`, like every other bad setting, not a usage screen."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise ConfigError(
            enum.message().format(option=option, value=value, choices=choices)
        ) from None


def choice_option(enum: type[Choice], option: str, help: str) -> Any:
    """`typer.Option` for a `Choice` enum (`Annotated[MyChoice, choice_option(...)]`): the help
    lists the values, a bad one is a `ConfigError`."""
    return typer.Option(
        option,
        help=help,
        metavar="[" + "|".join(member.value for member in enum) + "]",
        parser=lambda value: parse_choice(enum, option, value),
    )


class Sink(Choice):
    FILES = "files"
    KAFKA = "kafka"

    @classmethod
    def message(cls) -> str:
        return "{option} {value!r} must be files or kafka"


class Store(Choice):
    """The worker's table store (`pipeline.processors.app.STORES`; a test compares them)."""

    ROCKSDB = "rocksdb://"
    MEMORY = "memory://"


class _FileFormat(Choice):
    @classmethod
    def message(cls) -> str:
        return "{option} {value!r}: expected one of {choices}"


class ChargebackFormat(_FileFormat):
    CSV = "csv"
    PARQUET = "parquet"
    XLSX = "xlsx"
    FOCUS = "focus"


class TableFormat(_FileFormat):
    CSV = "csv"
    PARQUET = "parquet"
    XLSX = "xlsx"


#: The worker's stores, checked without importing Faust (a test compares them with its app's).
WORKER_STORES = tuple(store.value for store in Store)


def settings_with(**flags: Any) -> Settings:
    """The settings of this invocation: the flags given (not None) over MICRODC_* variables over
    the config file over the defaults, resolved once by `Settings` itself."""
    return Settings(**{name: value for name, value in flags.items() if value is not None})


LakeOpt = Annotated[
    str | None,
    typer.Option("--lake", help="Lake folder or pyarrow URI (default: $MICRODC_LAKE or out/lake)."),
]
DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db", help="DuckDB warehouse (default: $MICRODC_WAREHOUSE or out/warehouse.duckdb)."
    ),
]


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(text: str, option: str) -> date:
    """A UTC calendar date written YYYY-MM-DD."""
    try:
        if not _DATE.match(text.strip()):
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date like 2026-03-02") from None
