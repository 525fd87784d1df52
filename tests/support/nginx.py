"""Debian's nginx and logrotate as real programs for the access-log tests, on loopback.

`Upstream` is an HTTP server of the test (stdlib, in a thread) that answers GET, with a status
and a delay per path, and records the `X-Request-Id` of every request it served. `Nginx` writes
a self-contained config into a folder of the test - pid file, error log, temp paths, access log,
all under it; never /etc/nginx, /var/log/nginx or /run/nginx.pid, and never the system service -
with the pasted `NGINX_LOG_FORMAT` of `pipeline.collect.access_log`, one `server` per host
proxying round robin to an `upstream` block, and `add_header X-Request-Id $request_id always`
so a client sees each request's id (nginx generates it; the upstream gets it too). `logrotate`
runs the real `/usr/sbin/logrotate` on just that log, forced, with its own state file.

nginx runs as a master and one worker (as in production: the worker writes the access log and
reopens it itself on SIGUSR1, after the master). The master is started in a session of its own
and dies with the test process (PR_SET_PDEATHSIG); the worker would not (nginx workers outlive a
killed master), so a watchdog child kills the whole process group once the test process is
gone. A missing nginx or logrotate fails the test saying `make collect-deps`, never skips.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import pytest

from pipeline.collect.access_log import NGINX_LOG_FORMAT
from pipeline.localkafka import free_ports
from tests.support.worker_procs import _die_with_parent, log_tail, stop_child, wait_for

NGINX = "/usr/sbin/nginx"
LOGROTATE = "/usr/sbin/logrotate"
HOW_TO_INSTALL = (
    "run make collect-deps (Debian's nginx and logrotate: apt-get install -y nginx logrotate)"
)

# Reads stdin to its end (the test process closed it, or died), then SIGKILLs nginx's group.
_WATCHDOG = """\
import os, signal, sys
pgid = int(sys.argv[1])
sys.stdin.buffer.read()
try:
    os.killpg(pgid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def require(path: str) -> str:
    """`path` if it is an executable, else fail the test saying how to install it."""
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: {HOW_TO_INSTALL}", pytrace=False)
    return path


# -- the upstream ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """How an `Upstream` answers one path."""

    status: int = 200
    delay_s: float = 0.0


class Upstream:
    """An HTTP server on 127.0.0.1 (a free port) in a thread; a context manager.

    GET answers `routes[path]` (default 200 at once) with a small body naming the server.
    `served` lists (path, X-Request-Id) of every request, in order.
    """

    def __init__(self, name: str = "upstream", routes: Mapping[str, Route] | None = None) -> None:
        self.name = name
        self.routes = dict(routes or {})
        self.served: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                route = upstream.routes.get(path, Route())
                with upstream._lock:
                    upstream.served.append((path, self.headers.get("X-Request-Id")))
                if route.delay_s:
                    time.sleep(route.delay_s)
                body = f"{upstream.name} {path}\n".encode()
                self.send_response(route.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: nginx's access log is what the tests read

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"upstream-{name}", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """As nginx's `$upstream_addr` names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.served)

    def ids(self) -> set[str]:
        """The request ids nginx forwarded to this server."""
        with self._lock:
            return {rid for _, rid in self.served if rid}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Upstream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- nginx -------------------------------------------------------------------------------------


def _addresses(upstreams: Sequence[Upstream | str]) -> list[str]:
    return [u.address if isinstance(u, Upstream) else u for u in upstreams]


def nginx_conf(
    root: Path, port: int, hosts: Mapping[str, Sequence[Upstream | str]], *, workers: int = 1
) -> str:
    """A self-contained nginx.conf: everything nginx writes is under `root`."""
    if not hosts:
        raise ValueError("nginx needs at least one host")
    # As root the master switches its workers to `user` (default nobody), who could neither
    # enter a test's 0700 tmp folder nor reopen the logs on SIGUSR1: stay root. As anyone else
    # nginx cannot switch users and the directive would only warn.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    upstream_blocks, servers = [], []
    for i, (host, backends) in enumerate(hosts.items()):
        members = "".join(f"        server {a};\n" for a in _addresses(backends))
        upstream_blocks.append(f"    upstream upstream_{i} {{\n{members}    }}\n")
        default = " default_server" if i == 0 else ""
        servers.append(
            f"""\
    server {{
        listen 127.0.0.1:{port}{default};
        server_name {host};
        add_header X-Request-Id $request_id always;
        location / {{
            proxy_pass http://upstream_{i};
            proxy_set_header Host $host;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
"""
        )
    temp = root / "tmp"
    return f"""\
# written by tests/support/nginx.py: nothing here touches /etc/nginx, /var/log/nginx or /run
{user}worker_processes {workers};
pid {root}/nginx.pid;
lock_file {root}/nginx.lock;
error_log {root}/error.log notice;
events {{
    worker_connections 256;
}}
http {{
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type text/plain;
    {NGINX_LOG_FORMAT}
    access_log {root}/logs/access.log microdc;
{"".join(upstream_blocks)}{"".join(servers)}}}
"""


class Nginx:
    """Debian's nginx serving `hosts` (server name -> its upstreams, round robin) on
    127.0.0.1:`port`, its access log in `log_path` (`NGINX_LOG_FORMAT`, unbuffered).

    A context manager: `__enter__` starts it and waits until its port accepts connections,
    `__exit__` stops it. `reopen()` sends SIGUSR1 (what logrotate's postrotate does)."""

    def __init__(
        self, root: Path, hosts: Mapping[str, Sequence[Upstream | str]], *, workers: int = 1
    ) -> None:
        self.root = root
        self.hosts = dict(hosts)
        self.workers = workers
        self.conf_path = root / "nginx.conf"
        self.error_log = root / "error.log"
        self.output = root / "nginx.out"  # its stdout and stderr (before the error log opens)
        self.log_path = root / "logs" / "access.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- life --------------------------------------------------------------------------------
    def start(self, timeout: float = 15) -> Nginx:
        binary = require(NGINX)
        for d in (self.root, self.root / "logs", self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").chmod(0o755)  # logrotate refuses group/world-writable folders
        for attempt in range(3):  # a free port may be taken between the probe and the bind
            self.port = free_ports(1)[0]
            self.conf_path.write_text(
                nginx_conf(self.root, self.port, self.hosts, workers=self.workers)
            )
            self._spawn(binary)
            try:
                wait_for(self._accepts, timeout, f"nginx to listen on 127.0.0.1:{self.port}")
                return self
            except AssertionError:
                self.stop()
                if attempt == 2 or "Address already in use" not in self.tail():
                    raise AssertionError(f"nginx did not start: {self.tail()}") from None
        raise AssertionError("unreachable")

    def _spawn(self, binary: str) -> None:
        args = [
            binary,
            "-e", str(self.error_log),
            "-p", str(self.root),
            "-c", str(self.conf_path),
            "-g", "daemon off;",
        ]  # fmt: skip
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: the watchdog kills it whole
                preexec_fn=_die_with_parent(),
            )
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.proc.pid)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # not hit by a Ctrl-C meant for pytest
        )

    def _accepts(self) -> bool:
        self.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True  # connected, no request sent: nothing is logged
        except OSError:
            return False

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"nginx exited ({code}): {self.tail()}")

    @property
    def pid(self) -> int:
        """The master's pid (what logrotate's postrotate signals)."""
        assert self.proc is not None, "nginx is not started"
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM the master (it stops its worker), then make sure the group is gone."""
        if self.proc is not None:
            stop_child(self.proc)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # a worker left behind
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait(10)
            if self._watchdog.stdin is not None:
                self._watchdog.stdin.close()
            self._watchdog = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs --------------------------------------------------------------------------------
    def reopens(self) -> int:
        """How many times the worker(s) reopened the logs (from the error log)."""
        pattern = re.compile(r"\[notice\] (\d+)#\d+: reopening logs$", re.MULTILINE)
        with contextlib.suppress(OSError):
            text = self.error_log.read_text(errors="replace")
            return sum(1 for m in pattern.finditer(text) if int(m.group(1)) != self.pid)
        return 0

    def reopen(self, *, wait: bool = False, timeout: float = 10) -> None:
        """SIGUSR1: nginx reopens its log files (creating them if missing). With `wait`,
        return once every worker has reopened: later requests are logged to the new file."""
        self.check_alive()
        before = self.reopens()
        os.kill(self.pid, signal.SIGUSR1)
        if wait:
            wait_for(
                lambda: self.reopens() >= before + self.workers,
                timeout,
                f"nginx's workers to reopen their logs: {self.tail()}",
                every=0.02,
            )

    def wait_logged(self, request_id: str, timeout: float = 10) -> None:
        """Until the current access log has the line of `request_id` (the client may see the
        response a moment before nginx writes its log line)."""
        needle = f'"request_id":"{request_id}"'

        def logged() -> bool:
            with contextlib.suppress(FileNotFoundError):
                return needle in self.log_path.read_text(errors="replace")
            return False

        wait_for(logged, timeout, f"nginx to log request {request_id}", every=0.02)

    def tail(self) -> str:
        return f"{log_tail(self.error_log)}\n{log_tail(self.output)}".strip()


# -- clients -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request as its client saw it."""

    request_id: str
    host: str
    path: str
    status: int
    body: bytes = field(repr=False)


def send_requests(url: str, host: str, paths: Sequence[str], n: int) -> list[Sent]:
    """`n` GETs to `url` with `Host: host`, cycling through `paths`, one after another on one
    keep-alive connection; each answer's `X-Request-Id` (nginx's `$request_id`) and status."""
    if not paths:
        raise ValueError("no paths")
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    out: list[Sent] = []
    try:
        for i in range(n):
            path = paths[i % len(paths)]
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read()
            rid = resp.getheader("X-Request-Id")
            if not rid:
                raise AssertionError(f"GET {host}{path}: no X-Request-Id in {resp.getheaders()}")
            out.append(Sent(rid, host, path, resp.status, body))
    finally:
        conn.close()
    return out


# -- logrotate ---------------------------------------------------------------------------------


def logrotate_conf(
    log_path: Path,
    *,
    mode: Literal["rename", "copytruncate"],
    postrotate: str | None = None,
    compress: bool = False,
    rotate: int = 5,
) -> str:
    """A logrotate config for just `log_path`."""
    lines = [f"{log_path} {{", f"    rotate {rotate}", "    missingok"]
    # delaycompress: the newest rotated file stays plain, as a reader may still be at it
    lines += ["    compress", "    delaycompress"] if compress else ["    nocompress"]
    if mode == "copytruncate":
        lines.append("    copytruncate")
    elif mode == "rename":
        lines.append("    create")  # same mode and owner as the renamed file
    else:
        raise ValueError(f"mode {mode!r}")
    if postrotate:
        lines += ["    sharedscripts", "    postrotate", f"        {postrotate}", "    endscript"]
    return "\n".join([*lines, "}", ""])


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _first_line(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.readline()
    except FileNotFoundError:
        return b""


def logrotate(
    log_path: Path,
    state_dir: Path,
    *,
    mode: Literal["rename", "copytruncate"],
    postrotate: str | None = None,
    compress: bool = False,
    rotate: int = 5,
) -> None:
    """Rotate `log_path` now with the real logrotate (`-f`, its state in `state_dir/status`):
    `rename` renames it to `<log>.1` (older ones shift) and creates a new one, then runs
    `postrotate` (e.g. `kill -USR1 <nginx pid>`); `copytruncate` copies it to `<log>.1` and
    truncates it in place. Returns once logrotate exited 0 having rotated; else raises with its
    output (it exits 0 when it ignores a config it finds insecure, hence the check)."""
    binary = require(LOGROTATE)
    state_dir.mkdir(parents=True, exist_ok=True)
    conf = state_dir / "logrotate.conf"
    conf.write_text(
        logrotate_conf(log_path, mode=mode, postrotate=postrotate, compress=compress, rotate=rotate)
    )
    # logrotate ignores a config writable by group or others, and skips a log whose folder is
    # writable by them (unless told `su`): 0644 and 0755 are what it accepts, as root or not
    conf.chmod(0o644)
    first = log_path.with_name(log_path.name + ".1")
    log_before, head_before = _inode(log_path), _first_line(log_path)
    result = subprocess.run(
        [binary, "--force", "--state", str(state_dir / "status"), str(conf)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    stderr = result.stderr.decode(errors="replace")
    said = f"logrotate exited {result.returncode}: {stderr.strip()}\nconfig:\n{conf.read_text()}"
    if result.returncode != 0 or "error:" in stderr:
        raise AssertionError(said)
    if mode == "rename":  # the log's inode lives on as <log>.1
        rotated = log_before is not None and _inode(first) == log_before
    else:  # <log>.1 is a copy of the log (inodes are no proof: a freed one is reused at once)
        rotated = _inode(log_path) == log_before and first.exists()
        if head_before:
            rotated = rotated and _first_line(first) == head_before
            rotated = rotated and _first_line(log_path) != head_before
    if not rotated:
        raise AssertionError(f"logrotate did not rotate {log_path} ({mode}): {said}")
