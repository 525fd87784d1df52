"""`microdc collect` following Debian's real nginx: every request once, through the real
logrotate (rename + USR1, copytruncate), a collector killed and restarted, and `--once` runs;
client IPs hashed before anything is written.

nginx proxies two hosts to four upstreams of the test (one per node); the collector file maps
each upstream address to its node and the hosts and routes to services. The collector runs as
the real command in its own process (`python -m pipeline collect --sink files`), so a restart
is a process restart and its positions are only what it committed to `--state`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.lake.privacy import IP_SECRET_ENV, IpPolicy
from tests.support.nginx import Nginx, Route, Sent, Upstream, logrotate, send_requests
from tests.support.worker_procs import log_tail, stop_child, wait_for

NODES = ("bog1-r1-n01", "bog1-r1-n02", "bog1-r1-n06", "bog1-r1-n07")
ROUTES = {"/checkout/fail": Route(status=503)}
SECRET = "collector-test-secret"


def collector_text(log: Path, upstreams: list[Upstream]) -> str:
    rules = "\n".join(
        f'    - {{match: "{u.address}", node_id: {n}}}'
        for u, n in zip(upstreams, NODES, strict=True)
    )
    return f"""poll_interval_s: 5
requests:
  - kind: access_log
    path: {log}
request_mapping:
  nodes:
{rules}
  services:
    - {{service: checkout-api, host: "shop.example.test", route_prefix: /checkout}}
    - {{service: catalog-search, host: "shop.example.test"}}
    - {{service: auth, host: "login.example.test"}}
"""


class CollectorProcess:
    """`microdc collect --sink files` over the collector file, as a child process."""

    def __init__(self, tmp: Path, collectors: Path) -> None:
        self.tmp, self.collectors = tmp, collectors
        self.out, self.state = tmp / "out", tmp / "state"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def _args(self, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "pipeline", "collect", "--collectors", str(self.collectors),
            "--sink", "files", "--out", str(self.out), "--state", str(self.state), *extra,
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        return {**os.environ, IP_SECRET_ENV: SECRET}

    def once(self) -> None:
        done = subprocess.run(
            self._args("--once"), env=self._env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        self.runs += 1
        log = (self.tmp / f"collect-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            self._args(), env=self._env(), stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye, only what it committed counts."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        assert self.proc is not None
        stop_child(self.proc)
        assert self.proc.returncode == 0, log_tail(self.tmp / f"collect-{self.runs}.log")

    def ids(self) -> list[str]:
        path = self.out / "mdc.request-log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]

    def records(self) -> list[dict[str, object]]:
        path = self.out / "mdc.request-log.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def wait_for(self, sent: list[Sent], what: str) -> None:
        want = {s.request_id for s in sent}
        wait_for(lambda: want <= set(self.ids()), 30, f"the collector to write {what}")


@pytest.mark.timeout(300)
def test_every_request_once_through_rotations_and_restarts(tmp_path: Path) -> None:
    upstreams = [Upstream(f"n{i}", ROUTES) for i in range(4)]
    try:
        with Nginx(
            tmp_path / "nginx",
            {"shop.example.test": upstreams[:3], "login.example.test": upstreams[3:]},
        ) as nginx:
            log = nginx.log_path
            collectors = tmp_path / "collectors.yaml"
            collectors.write_text(collector_text(log, upstreams))
            c = CollectorProcess(tmp_path, collectors)
            rotate_state = tmp_path / "logrotate"
            usr1 = f"kill -USR1 {nginx.pid}"
            sent: list[Sent] = []

            def send(n: int) -> None:
                sent.extend(
                    send_requests(
                        nginx.url,
                        "shop.example.test",
                        ["/checkout/cart", "/search", "/checkout/fail"],
                        n,
                    )
                )
                sent.extend(send_requests(nginx.url, "login.example.test", ["/login"], n // 3))
                nginx.wait_logged(sent[-1].request_id)

            # the service, running: a rename rotation, then killed (SIGKILL) mid-stream
            c.start()
            send(30)
            c.wait_for(sent, "the first requests")
            logrotate(log, rotate_state, mode="rename", postrotate=usr1)
            send(30)
            c.wait_for(sent, "the requests after the rename")
            c.kill()
            send(15)  # logged while no collector runs
            logrotate(log, rotate_state, mode="copytruncate")  # ... and rotated meanwhile
            send(15)
            c.start()
            c.wait_for(sent, "what was logged and rotated while it was down")
            c.stop()  # SIGTERM: a clean stop
            # --once runs (a cron job): each reads to the end and commits
            send(9)
            c.once()
            logrotate(log, rotate_state, mode="rename", postrotate=usr1)
            send(9)
            c.once()
            c.once()  # nothing new: nothing written
    finally:
        for u in upstreams:
            u.close()

    ids = c.ids()
    repeats = [i for i, n in Counter(ids).items() if n > 1]
    assert not repeats, f"{len(repeats)} requests written twice"
    assert sorted(ids) == sorted(s.request_id for s in sent), "every request, once"

    # mapped by the rules; what each upstream served is the node the record names
    by_id = {r["request_id"]: r for r in c.records()}
    node_of = {u.address: n for u, n in zip(upstreams, NODES, strict=True)}
    served = {rid: node_of[u.address] for u in upstreams for rid in u.ids()}
    for s in sent:
        record = by_id[s.request_id]
        assert record["node_id"] == served[s.request_id]
        assert record["service"] == (
            "auth"
            if s.host.startswith("login")
            else "checkout-api"
            if s.path.startswith("/checkout")
            else "catalog-search"
        )
        assert record["status"] == s.status
        assert record["site_id"] == "bog1"

    # client IPs: the lake's keyed hash, never the address, in the output or the state
    hashed = IpPolicy(SECRET.encode())("127.0.0.1")
    assert {r["client_ip_hmac"] for r in by_id.values()} == {hashed}
    assert all(r.get("client_ip") is None for r in by_id.values())
    for path in [*c.out.iterdir(), *c.state.iterdir()]:
        assert b"127.0.0.1" not in path.read_bytes(), path


@pytest.mark.timeout(120)
def test_the_service_serves_otlp_and_polls_the_grid_beside_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `collect()`: an access log, an OTLP receiver fed by the real OpenTelemetry SDK and an
    Electricity Maps source on a local server, all into the same output; client IPs hashed."""
    import asyncio

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    from pipeline.collect.config import parse_collectors
    from pipeline.collect.run import FileOutput, collect
    from pipeline.fleet import load_fleet
    from tests.support.grid_server import grid_server

    monkeypatch.setenv(IP_SECRET_ENV, SECRET)
    log = tmp_path / "access.log"
    log.write_text(
        json.dumps(
            {
                "msec": "1772452805.123",
                "request_id": "from-the-log",
                "status": "200",
                "request_time": "0.020",
                "upstream_addr": "10.0.0.1:80",
                "bytes_sent": "10",
                "request_length": "10",
                "uri": "/checkout",
                "host": "shop.example.test",
                "remote_addr": "198.51.100.7",
            }
        )
        + "\n"
    )
    fleet = load_fleet()
    with grid_server() as grid:
        monkeypatch.setenv("TEST_EM_KEY", grid.em_key)
        config = parse_collectors(
            f"""requests:
  - {{kind: access_log, path: {log}}}
  - {{kind: otlp, port: 0}}
request_mapping:
  nodes:
    - {{match: "10.0.0.1:*", node_id: bog1-r1-n01}}
    - {{match: web-01, node_id: bog1-r1-n02}}
  services:
    - {{service: checkout-api, route_prefix: /checkout}}
grid:
  - {{kind: electricity_maps, zone: CO, url: "{grid.url}", api_key_env: TEST_EM_KEY}}
""",
            fleet,
        )

        async def run() -> None:
            stop = asyncio.Event()
            ports: list[int] = []
            with FileOutput(tmp_path / "out") as output:
                task = asyncio.create_task(
                    collect(
                        config,
                        fleet,
                        output,
                        state_dir=tmp_path / "state",
                        stop=stop,
                        on_ready=ports.extend,
                    )
                )
                await wait_async(lambda: bool(ports), "the receiver to listen")
                exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{ports[0]}/v1/traces")
                provider = TracerProvider(resource=Resource.create({"host.name": "web-01"}))
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                tracer = provider.get_tracer("test")
                t0 = 1_772_452_800_000_000_000

                def send() -> None:
                    for i in range(3):
                        span = tracer.start_span(
                            "GET /checkout/{id}",
                            kind=SpanKind.SERVER,
                            start_time=t0 + i * 1_000_000_000,
                            attributes={
                                "http.route": "/checkout/{id}",
                                "http.response.status_code": 200,
                                "server.address": "shop.example.test",
                                "client.address": "198.51.100.8",
                            },
                        )
                        span.end(end_time=t0 + i * 1_000_000_000 + 25_000_000)
                    provider.shutdown()

                await asyncio.to_thread(send)
                out = tmp_path / "out"
                await wait_async(
                    lambda: (
                        len(lines(out / "mdc.request-log.jsonl")) == 4
                        and bool(lines(out / "mdc.grid-intensity.jsonl"))
                    ),
                    "the log line, the spans and the grid value",
                )
                stop.set()
                await task

        asyncio.run(run())
    out = tmp_path / "out"
    requests = [json.loads(line) for line in lines(out / "mdc.request-log.jsonl")]
    assert sorted(r["node_id"] for r in requests) == ["bog1-r1-n01"] + ["bog1-r1-n02"] * 3
    spans = [r for r in requests if r["node_id"] == "bog1-r1-n02"]
    assert [r["latency_ms"] for r in spans] == [25.0, 25.0, 25.0]
    assert {r["client_ip_hmac"] for r in spans} == {IpPolicy(SECRET.encode())("198.51.100.8")}
    (grid_value, *_) = [json.loads(line) for line in lines(out / "mdc.grid-intensity.jsonl")]
    assert grid_value["zone"] == "CO" and grid_value["source"] == "electricitymaps"
    for path in out.iterdir():
        assert b"198.51.100" not in path.read_bytes(), path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_async(done: Callable[[], bool], what: str, timeout: float = 30) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_the_state_folder_is_made_only_for_access_logs(tmp_path: Path) -> None:
    """A collector file without access logs leaves no `--state` folder behind (the tests'
    runs had left out/collect-state in the checkout). A process of its own: a successful
    collect sets up logging, which must not stay on for the in-process tests after it."""
    collectors = tmp_path / "collectors.yaml"
    state = tmp_path / "state"

    def collect_once() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "collect", "--collectors", str(collectors),
             "--once", "--out", str(tmp_path / "out"), "--state", str(state)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    collectors.write_text("grid: []\n")
    collect_once()
    assert not state.exists()
    log = tmp_path / "access.log"
    log.write_text("")
    collectors.write_text(
        f"requests:\n  - {{kind: access_log, path: {log}}}\nrequest_mapping:\n"
        "  nodes: [{match: '*', node_id: bog1-r1-n01}]\n  services: [{service: auth}]\n"
    )
    collect_once()
    assert state.is_dir()
