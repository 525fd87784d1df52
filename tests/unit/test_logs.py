"""Log lines of the long-running commands: text, or one JSON object per line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from pipeline.logs import configure_logging, logging_config


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("pipeline")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    yield
    root.handlers[:], root.level = handlers, level
    ours.setLevel(our_level)


def json_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_lines_carry_ts_level_logger_msg(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    logging.getLogger("pipeline.lake.land").info("landing %s[%d] from %s", "t", 0, 42)
    logging.getLogger("aiokafka").warning("ünïcode stays readable")
    logging.getLogger("aiokafka").info("below the library level: dropped")
    first, second = json_lines(capsys.readouterr().err)
    assert set(first) == {"ts", "level", "logger", "msg"}
    assert (first["level"], first["logger"], first["msg"]) == (
        "INFO",
        "pipeline.lake.land",
        "landing t[0] from 42",
    )
    assert isinstance(first["ts"], str) and first["ts"].endswith("Z")
    assert datetime.fromisoformat(first["ts"]).utcoffset() is not None
    assert (second["level"], second["logger"]) == ("WARNING", "aiokafka")
    assert second["msg"] == "ünïcode stays readable"


def test_json_lines_carry_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    try:
        raise ValueError("bad\nrecord")
    except ValueError:
        logging.getLogger("pipeline.x").exception("failed")
    (entry,) = json_lines(capsys.readouterr().err)
    assert entry["msg"] == "failed"
    assert isinstance(entry["exc"], str)
    assert entry["exc"].startswith("Traceback") and "ValueError: bad\nrecord" in entry["exc"]


def test_text_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text", "info")
    logging.getLogger("aiokafka").info("joined group")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" INFO aiokafka: joined group")


def test_faust_gets_the_same_set_up_as_a_dict_config() -> None:
    config = logging_config("json", "warning")
    assert config["root"] == {"level": "WARNING", "handlers": ["stderr"]}
    assert config["formatters"]["microdc"] == {"()": "pipeline.logs.JsonFormatter"}
    with pytest.raises(ValueError, match="log format 'xml'"):
        logging_config("xml")
