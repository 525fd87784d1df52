"""`LocalKafka`: one Kafka broker+controller JVM on loopback ports, started, probed, stopped.

`start()` formats a KRaft log directory once, launches `kafka.Kafka` and waits until a metadata
request succeeds; the process dies with the thread that started it unless told otherwise.
Every path handed to the JVM is absolute: the broker runs with `workdir` as its cwd.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pipeline.errors import KafkaUnavailableError
from pipeline.localkafka.common import HOW_TO_GET_A_BROKER, LOOPBACK, resource_text, tail
from pipeline.localkafka.config import (
    SASL_LISTENER,
    free_ports,
    new_cluster_id,
    server_properties,
)
from pipeline.localkafka.jars import KAFKA_VERSION, ensure_jars

_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


def tcp_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even if an event loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _metadata_ok(
    bootstrap: str, timeout: float, client_options: Mapping[str, Any] | None = None
) -> bool:
    """True once the broker answers a metadata request listing at least one (unfenced) broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(int(timeout * 1000), 500),
        client_id="microdc-localkafka-probe",
        **(client_options or {}),
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:  # noqa: BLE001 - any failure just means "not ready yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaUnavailableError(
            "`java` is not on PATH (Kafka 4 needs Java 17+). " + HOW_TO_GET_A_BROKER
        )
    return java


def _die_with_parent_preexec() -> Callable[[], None]:
    """A `preexec_fn` asking Linux to SIGTERM the child when the forking thread dies.

    Note PR_SET_PDEATHSIG follows the *thread* that forked: start brokers from a long-lived
    thread (the main thread in tests).
    """
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: nothing to load in the child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class _BindError(KafkaUnavailableError):
    """The broker could not bind its ports (someone took them after we picked them)."""


class LocalKafka:
    """One Kafka broker+controller process in `workdir`, on loopback ports.

    `start()` returns the bootstrap address once a metadata request succeeds; `stop()` shuts it
    down cleanly, `kill()` crashes it (SIGKILL), and `start()`/`restart()` bring it back on the
    same ports and data without reformatting. Usable as a context manager.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        version: str = KAFKA_VERSION,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        die_with_parent: bool = True,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        #: Absolute: the JVM runs with `workdir` as its cwd, so a relative path would not
        #: name the same files there (`microdc kafka up` with the default `.kafka-local`).
        self.workdir = Path(workdir).resolve()
        #: SASL/PLAIN users (name -> password) of a SASL_PLAINTEXT listener; None: PLAINTEXT.
        #: The broker logs in as an extra user of its own, `microdc-broker`.
        self.sasl_users: dict[str, str] | None = None
        if sasl_users:
            self.sasl_users = {"microdc-broker": secrets.token_urlsafe(18), **sasl_users}
        self.version = version
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.die_with_parent = die_with_parent
        #: Seconds the last `start()` took from launch to ready (jar download excluded).
        self.startup_seconds: float | None = None
        #: Seconds the last `start()` spent in `ensure_jars` (≈0 when cached).
        self.jars_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- paths and state

    @property
    def properties_path(self) -> Path:
        """The generated `server.properties`."""
        return self.workdir / "server.properties"

    @property
    def log4j_path(self) -> Path:
        """The log4j2 configuration the JVM is pointed at (copied from the package)."""
        return self.workdir / "log4j2.properties"

    @property
    def log_path(self) -> Path:
        """The broker's stdout/stderr (warnings and errors; INFO goes to `server.log`)."""
        return self.workdir / "broker.log"

    @property
    def data_dir(self) -> Path:
        """The KRaft log directory (`log.dirs`)."""
        return self.workdir / "data"

    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:<port>`; only known once ports are chosen (after `start()`)."""
        if self.port is None:
            raise KafkaUnavailableError("LocalKafka has no port yet: call start() first")
        return f"{LOOPBACK}:{self.port}"

    @property
    def security_protocol(self) -> str:
        """What clients must speak on `bootstrap`: PLAINTEXT, or SASL_PLAINTEXT with users."""
        return SASL_LISTENER if self.sasl_users else "PLAINTEXT"

    def client_options(self, user: str = "microdc-broker") -> dict[str, Any]:
        """aiokafka keyword arguments to connect as `user` (nothing for a PLAINTEXT broker)."""
        if not self.sasl_users:
            return {}
        return {
            "security_protocol": SASL_LISTENER,
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": user,
            "sasl_plain_password": self.sasl_users[user],
        }

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        """Whether the broker process is alive (not necessarily ready)."""
        return self._proc is not None and self._proc.poll() is None

    def is_formatted(self) -> bool:
        """Whether `data_dir` already holds a formatted KRaft log directory."""
        return (self.data_dir / "meta.properties").is_file()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalKafka({str(self.workdir)!r}, port={self.port}, {state})"

    # -- lifecycle

    def start(self, timeout: float = 90) -> str:
        """Start (or restart) the broker and return its bootstrap address once it is ready.

        Downloads the jars on first use (not counted in `timeout`), picks free loopback ports
        unless given, formats the log directory once, then waits until a metadata request
        succeeds. Raises `KafkaUnavailableError` with the tail of the broker log on failure.
        """
        if self.is_running():
            return self.bootstrap
        began = time.monotonic()
        libs = ensure_jars(self.version)
        launched = time.monotonic()
        self.jars_seconds = launched - began
        jvm = self.jvm_command(_java(), libs)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log4j_path.write_text(resource_text("log4j2.properties"), encoding="utf-8")
        deadline = launched + timeout
        pick_port, pick_controller = self.port is None, self.controller_port is None
        for attempt in range(3):
            if pick_port or pick_controller:
                fresh = free_ports(2)
                self.port = fresh[0] if pick_port else self.port
                self.controller_port = fresh[1] if pick_controller else self.controller_port
            self.write_server_properties()
            if not self.is_formatted():
                self._format(jvm, deadline)
            self._launch(jvm)
            try:
                self._wait_ready(deadline)
                break
            except _BindError:
                self.stop(timeout=5)
                if not (pick_port or pick_controller) or attempt == 2:
                    raise
        self.startup_seconds = time.monotonic() - launched
        return self.bootstrap

    def restart(self, timeout: float = 90) -> str:
        """Stop the broker (cleanly) if it runs, then start it on the same ports and data."""
        self.stop()
        return self.start(timeout)

    restart_same_ports = restart

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM the broker and wait for it; SIGKILL after `timeout`. Returns its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the broker (a crash: no controlled shutdown) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the JVM is given (pure but for writing server.properties; no process started)

    def jvm_command(self, java: str, libs: Path) -> list[str]:
        """`java` and the JVM options both commands share: logging config, log dir, classpath.

        Every path in it is absolute (`libs` is resolved here, `workdir` in `__init__`).
        """
        return [
            java,
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            f"{Path(libs).resolve()}/*",
        ]

    def format_command(self, jvm: list[str], cluster_id: str) -> list[str]:
        """The one-off `kafka.tools.StorageTool format` of `data_dir` for `cluster_id`."""
        return [
            *jvm,
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_path),
        ]

    def broker_command(self, jvm: list[str]) -> list[str]:
        """The long-running `kafka.Kafka server.properties` (run with `workdir` as its cwd)."""
        return [*jvm, f"-Xmx{self.heap}", "kafka.Kafka", str(self.properties_path)]

    def write_server_properties(self) -> Path:
        """Write `server.properties` for the chosen ports (and SASL users); returns its path."""
        if self.port is None or self.controller_port is None:
            raise KafkaUnavailableError("LocalKafka has no ports yet: call start() first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(
            server_properties(
                port=self.port,
                controller_port=self.controller_port,
                log_dir=self.data_dir,
                sasl_users=self.sasl_users,
                sasl_broker_user="microdc-broker" if self.sasl_users else None,
            ),
            encoding="utf-8",
        )
        return self.properties_path

    # -- internals

    def _format(self, jvm: list[str], deadline: float) -> None:
        cmd = self.format_command(jvm, new_cluster_id())
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
                timeout=max(deadline - time.monotonic(), 1.0),
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaUnavailableError(f"formatting {self.data_dir} timed out") from exc
        if proc.returncode != 0 or not self.is_formatted():
            raise KafkaUnavailableError(
                f"kafka.tools.StorageTool format failed (exit {proc.returncode}) for "
                f"{self.data_dir}:\n{tail(proc.stdout)}" + _java_hint(proc.stdout)
            )

    def _launch(self, jvm: list[str]) -> None:
        cmd = self.broker_command(jvm)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            banner = f"=== pipeline.localkafka: starting Kafka {self.version} at {stamp}\n"
            log.write(banner.encode())
            log.flush()
            self._log_offset = log.tell()
            preexec = (
                _die_with_parent_preexec()
                if self.die_with_parent and sys.platform == "linux"
                else None
            )
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )

    def _log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no broker log)"
        return tail(text, lines) or "(broker log is empty)"

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None and self.port is not None
        bootstrap = self.bootstrap
        while True:
            try:
                code = proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                self._proc = None
                tail = self._log_tail()
                cls = _BindError if "Address already in use" in tail else KafkaUnavailableError
                raise cls(
                    f"the local Kafka broker exited with code {code} during startup "
                    f"(log: {self.log_path}):\n{tail}" + _java_hint(tail)
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = self._log_tail()
                self.stop(timeout=10)
                raise KafkaUnavailableError(
                    f"the local Kafka broker on {bootstrap} was not ready within the deadline "
                    f"(log: {self.log_path}):\n{tail}"
                )
            probe_timeout = min(5.0, max(remaining, 0.5))
            if tcp_open(self.port) and _run_coroutine(
                functools.partial(_metadata_ok, bootstrap, probe_timeout, self.client_options())
            ):
                return


def _java_hint(output: str) -> str:
    if "UnsupportedClassVersionError" in output:
        return "\nKafka 4 needs Java 17 or newer (set JAVA_HOME or put it first on PATH)."
    return ""
