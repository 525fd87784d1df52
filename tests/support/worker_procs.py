"""Stream workers and landers as child processes for integration tests: start, probe, SIGKILL,
stop.

Each worker gets its own free web port and state directory. Children die with the test process
(PR_SET_PDEATHSIG) and `WorkerPool.close()` stops whatever is left, so no worker outlives a test.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.localkafka import free_ports

_PR_SET_PDEATHSIG = 1
#: The HMAC key landers started by tests replace client IPs with.
LAKE_IP_SECRET = "test-secret"


def _die_with_parent() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def log_tail(log: Path, chars: int = 2000) -> str:
    """The end of a child's log file, for a failure message."""
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-chars:]
    return "(no log)"


def stop_child(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """SIGTERM a child still running, SIGKILL it after `grace_s`, and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Worker:
    """One `microdc worker` child process (`python -m pipeline worker`)."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        prefix: str,
        state_dir: Path,
        *,
        store: str = "memory://",
        session_timeout_s: float = 10.0,
        max_source_skew_s: float | None = None,
    ) -> None:
        self.name = name
        self.max_source_skew_s = max_source_skew_s
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.state_dir = state_dir
        self.store = store
        self.session_timeout_s = session_timeout_s
        self.port = free_ports(1)[0]
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Worker:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "pipeline", "worker",
            "--bootstrap", self.bootstrap,
            "--topic-prefix", self.prefix,
            "--web-port", str(self.port),
            "--data-dir", str(self.state_dir),
            "--store", self.store,
            "--session-timeout-s", str(self.session_timeout_s),
            "--loglevel", "info",
        ]  # fmt: skip
        if self.max_source_skew_s is not None:
            cmd += ["--max-source-skew", str(self.max_source_skew_s)]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=False,
                preexec_fn=_die_with_parent(),
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        if not self.alive:
            raise AssertionError(f"worker {self.name} exited: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except OSError:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as resp:
            text: str = resp.read().decode()
            return text

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            state = self.health()
            return state if state and state["status"] == "ok" else None

        result: dict[str, Any] = wait_for(ready, timeout, f"worker {self.name} to be ready")
        return result

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class WorkerPool:
    """Workers of one test; `close()` stops them all (use in `finally` or a fixture)."""

    def __init__(self, bootstrap: str, prefix: str, root: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.root = root
        self.workers: list[Worker] = []

    def add(self, name: str, **kwargs: Any) -> Worker:
        worker = Worker(name, self.bootstrap, self.prefix, self.root / name, **kwargs)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:  # SIGTERM all first: they shut down in parallel
            if worker.alive and worker.proc is not None:
                worker.proc.terminate()
        for worker in self.workers:
            worker.stop()


class Lander:
    """`microdc land` as a child process (dies with the test process)."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        lake: Path,
        log: Path,
        max_rows: int,
        secret: str = LAKE_IP_SECRET,
    ) -> None:
        self.cmd = [
            str(Path(sys.executable).parent / "microdc"),
            "land",
            "--bootstrap",
            bootstrap,
            "--topic-prefix",
            prefix,
            "--lake",
            str(lake),
            "--group-id",
            f"{prefix}land",
            "--max-rows",
            str(max_rows),
        ]
        self.log = log
        self.secret = secret
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Lander:
        env = {**os.environ, "MICRODC_LAKE_IP_SECRET": self.secret}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent(),
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"lander exited {self.proc.returncode}: {self.log.read_text()[-3000:]}"
            )
