"""A real single-node Apache Kafka broker for tests and laptops, fetched from Maven Central.

No Docker and no tarball: `ensure_jars` asks Maven for the runtime classpath of
`org.apache.kafka:kafka_2.13` (plus a log4j2 backend) once and caches it under
`cache_dir()/kafka/<version>/libs`; `LocalKafka` formats a KRaft log directory and runs
`kafka.Kafka` as one combined broker+controller node listening on 127.0.0.1 only.

Needs Java 17+ and Maven (`mvn`) on PATH. Alternatives when those are missing: point
`MICRODC_KAFKA_BOOTSTRAP` at any broker, or run `docker compose -f docker-compose.kafka.yml up -d
kafka` and use `127.0.0.1:9092`.

`LocalKafka(..., sasl_users={"alice": "secret"})` serves clients on a SASL_PLAINTEXT listener
(mechanism PLAIN) instead, for tests of authenticated clients; the KRaft controller listener
stays PLAINTEXT on loopback.

Humans can keep one running in the background::

    python -m pipeline.localkafka up        # prints the bootstrap address
    python -m pipeline.localkafka status
    python -m pipeline.localkafka down
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pipeline.errors import KafkaUnavailableError

__all__ = [
    "BOOTSTRAP_ENV",
    "CACHE_ENV",
    "HOW_TO_GET_A_BROKER",
    "KAFKA_VERSION",
    "LocalKafka",
    "cache_dir",
    "down",
    "ensure_jars",
    "free_ports",
    "jars_dir",
    "new_cluster_id",
    "server_properties",
    "status",
    "up",
]

#: The Apache Kafka release `LocalKafka` runs by default (Maven: org.apache.kafka:kafka_2.13).
KAFKA_VERSION = "4.3.1"
#: Set this to use an existing broker instead of starting one (tests, CLI).
BOOTSTRAP_ENV = "MICRODC_KAFKA_BOOTSTRAP"
#: Overrides the download cache directory (default `~/.cache/microdc`).
CACHE_ENV = "MICRODC_CACHE"

#: The fix-it hint every "no broker" error carries.
HOW_TO_GET_A_BROKER = (
    "To get a broker: install Java 17+ and Maven (e.g. `apt-get install openjdk-17-jre-headless "
    "maven`) so pipeline.localkafka can fetch Kafka from Maven Central; or run one with "
    "`docker compose -f docker-compose.kafka.yml up -d kafka` and set "
    f"{BOOTSTRAP_ENV}=127.0.0.1:9092; or set {BOOTSTRAP_ENV} to any reachable broker."
)

_PACKAGE = "pipeline.localkafka"
_LOOPBACK = "127.0.0.1"
_STATE_FILE = "broker.json"
_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")
#: The listener (and protocol) of a broker started with SASL users.
SASL_LISTENER = "SASL_PLAINTEXT"
_SASL_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# --------------------------------------------------------------------------- jars


def cache_dir() -> Path:
    """Where downloads are cached: `$MICRODC_CACHE`, else `~/.cache/microdc`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "microdc"


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    """The directory `ensure_jars` fills for `version` (it may not exist yet)."""
    return cache_dir() / "kafka" / version / "libs"


def _jars_complete(libs: Path, version: str) -> bool:
    return (libs / ".complete").is_file() and (libs / f"kafka_2.13-{version}.jar").is_file()


def _resource_text(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed), held for the `with` body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _stderr_fd() -> int | None:
    """Our stderr's file descriptor (None, i.e. inherit, if it has none, e.g. under capture)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def ensure_jars(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Return a directory holding Kafka `version`'s runtime jars, downloading them on first use.

    Runs `mvn dependency:copy-dependencies` on the packaged pom into a temporary directory next
    to the cache entry and renames it into place, so readers never see a half-filled directory.
    A file lock makes concurrent callers wait for one download instead of repeating it.
    `quiet=False` streams Maven's progress to stderr.
    """
    final = jars_dir(version)
    if _jars_complete(final, version):
        return final
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailableError(
            f"Kafka {version} is not in {final} and Maven (`mvn`) is not on PATH to fetch it. "
            + HOW_TO_GET_A_BROKER
        )
    root = final.parent
    with _file_lock(root / ".lock"):
        if _jars_complete(final, version):  # another process finished while we waited
            return final
        work = Path(tempfile.mkdtemp(prefix=".libs-tmp-", dir=root))
        try:
            out = work / "libs"
            pom = work / "pom.xml"
            pom.write_text(_resource_text("pom.xml"), encoding="utf-8")
            cmd = [
                mvn,
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={out}",
            ]
            if quiet:
                cmd.insert(1, "-q")
            proc = subprocess.run(
                cmd,
                cwd=work,
                stdin=subprocess.DEVNULL,
                check=False,
                text=True,
                stdout=subprocess.PIPE if quiet else _stderr_fd(),
                stderr=subprocess.STDOUT,
            )
            if proc.returncode != 0 or not (out / f"kafka_2.13-{version}.jar").is_file():
                output = _tail(proc.stdout or "(see Maven output above)")
                raise KafkaUnavailableError(
                    f"Maven could not fetch Kafka {version} (exit {proc.returncode}): "
                    f"{' '.join(cmd)}\n{output}\n" + HOW_TO_GET_A_BROKER
                )
            (out / ".complete").write_text(f"kafka {version}\n", encoding="utf-8")
            if final.exists():  # a leftover without the .complete marker
                shutil.rmtree(final)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- pure helpers


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting '-'."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):
            return cid


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((_LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def _tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _jaas_plain(users: Mapping[str, str], broker_user: str) -> str:
    """The JAAS line of a PLAIN listener: the broker's own login, then every user's password."""
    for user, password in users.items():
        if not _SASL_USER.fullmatch(user):
            raise ValueError(f"SASL user name {user!r}: use letters, digits, '.', '_' or '-'")
        if not password or any(c in password for c in '"\\\n\r'):
            raise ValueError(
                f"SASL password of {user!r} must be non-empty, without quotes, "
                "backslashes or newlines"
            )
    if broker_user not in users:
        raise ValueError(f"the broker's SASL user {broker_user!r} is not among the users")
    logins = " ".join(f'user_{user}="{password}"' for user, password in users.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{broker_user}" password="{users[broker_user]}" {logins};'
    )


def server_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = 1,
    sasl_users: Mapping[str, str] | None = None,
    sasl_broker_user: str | None = None,
) -> str:
    """`server.properties` of a single combined KRaft node bound to 127.0.0.1 only.

    Static quorum (`controller.quorum.voters`), replication factor 1 for every internal topic,
    no topic auto-creation, and settings that make consumer groups and restarts fast in tests.
    With `sasl_users` (name -> password) clients and the broker itself talk SASL_PLAINTEXT with
    mechanism PLAIN on `port`, the broker logging in as `sasl_broker_user` (default: the first
    user); the controller listener stays PLAINTEXT.
    """
    client = "PLAINTEXT"
    sasl: dict[str, str] = {}
    if sasl_users:
        client = SASL_LISTENER
        broker_user = sasl_broker_user or next(iter(sasl_users))
        sasl = {
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{client.lower()}.plain.sasl.jaas.config": _jaas_plain(
                sasl_users, broker_user
            ),
        }
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{_LOOPBACK}:{controller_port}",
        "listeners": f"{client}://{_LOOPBACK}:{port},CONTROLLER://{_LOOPBACK}:{controller_port}",
        "advertised.listeners": f"{client}://{_LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:PLAINTEXT",
        **sasl,
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the restarted node must wait for its old broker session to expire
        # (DUPLICATE_BROKER_REGISTRATION until then): 4 s instead of 9 s keeps crash tests quick.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "500",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.check.interval.ms": "300000",
    }
    lines = ["# Written by pipeline.localkafka: one KRaft broker+controller node, loopback only."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


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


# --------------------------------------------------------------------------- the broker


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
        self.workdir = Path(workdir)
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
        return f"{_LOOPBACK}:{self.port}"

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
        java = _java()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log4j = self.workdir / "log4j2.properties"
        log4j.write_text(_resource_text("log4j2.properties"), encoding="utf-8")
        jvm = [
            java,
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            f"{libs}/*",
        ]
        deadline = launched + timeout
        pick_port, pick_controller = self.port is None, self.controller_port is None
        for attempt in range(3):
            if pick_port or pick_controller:
                fresh = free_ports(2)
                self.port = fresh[0] if pick_port else self.port
                self.controller_port = fresh[1] if pick_controller else self.controller_port
            assert self.port is not None and self.controller_port is not None
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

    # -- internals

    def _format(self, jvm: list[str], deadline: float) -> None:
        cmd = [
            *jvm,
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.properties_path),
        ]
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
                f"{self.data_dir}:\n{_tail(proc.stdout)}" + _java_hint(proc.stdout)
            )

    def _launch(self, jvm: list[str]) -> None:
        cmd = [*jvm, f"-Xmx{self.heap}", "kafka.Kafka", str(self.properties_path)]
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
        return _tail(text, lines) or "(broker log is empty)"

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
            if _tcp_open(self.port) and _run_coroutine(
                functools.partial(_metadata_ok, bootstrap, probe_timeout, self.client_options())
            ):
                return


def _java_hint(output: str) -> str:
    if "UnsupportedClassVersionError" in output:
        return "\nKafka 4 needs Java 17 or newer (set JAVA_HOME or put it first on PATH)."
    return ""


# --------------------------------------------------------------------------- detached mode


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
    if state is None or not _tcp_open(int(state["port"])):
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
    with _file_lock(state_dir / ".lock"):
        running = status(state_dir)
        if running is not None:
            return running
        previous = _read_state(state_dir) or {}
        old_port, old_cport = previous.get("port"), previous.get("controller_port")
        if port is None and isinstance(old_port, int) and _port_is_free(old_port):
            port = old_port
        cport = old_cport if isinstance(old_cport, int) and _port_is_free(old_cport) else None
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
    with _file_lock(state_dir / ".lock"):
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
