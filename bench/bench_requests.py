"""Request-log collection figures (issue 15), each next to a baseline measured in the same run.

1. ACCESS LOGS: a large nginx log in our `log_format` (--lines of them, 4 upstreams, 2 hosts,
   a client IP each) is read, each phase in its own child process (so its peak RSS is its
   own), after a warm-up read that puts the file in the page cache:
   - `wc -l` (the floor: counting newlines in C) and Python's plain `for line in file`
     (the floor of any Python reader);
   - `Tailer.read` alone (complete lines and positions);
   - the collector: `RequestFollower` (tail, parse, map, hash the client IP with a secret)
     into `FileOutput` (JSON lines, what `--sink files` writes) and into `BufferedOutput` over
     a `DiskBuffer` (one fsync per batch: what `--sink kafka` writes before Kafka).
2. OTLP: batches of HTTP server spans (protobuf, as the OpenTelemetry SDK sends them) POSTed to
   an `OtlpReceiver` in a child process (with a `FileOutput`-like sink that only counts), from
   this process with aiohttp; baseline: the same POSTs to an aiohttp server in a child that
   answers 200 without decoding (the HTTP stack's limit). Spans/s and the receiver's RSS.

    python bench/bench_requests.py [--lines 500000] [--batches 200] [--spans 500]
        [--out bench/results/requests.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UPSTREAMS = ["10.20.0.11:8080", "10.20.0.12:8080", "10.20.0.17:8080", "10.20.0.16:8080"]
NODES = ["bog1-r1-n01", "bog1-r1-n02", "bog1-r1-n07", "bog1-r1-n06"]


def collector_text(log: Path) -> str:
    rules = "\n".join(
        f'    - {{match: "{u}", node_id: {n}}}' for u, n in zip(UPSTREAMS, NODES, strict=True)
    )
    return f"""requests:
  - kind: access_log
    path: {log}
request_mapping:
  nodes:
{rules}
  services:
    - {{service: checkout-api, host: "shop.*", route_prefix: /checkout}}
    - {{service: catalog-search, host: "shop.*"}}
    - {{service: auth, host: "login.*"}}
"""


def write_log(path: Path, lines: int) -> int:
    rng = random.Random(15)
    t0 = 1_772_452_800.0
    with path.open("w") as f:
        for i in range(lines):
            f.write(
                json.dumps(
                    {
                        "msec": f"{t0 + i * 0.002:.3f}",
                        "time_iso8601": "2026-03-02T12:00:00+00:00",
                        "request_id": f"{rng.getrandbits(128):032x}",
                        "status": rng.choice(["200", "200", "200", "201", "404", "503"]),
                        "request_time": f"{rng.uniform(0.002, 0.400):.3f}",
                        "upstream_response_time": f"{rng.uniform(0.001, 0.39):.3f}",
                        "upstream_addr": rng.choice(UPSTREAMS),
                        "bytes_sent": str(rng.randint(200, 20_000)),
                        "request_length": str(rng.randint(100, 3_000)),
                        "uri": rng.choice(["/checkout/cart", "/search?q=x", "/login"]),
                        "host": rng.choice(["shop.example.co", "login.example.co"]),
                        "remote_addr": f"203.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
    return path.stat().st_size


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ child phases (one each)


def phase_python(log: Path) -> dict[str, Any]:
    start = time.perf_counter()
    n = 0
    with log.open("rb") as f:
        for _ in f:
            n += 1
    return {"lines": n, "seconds": time.perf_counter() - start}


def phase_tailer(log: Path, work: Path) -> dict[str, Any]:
    from pipeline.collect.tail import Tailer

    tailer = Tailer(log, work / "tailer.pos")
    start = time.perf_counter()
    n = 0
    while batch := tailer.read(5_000):
        n += len(batch)
    return {"lines": n, "seconds": time.perf_counter() - start}


def phase_collector(log: Path, work: Path, sink: str) -> dict[str, Any]:
    from pipeline.collect.buffer import DiskBuffer
    from pipeline.collect.config import parse_collectors
    from pipeline.collect.requests import RequestFollower, RequestPrivacy
    from pipeline.collect.run import BufferedOutput, FileOutput
    from pipeline.collect.service import CollectorMetrics
    from pipeline.fleet import load_fleet
    from pipeline.lake.privacy import IpPolicy

    fleet = load_fleet()
    config = parse_collectors(collector_text(log), fleet)
    metrics = CollectorMetrics()
    follower = RequestFollower(
        config,
        fleet,
        work / f"state-{sink}",
        privacy=RequestPrivacy(IpPolicy(b"bench-secret")),
        metrics=metrics,
    )

    async def run(emit: Any) -> int:
        n = 0
        while handled := await follower.step(emit):
            n += handled
        return n

    start = time.perf_counter()
    if sink == "files":
        with FileOutput(work / "out") as output:
            n = asyncio.run(run(output))
    else:
        with DiskBuffer(work / "buffer", max_bytes=8 << 30, segment_bytes=64 << 20) as buffer:
            n = asyncio.run(run(BufferedOutput(buffer, lambda: None, metrics)))
    return {"lines": n, "seconds": time.perf_counter() - start}


def phase_otlp_server(kind: str, port_file: Path) -> None:
    """Serve until killed: the receiver (decode + map) or a bare aiohttp 200 (baseline)."""
    from aiohttp import web

    async def main() -> None:
        if kind == "bare":

            async def ok(request: web.Request) -> web.Response:
                await request.read()
                return web.Response(body=b"", content_type="application/x-protobuf")

            app = web.Application(client_max_size=64 << 20)
            app.router.add_post("/v1/traces", ok)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
        else:
            from pipeline.collect.access_log import AccessMapping, NodeRule, ServiceRule
            from pipeline.collect.otlp import OtlpReceiver
            from pipeline.fleet import load_fleet
            from pipeline.lake.privacy import IpPolicy

            counted = [0]

            async def accept(batch: Any) -> bool:
                counted[0] += len(batch.records)
                return True

            mapping = AccessMapping(
                nodes=[NodeRule(match=f"host-{i}", node_id=n) for i, n in enumerate(NODES)],
                services=[ServiceRule(service="checkout-api")],
            )
            receiver = OtlpReceiver(
                accept, mapping, load_fleet(), port=0, hash_ip=IpPolicy(b"bench-secret")
            )
            port = await receiver.start()
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(port_file)  # whole, or not there
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------ the parent


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def wc(log: Path) -> dict[str, Any]:
    start = time.perf_counter()
    out = subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True, check=True)
    return {"lines": int(out.stdout.split()[0]), "seconds": time.perf_counter() - start}


def otlp_payload(spans: int, batch: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    rng = random.Random(batch)

    def kv(key: str, value: str | int) -> KeyValue:
        v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        return KeyValue(key=key, value=v)

    t0 = 1_772_452_800_000_000_000 + batch * 1_000_000_000
    out = []
    for i in range(spans):
        start = t0 + i * 1_000_000
        out.append(
            Span(
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                name="GET /checkout",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randint(2, 400) * 1_000_000,
                attributes=[
                    kv("http.request.method", "GET"),
                    kv("http.route", "/checkout/{id}"),
                    kv("http.response.status_code", 200),
                    kv("server.address", "shop.example.co"),
                    kv("client.address", f"203.0.113.{i % 250}"),
                ],
            )
        )
    resource_ = Resource(attributes=[kv("host.name", f"host-{batch % 4}")])
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource_, scope_spans=[ScopeSpans(spans=out)])]
    )
    return request.SerializeToString()


def otlp_run(kind: str, work: Path, payloads: list[bytes]) -> dict[str, Any]:
    import aiohttp

    port_file = work / f"{kind}.port"
    port_file.unlink(missing_ok=True)  # a run before this one left its own
    proc = subprocess.Popen(
        [sys.executable, __file__, "--phase", "otlp-server", kind, str(port_file)]
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the {kind} OTLP server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/v1/traces"

        async def post_all() -> float:
            headers = {"Content-Type": "application/x-protobuf"}
            async with aiohttp.ClientSession() as session:
                for body in payloads[:5]:  # warm-up
                    async with session.post(url, data=body, headers=headers) as r:
                        assert r.status == 200, r.status
                start = time.perf_counter()
                sem = asyncio.Semaphore(4)  # four exporters at once

                async def one(body: bytes) -> None:
                    async with sem, session.post(url, data=body, headers=headers) as r:
                        assert r.status == 200, r.status
                        await r.read()

                await asyncio.gather(*(one(b) for b in payloads))
                return time.perf_counter() - start

        seconds = asyncio.run(post_all())
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        return {"seconds": seconds, "rss_mib": rss / 1024}
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--spans", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "requests.json")
    parser.add_argument("--phase", nargs="+")
    args = parser.parse_args()

    if args.phase:
        name, *rest = args.phase
        if name == "otlp-server":
            phase_otlp_server(rest[0], Path(rest[1]))
            return 0
        log, work = Path(rest[0]), Path(rest[1])
        result = {
            "python": lambda: phase_python(log),
            "tailer": lambda: phase_tailer(log, work),
            "files": lambda: phase_collector(log, work, "files"),
            "buffer": lambda: phase_collector(log, work, "buffer"),
        }[name]()
        result["rss_mib"] = _rss_mib()
        print(json.dumps(result))
        return 0

    console = Console()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-requests-") as tmp:
        work = Path(tmp)
        log = work / "access.log"
        size = write_log(log, args.lines)
        phase_python(log)  # warm the page cache
        floor = child("python", str(log), str(work))
        runs = [
            ("wc -l (C, newlines only)", {**wc(log), "rss_mib": None}),
            ("Python `for line in file`", floor),
            ("Tailer.read (lines + positions)", child("tailer", str(log), str(work))),
            ("collector -> FileOutput (JSON lines)", child("files", str(log), str(work))),
            ("collector -> DiskBuffer (fsync per batch)", child("buffer", str(log), str(work))),
            ("Python `for line in file` (again)", child("python", str(log), str(work))),
        ]
        base = (
            floor["lines"] / floor["seconds"] + runs[-1][1]["lines"] / runs[-1][1]["seconds"]
        ) / 2
        table = Table(
            title=f"access log: {args.lines:,} nginx JSON lines, {size / 2**20:,.0f} MiB "
            "(page cache warm; one child process each)"
        )
        for col in ("reader", "lines", "s", "lines/s", "x Python loop", "peak RSS MiB"):
            table.add_column(col, justify="left" if col == "reader" else "right")
        for name, r in runs:
            rate = r["lines"] / r["seconds"]
            rss = "-" if r["rss_mib"] is None else f"{r['rss_mib']:,.0f}"
            table.add_row(
                name,
                f"{r['lines']:,}",
                f"{r['seconds']:.2f}",
                f"{rate:,.0f}",
                f"{rate / base:.2f}",
                rss,
            )
            rows.append({"reader": name, **r, "lines_per_s": rate})
        console.print(table)

        payloads = [otlp_payload(args.spans, b) for b in range(args.batches)]
        spans = args.spans * args.batches
        bare = otlp_run("bare", work, payloads)
        received = otlp_run("receiver", work, payloads)
        bare2 = otlp_run("bare", work, payloads)
        bare_rate = spans / ((bare["seconds"] + bare2["seconds"]) / 2)
        table = Table(
            title=f"OTLP/HTTP: {args.batches} protobuf batches of {args.spans} server spans, "
            "4 concurrent POSTs"
        )
        for col in ("server", "spans", "s", "spans/s", "x bare aiohttp", "peak RSS MiB"):
            table.add_column(col, justify="left" if col == "server" else "right")
        for name, r in (
            ("bare aiohttp 200 (no decode)", bare),
            ("OtlpReceiver (decode, map, hash IP)", received),
            ("bare aiohttp 200 (again)", bare2),
        ):
            rate = spans / r["seconds"]
            table.add_row(
                name,
                f"{spans:,}",
                f"{r['seconds']:.2f}",
                f"{rate:,.0f}",
                f"{rate / bare_rate:.2f}",
                f"{r['rss_mib']:,.0f}",
            )
            rows.append({"server": name, "spans": spans, **r, "spans_per_s": rate})
        console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"lines": args.lines, "rows": rows}, indent=2) + "\n")
    console.print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
