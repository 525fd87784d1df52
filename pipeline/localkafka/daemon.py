"""Detached mode: a broker that outlives this process (`microdc kafka up|down|status`).

Its pid, ports and paths are kept in `<state_dir>/broker.json`; data in `<state_dir>/broker`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.localkafka.common import file_lock
from pipeline.localkafka.config import port_is_free
from pipeline.localkafka.jars import KAFKA_VERSION
from pipeline.localkafka.process import LocalKafka, tcp_open

_STATE_FILE = "broker.json"


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / _STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_broker_process(pid: int, properties: str) -> bool:
    """Whether `pid` is alive and is the `kafka.Kafka` process started with `properties`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if sys.platform == "linux":
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"kafka.Kafka" in cmdline and properties.encode() in cmdline


def _running_state(state_dir: Path) -> dict[str, Any] | None:
    state = _read_state(state_dir)
    if state is None:
        return None
    try:
        pid, props = int(state["pid"]), str(state["properties"])
    except (KeyError, TypeError, ValueError):
        return None
    return state if _is_broker_process(pid, props) else None


def status(state_dir: Path) -> str | None:
    """The bootstrap address of the detached broker of `state_dir`, or None if it is not up."""
    state = _running_state(Path(state_dir))
    if state is None or not tcp_open(int(state["port"])):
        return None
    return str(state["bootstrap"])


def up(
    state_dir: Path, *, version: str = KAFKA_VERSION, port: int | None = None, timeout: float = 90
) -> str:
    """Start a broker that outlives this process (state in `state_dir`); return its bootstrap.

    Idempotent: if one is already running for `state_dir`, returns its address. Data persists
    across `down`/`up` in `state_dir/broker`, and the previous ports are reused when free.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    with file_lock(state_dir / ".lock"):
        running = status(state_dir)
        if running is not None:
            return running
        previous = _read_state(state_dir) or {}
        old_port, old_cport = previous.get("port"), previous.get("controller_port")
        if port is None and isinstance(old_port, int) and port_is_free(old_port):
            port = old_port
        cport = old_cport if isinstance(old_cport, int) and port_is_free(old_cport) else None
        kafka = LocalKafka(
            state_dir / "broker",
            version=version,
            port=port,
            controller_port=cport,
            die_with_parent=False,
        )
        bootstrap = kafka.start(timeout)
        state = {
            "pid": kafka.pid,
            "bootstrap": bootstrap,
            "port": kafka.port,
            "controller_port": kafka.controller_port,
            "workdir": str(kafka.workdir),
            "properties": str(kafka.properties_path),
            "log": str(kafka.log_path),
            "version": version,
            "startup_seconds": round(kafka.startup_seconds or 0.0, 2),
        }
        tmp = state_dir / f".{_STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        tmp.replace(state_dir / _STATE_FILE)
        return bootstrap


def down(state_dir: Path, *, timeout: float = 30, wipe: bool = False) -> bool:
    """Stop the detached broker of `state_dir`. True if one was running. `wipe` deletes its data."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return False
    with file_lock(state_dir / ".lock"):
        state = _running_state(state_dir)
        stopped = False
        if state is not None:
            pid, props = int(state["pid"]), str(state["properties"])
            _terminate(pid, props, timeout)
            stopped = True
        if wipe:
            shutil.rmtree(state_dir / "broker", ignore_errors=True)
            (state_dir / _STATE_FILE).unlink(missing_ok=True)
        return stopped


def _terminate(pid: int, properties: str, timeout: float) -> None:
    """SIGTERM a process we did not start as a child; SIGKILL it after `timeout` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not _is_broker_process(pid, properties):
                return
            time.sleep(0.1)
