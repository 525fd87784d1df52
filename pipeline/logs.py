"""Logging of the long-running commands (worker, land, simulate): text or one JSON object a line.

`configure_logging(fmt, level)` sets up the root logger once; `logging_config(fmt, level)` is the
same set-up as a `logging.config.dictConfig` dict, for Faust's worker, which installs its own.
JSON lines carry `ts` (UTC, RFC 3339 with milliseconds), `level`, `logger`, `msg` and, when an
exception is attached, `exc` (its formatted traceback). The pipeline's own loggers (`pipeline.*`)
log at INFO; libraries (aiokafka, Faust) at `level`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["FORMATS", "JsonFormatter", "StderrHandler", "configure_logging", "logging_config"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg (+ exc, stack when present)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise; report the standard way
            self.handleError(record)


def logging_config(fmt: str = "text", level: str | int = "WARNING") -> dict[str, Any]:
    """A `dictConfig` dict: one stderr handler in `fmt` on the root logger at `level`."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} must be one of {', '.join(FORMATS)}")
    name = level.upper() if isinstance(level, str) else logging.getLevelName(level)
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if fmt == "json"
        else {"format": TEXT_FORMAT, "datefmt": "%Y-%m-%dT%H:%M:%S"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"microdc": formatter},
        "handlers": {"stderr": {"()": f"{__name__}.StderrHandler", "formatter": "microdc"}},
        "root": {"level": name, "handlers": ["stderr"]},
        "loggers": {"pipeline": {"level": "INFO" if name != "DEBUG" else "DEBUG"}},
    }


def configure_logging(fmt: str = "text", level: str | int = "WARNING") -> None:
    """Route every log record to stderr in `fmt` (`text` or `json`); replaces earlier set-ups."""
    logging.config.dictConfig(logging_config(fmt, level))
