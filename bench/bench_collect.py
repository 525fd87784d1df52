"""The collector's figures (issue 14), each next to a baseline measured in the same run.

1. POLL THROUGHPUT AND CPU: a `Collector` in THIS process polls N sources back to back
   (`poll()` in a loop for --seconds; the poll interval plays no part) served by real local
   servers in OTHER processes, so this process's CPU (`time.process_time`) is the collector's
   own: DMTF's public-rackmount1 mockup served by `tests.support.redfish_server` (one aiohttp
   server per child process answering on many ports: every source is its own BMC origin, with
   its own session and connection pool) and Debian's node_exporter over a static fake host
   (`tests.support.exporters`; each source its own URL). Baseline: the same URLs fetched raw
   with aiohttp (same concurrency, same sessions, no parsing) - the HTTP client's own limit,
   run before and after the collector and pooled (the machine is shared and noisy).
2. KAFKA SIDE: `BufferedOutput` (encode + `DiskBuffer.append`, one fsync per poll) and
   `BufferedKafkaSender` draining M node samples to a real broker, beside the raw
   `DiskBuffer.append` and aiokafka's raw `send` of the same records (same producer settings).
3. KAFKA DOWN: the collector's Kafka output (`BufferedOutput` + `BufferedKafkaSender`) polls
   100 nodes while the broker is down: 10 minutes at 15 s (40 polls, 4,000 samples) compressed
   into back-to-back polls (--minutes M: really M wall-clock minutes at 15 s), then --hours
   more of the same fleet fed straight to `BufferedOutput`. RSS against records and bytes on
   disk, then the time to drain the backlog once Kafka is back.

Part 3 runs first (while this process's heap is young) and part 1 last (the broker stopped);
the tables print in order at the end.

    python bench/bench_collect.py [--sources 100,300] [--seconds 6] [--samples 50000]
        [--minutes 0] [--hours 2] [--bootstrap HOST:PORT] [--out bench/results/collect.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from pipeline.collect.buffer import DiskBuffer, Record
from pipeline.collect.config import CollectorConfig, NodeSources, PrometheusSource, RedfishSource
from pipeline.collect.redfish import RedfishClient, SessionAuth
from pipeline.collect.run import BufferedOutput
from pipeline.collect.sender import BufferedKafkaSender
from pipeline.collect.service import Collector, CollectorMetrics, PollResult
from pipeline.collect.sources import Reader, reader
from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.records import NodeSample
from pipeline.contracts.topics import DEAD_LETTERS, FACILITY_TELEMETRY, NODE_TELEMETRY
from pipeline.fleet import load_fleet
from pipeline.fleet.model import Fleet
from pipeline.kafka_admin import ensure_topics
from pipeline.kafka_security import client_kwargs
from pipeline.localkafka import BOOTSTRAP_ENV, LocalKafka, free_ports

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support
from bench_kafka import SECURITY
from bench_worker import cpu_s, rss_mb

from tests.support.exporters import NODE_EXPORTER, Daemon, FakeHost, start_node_exporter
from tests.support.redfish_server import RedfishServer
from tests.support.worker_procs import _die_with_parent

MOCKUP = "public-rackmount1"
USER_ENV, PASSWORD_ENV = "BENCH_BMC_USER", "BENCH_BMC_PASSWORD"
#: tests.support.redfish_server's default credentials.
BMC_USER, BMC_PASSWORD = "admin", "s3cret-pw"
POLL_INTERVAL_S = 15.0
#: `microdc collect --sink kafka` defaults: --buffer-mb 512, segments of max_bytes // 8.
BUFFER_BYTES, SEGMENT_BYTES = 512 * 1024 * 1024, 64 * 1024 * 1024
FLEET_NODES = 100  # part 3: the fleet whose outage is simulated
#: node_exporter's --web.max-requests default: more parallel scrapes get HTTP 503.
EXPORTER_MAX_REQUESTS = 40
_encode = msgspec.json.Encoder().encode

# A child process: one RedfishServer (tests.support) answering on `ports` loopback ports. The
# extra ports are more TCPSites on the same aiohttp runner (so each source is its own origin);
# its request log is bounded (it would grow by every GET of the run). Prints the ports as a
# JSON list, serves until its stdin closes.
REDFISH_CHILD = textwrap.dedent(
    """
    import asyncio, collections, json, sys
    from pathlib import Path
    from aiohttp import web
    from tests.support.redfish_server import RedfishServer
    mockup, workdir, ports = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    server = RedfishServer(mockup, workdir)
    server.requests = collections.deque(maxlen=1)
    server.start()
    async def more(n):
        for _ in range(n):
            await web.TCPSite(server._runner, "127.0.0.1", 0).start()
        return [address[1] for address in server._runner.addresses]
    got = asyncio.run_coroutine_threadsafe(more(ports - 1), server._loop).result(120)
    print(json.dumps(got), flush=True)
    sys.stdin.read()
    server.stop()
    """
)


# --------------------------------------------------------------------------- servers


class RedfishFarm:
    """`procs` child processes serving the mockup on `ports` loopback ports in all."""

    def __init__(self, workdir: Path, ports: int, procs: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.ports: list[int] = []
        repo = Path(__file__).resolve().parent.parent
        for i in range(procs):
            share = ports // procs + (1 if i < ports % procs else 0)
            proc = subprocess.Popen(
                [sys.executable, "-c", REDFISH_CHILD, MOCKUP, str(workdir / f"bmc{i}"), str(share)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=repo,
                text=True,
                preexec_fn=_die_with_parent(),
            )
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("a Redfish server child exited before serving")
            self.ports += json.loads(line)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_exporters(workdir: Path, count: int) -> list[Daemon]:
    """`count` node_exporters over one static fake host (2 CPUs, a RAPL package, eth0)."""
    host = FakeHost(workdir / "host")
    host.zone("intel-rapl:0", "package-0", 1_000_000_000, 262_143_328_850)
    host.set_cpus([{"user": 2_500, "idle": 7_500}, {"system": 2_500, "idle": 7_500}])
    host.set_nics({"lo": (1_000, 1_000), "eth0": (5_000_000, 9_000_000)})
    daemons: list[Daemon] = []
    try:
        for i in range(count):
            daemons.append(start_node_exporter(host, workdir / f"node-exporter-{i}.log"))
    except BaseException:
        for daemon in daemons:
            daemon.stop()
        raise
    return daemons


# --------------------------------------------------------------------------- part 1


@dataclass
class SourceSet:
    """What N sources are: the collector file and the same URLs for the raw baseline."""

    kind: str
    config: CollectorConfig
    fleet: Fleet
    redfish_urls: list[str] = field(default_factory=list)
    metrics_urls: list[str] = field(default_factory=list)

    @property
    def sources(self) -> int:
        return len(self.redfish_urls) + len(self.metrics_urls)


def fleet_of(fleet: Fleet, count: int) -> Fleet:
    """`fleet` with at least `count` nodes: copies of its nodes under new ids past its own."""
    nodes = list(fleet.nodes)
    copy = 1
    while len(nodes) < count:
        nodes += [
            msgspec.structs.replace(n, node_id=f"{n.node_id}-c{copy}")
            for n in fleet.nodes[: count - len(nodes)]
        ]
        copy += 1
    return msgspec.structs.replace(fleet, nodes=nodes)


def source_set(kind: str, sources: int, fleet: Fleet, bmcs: list[int], exporters: list[int]):
    """`sources` sources of `kind`: redfish, node_exporter, or both per node (half the nodes),
    round-robin over the BMC ports and exporters given."""
    per_node = 2 if kind == "both" else 1
    nodes = fleet_of(fleet, sources // per_node).nodes[: sources // per_node]
    entries, redfish_urls, metrics_urls = [], [], []
    for i, node in enumerate(nodes):
        node_sources: list[RedfishSource | PrometheusSource] = []
        if kind in ("redfish", "both"):
            url = f"http://127.0.0.1:{bmcs[i % len(bmcs)]}"
            redfish_urls.append(url)
            node_sources.append(
                RedfishSource(
                    url=url,
                    chassis="1U",
                    auth="session",
                    username_env=USER_ENV,
                    password_env=PASSWORD_ENV,
                )
            )
        if kind in ("node_exporter", "both"):
            # node_exporter ignores the query: one URL (a counter key) per source
            url = f"http://127.0.0.1:{exporters[i % len(exporters)]}/metrics?node={node.node_id}"
            metrics_urls.append(url)
            node_sources.append(PrometheusSource(url=url))
        entries.append(NodeSources(node.node_id, node_sources))
    config = CollectorConfig(poll_interval_s=POLL_INTERVAL_S, nodes=entries)
    return SourceSet(kind, config, fleet_of(fleet, len(nodes)), redfish_urls, metrics_urls)


def redfish_paths(workdir: Path) -> list[str]:
    """The GETs one steady-state read of chassis 1U makes (discovery and login done), as a
    RedfishServer in this process sees them."""
    server = RedfishServer(MOCKUP, workdir).start()

    async def second_read() -> list[str]:
        async with RedfishClient(server.url, auth=SessionAuth(BMC_USER, BMC_PASSWORD)) as client:
            await client.read("1U")
            server.requests.clear()
            await client.read("1U")
            return [path for method, path in server.requests if method == "GET"]

    try:
        return asyncio.run(second_read())
    finally:
        server.stop()


class Counted:
    """`sources.reader`, counting the readings its readers return."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self, source: Any) -> Reader:
        inner = reader(source)

        async def read() -> list[Any]:
            got = await inner.read()
            self.readings += len(got)
            return got

        return Reader(inner.label, read, inner.close)


@dataclass
class Run:
    """One timed loop: rounds (polls), GETs, readings and samples; wall and CPU seconds."""

    rounds: int = 0
    gets: int = 0
    readings: int = 0
    samples: int = 0
    failures: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    servers_cpu_s: float = 0.0

    def __add__(self, other: Run) -> Run:
        """Both runs pooled (their rates weighted by their durations)."""
        return Run(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


async def timed(
    seconds: float, one_round: Callable[[], Awaitable[tuple[int, int, int]]], pids: list[int]
) -> Run:
    """Call `one_round` back to back for `seconds`; it returns (GETs, readings, samples)."""
    run = Run()
    servers0 = sum(cpu_s(pid) for pid in pids)
    cpu0, started = time.process_time(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        gets, readings, samples = await one_round()
        run.rounds += 1
        run.gets, run.readings, run.samples = (
            run.gets + gets,
            run.readings + readings,
            run.samples + samples,
        )
    run.wall_s = time.perf_counter() - started
    run.cpu_s = time.process_time() - cpu0
    run.servers_cpu_s = sum(cpu_s(pid) for pid in pids) - servers0
    return run


async def collector_run(sset: SourceSet, seconds: float, gets_per_poll: int, pids: list[int]):
    counted = Counted()
    collector = Collector(sset.config, sset.fleet, counted)
    try:
        await collector.poll()  # log in, discover, prime the counters: not timed
        before = counted.readings

        async def one() -> tuple[int, int, int]:
            nonlocal before
            result = await collector.poll()
            readings, before = counted.readings - before, counted.readings
            return gets_per_poll, readings, len(result.samples)

        run = await timed(seconds, one, pids)
        run.failures = int(
            sum(
                s.value
                for m in collector.metrics.failures.collect()
                for s in m.samples
                if s.name.endswith("_total")
            )
        )
        return run
    finally:
        await collector.close()


async def raw_run(sset: SourceSet, seconds: float, paths: list[str], pids: list[int]) -> Run:
    """The same URLs with aiohttp alone: per source its own session (a Redfish one logged in
    like the collector's), the same GETs in the same order, bodies read and not parsed."""
    redfish = [aiohttp.ClientSession() for _ in sset.redfish_urls]
    metrics = [aiohttp.ClientSession() for _ in sset.metrics_urls]
    login = {"UserName": BMC_USER, "Password": BMC_PASSWORD}
    headers: list[dict[str, str]] = []
    try:
        for http, url in zip(redfish, sset.redfish_urls, strict=True):
            async with http.post(f"{url}/redfish/v1/SessionService/Sessions", json=login) as r:
                token = r.headers["X-Auth-Token"]
            headers.append({"Accept": "application/json", "OData-Version": "4.0"})
            headers[-1]["X-Auth-Token"] = token
        accept = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}

        failures = 0

        async def bmc(http: aiohttp.ClientSession, url: str, h: dict[str, str]) -> int:
            nonlocal failures
            for path in paths:
                async with http.get(url + path, headers=h) as resp:
                    await resp.read()
                    failures += resp.status != 200
            return len(paths)

        async def scrape(http: aiohttp.ClientSession, url: str) -> int:
            nonlocal failures
            async with http.get(url, headers=accept) as resp:
                await resp.read()
                failures += resp.status != 200
            return 1

        async def one() -> tuple[int, int, int]:
            jobs = [bmc(*t) for t in zip(redfish, sset.redfish_urls, headers, strict=True)]
            jobs += [scrape(*t) for t in zip(metrics, sset.metrics_urls, strict=True)]
            return sum(await asyncio.gather(*jobs)), 0, 0

        await one()  # connections opened: not timed
        failures = 0
        run = await timed(seconds, one, pids)
        run.failures = failures
        return run
    finally:
        for http in redfish + metrics:
            await http.close()


def poll_rows(args: argparse.Namespace, workdir: Path, console: Console) -> list[dict[str, Any]]:
    fleet = load_fleet()
    counts = [int(n) for n in args.sources.split(",")]
    paths = redfish_paths(workdir / "calibrate")
    kinds = ["redfish", "node_exporter", "both"]
    if not shutil.which(NODE_EXPORTER):
        console.print(f"[yellow]{NODE_EXPORTER} is missing: Redfish sources only[/]")
        kinds = ["redfish"]
    farm = RedfishFarm(workdir / "bmcs", max(counts), args.server_procs)
    # enough exporters that none gets more parallel scrapes than it serves (else 503s)
    wanted = max(args.exporters, -(-max(counts) // EXPORTER_MAX_REQUESTS))
    exporters = start_exporters(workdir, wanted) if len(kinds) > 1 else []
    pids = farm.pids + [d.proc.pid for d in exporters]
    rows = []
    try:
        for n in counts:
            for kind in kinds:
                sset = source_set(kind, n, fleet, farm.ports, [d.port for d in exporters])
                gets = len(paths) * len(sset.redfish_urls) + len(sset.metrics_urls)
                console.print(f"polling {sset.sources} {kind} sources for {args.seconds:g} s...")
                # the machine is shared: the baseline runs before and after, pooled
                before = asyncio.run(raw_run(sset, args.seconds, paths, pids))
                col = asyncio.run(collector_run(sset, args.seconds, gets, pids))
                raw = before + asyncio.run(raw_run(sset, args.seconds, paths, pids))
                for name, run in (("collector", col), ("raw aiohttp GETs", raw)):
                    rows.append(poll_row(kind, sset.sources, name, run, raw))
    finally:
        farm.stop()
        for daemon in exporters:
            daemon.stop()
    return rows


def poll_row(kind: str, sources: int, name: str, run: Run, raw: Run) -> dict[str, Any]:
    return {
        "sources": sources,
        "kind": kind,
        "measurement": name,
        "polls": run.rounds,
        "polls_per_s": run.rounds / run.wall_s,
        "gets_per_s": run.gets / run.wall_s,
        "readings_per_s": run.readings / run.wall_s,
        "samples_per_s": run.samples / run.wall_s,
        "cpu_s_per_poll_of_100": run.cpu_s / run.rounds * 100 / sources,
        "cpu_cores": run.cpu_s / run.wall_s,
        "servers_cpu_cores": run.servers_cpu_s / run.wall_s,
        "failures": run.failures,
        "ratio_to_raw": (run.rounds / run.wall_s) / (raw.rounds / raw.wall_s),
    }


# --------------------------------------------------------------------------- part 2


def node_samples(fleet: Fleet, count: int, start: datetime) -> list[NodeSample]:
    """`count` node samples of 100 nodes polled every 15 s from `start` (like the collector's)."""
    nodes = fleet_of(fleet, FLEET_NODES).nodes[:FLEET_NODES]
    out = []
    for i in range(count):
        node, poll = nodes[i % len(nodes)], i // len(nodes)
        at = start + timedelta(seconds=POLL_INTERVAL_S * poll)
        out.append(
            NodeSample(
                observed_at=at,
                site_id=node.site_id,
                rack_id=node.rack_id,
                node_id=node.node_id,
                interval_s=POLL_INTERVAL_S,
                power_w=374.0 + i % 7,
                cpu_util=0.25,
                inlet_temp_c=24.8,
                outlet_temp_c=40.5,
                net_rx_bytes=150_000,
                net_tx_bytes=300_000,
            )
        )
    return out


def producer(bootstrap: str) -> AIOKafkaProducer:
    """An aiokafka producer set up as `BufferedKafkaSender._connect` sets up its own."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        request_timeout_ms=30_000,
        retry_backoff_ms=500,
        **client_kwargs(SECURITY),
    )


async def fresh_topic(bootstrap: str) -> str:
    """A new topic prefix, its node-telemetry topic created."""
    prefix = f"benchc{uuid4().hex[:8]}."
    await ensure_topics(bootstrap, [NODE_TELEMETRY.with_prefix(prefix)], security=SECURITY)
    return prefix


async def raw_send(bootstrap: str, records: list[Record], in_rounds: int | None) -> float:
    """Seconds for aiokafka to deliver `records` to fresh topics: all in flight at once, or
    `in_rounds` at a time (each round awaited, as the sender does, without its disk)."""
    prefix = await fresh_topic(bootstrap)
    topic, parts = prefix + NODE_TELEMETRY.name, NODE_TELEMETRY.partitions
    prod = producer(bootstrap)
    await prod.start()
    try:
        started = time.perf_counter()
        step = in_rounds or len(records)
        for at in range(0, len(records), step):
            futures = [
                await prod.send(topic, r.value, key=r.key, partition=partition_for(r.key, parts))
                for r in records[at : at + step]
                if r.key is not None
            ]
            await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await prod.stop()


async def kafka_rows(bootstrap: str, samples: list[NodeSample], workdir: Path):
    """Appends and sends of the same records: (rows, the drain seconds of the sender)."""
    records = [Record(NODE_TELEMETRY.name, NODE_TELEMETRY.key_of(s), _encode(s)) for s in samples]
    polls = [PollResult(samples=samples[at : at + 100]) for at in range(0, len(samples), 100)]
    rows: list[tuple[str, int, float, float]] = []  # (name, records, seconds, CPU seconds)

    with DiskBuffer(workdir / "raw", max_bytes=BUFFER_BYTES, segment_bytes=SEGMENT_BYTES) as raw:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for at in range(0, len(records), 100):
            raw.append(records[at : at + 100])
        rows.append(
            (
                "DiskBuffer.append, pre-encoded, 100/batch (baseline)",
                len(records),
                time.perf_counter() - t0,
                time.process_time() - cpu0,
            )
        )

    buffer = DiskBuffer(workdir / "drain", max_bytes=BUFFER_BYTES, segment_bytes=SEGMENT_BYTES)
    with buffer:
        output = BufferedOutput(buffer, lambda: None, CollectorMetrics())
        cpu0, t0 = time.process_time(), time.perf_counter()
        for poll in polls:
            await output(poll)
        rows.append(
            (
                "BufferedOutput: encode + append, a poll of 100/batch",
                len(records),
                time.perf_counter() - t0,
                time.process_time() - cpu0,
            )
        )

        # The VM's speed drifts (other tenants): the raw limit is measured before and after.
        cpu0 = time.process_time()
        before = await raw_send(bootstrap, records, None)
        rows.append(
            (
                "aiokafka send, all in flight = RAW PRODUCE LIMIT (before)",
                len(records),
                before,
                time.process_time() - cpu0,
            )
        )
        cpu0 = time.process_time()
        rounds = await raw_send(bootstrap, records, 500)
        rows.append(
            (
                "aiokafka send, 500 per awaited round, no disk",
                len(records),
                rounds,
                time.process_time() - cpu0,
            )
        )
        sender = BufferedKafkaSender(buffer, bootstrap, topic_prefix=await fresh_topic(bootstrap))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await sender.start()
        drained = await sender.drained(timeout_s=600)
        seconds = time.perf_counter() - t0
        await sender.stop()
        if not drained:
            raise RuntimeError(f"the sender did not drain {len(records):,} records in 600 s")
        rows.append(
            (
                "BufferedKafkaSender drains the DiskBuffer (500/round)",
                len(records),
                seconds,
                time.process_time() - cpu0,
            )
        )
        cpu0 = time.process_time()
        after = await raw_send(bootstrap, records, None)
        rows.append(
            (
                "aiokafka send, all in flight = RAW PRODUCE LIMIT (after)",
                len(records),
                after,
                time.process_time() - cpu0,
            )
        )
    raw_rate = len(records) / ((before + after) / 2)
    return [
        {
            "measurement": name,
            "records": n,
            "seconds": secs,
            "records_per_s": n / secs,
            "cpu_cores": cpu / secs,
            "ratio_to_raw_produce": n / secs / raw_rate
            if "send" in name or "Sender" in name
            else None,
        }
        for name, n, secs, cpu in rows
    ]


# --------------------------------------------------------------------------- part 3


@dataclass
class Outage:
    mode: str
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    sender_state: str = ""
    send_failures: int = 0
    backlog: int = 0
    broker_start_s: float | None = None
    reconnect_s: float = 0.0
    drain_s: float = 0.0
    buffer_refused: int = 0


def checkpoint(outage: Outage, label: str, minutes: float, buffer: DiskBuffer) -> None:
    outage.checkpoints.append(
        {
            "at": label,
            "fleet_minutes": minutes,
            "records_buffered": buffer.pending_records,
            "disk_bytes": buffer.disk_bytes,
            "rss_mib": rss_mb(os.getpid()),
        }
    )


async def outage_run(
    args: argparse.Namespace,
    sset: SourceSet,
    broker: LocalKafka | None,
    bootstrap: str,
    workdir: Path,
) -> Outage:
    """Poll `sset` into the Kafka output while the broker is down, then bring it back."""
    prefix = f"benchc{uuid4().hex[:8]}."
    specs = [NODE_TELEMETRY, FACILITY_TELEMETRY, DEAD_LETTERS]
    await ensure_topics(bootstrap, [s.with_prefix(prefix) for s in specs], security=SECURITY)
    buffer = DiskBuffer(workdir / "outage", max_bytes=BUFFER_BYTES, segment_bytes=SEGMENT_BYTES)
    mode = f"{args.minutes:g} wall-clock min" if args.minutes else "compressed"
    outage = Outage(mode)
    down_at = bootstrap if broker is not None else f"127.0.0.1:{free_ports(1)[0]}"
    sender = BufferedKafkaSender(buffer, down_at, topic_prefix=prefix, security=SECURITY)
    metrics = CollectorMetrics()
    output = BufferedOutput(buffer, sender.notify, metrics)
    collector = Collector(sset.config, sset.fleet, reader, metrics=metrics)
    with buffer:
        await sender.start()
        try:
            await output(await collector.poll())  # the first poll primes the counters
            if broker is not None:  # a crash, once that first poll is delivered
                if not await sender.drained(timeout_s=60):
                    raise RuntimeError("the first poll did not reach Kafka in 60 s")
                broker.kill()
            checkpoint(outage, "Kafka down", 0, buffer)
            await poll_while_down(args, collector, output, outage, buffer)
            if args.hours:
                await feed_backlog(args.hours, sset, output, outage, buffer)
            outage.sender_state, outage.send_failures = sender.state, sender.send_failures
            outage.backlog = buffer.pending_records
            outage.buffer_refused = buffer.refused_records
            sender = await bring_back(broker, bootstrap, sender, buffer, prefix, outage)
        finally:
            await collector.close()
            await sender.stop()
    return outage


async def poll_while_down(
    args: argparse.Namespace,
    collector: Collector,
    output: BufferedOutput,
    outage: Outage,
    buffer: DiskBuffer,
) -> None:
    """10 minutes of 15 s polls back to back (40), or --minutes of real ones."""
    polls = 0

    async def emit(result: PollResult) -> None:
        nonlocal polls
        await output(result)
        polls += 1
        if polls % 4 == 0:  # each fleet minute
            checkpoint(outage, f"poll {polls}", polls * POLL_INTERVAL_S / 60, buffer)

    if args.minutes:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(args.minutes * 60, stop.set)
        await collector.run(emit, stop)
    else:
        for _ in range(40):
            await emit(await collector.poll())


async def feed_backlog(
    hours: float, sset: SourceSet, output: BufferedOutput, outage: Outage, buffer: DiskBuffer
) -> None:
    """`hours` more of the fleet's polls straight to `BufferedOutput` (no HTTP): one poll of
    len(nodes) samples every 15 s of event time."""
    polls = round(hours * 3600 / POLL_INTERVAL_S)
    start = datetime.now(UTC)
    samples = node_samples(sset.fleet, len(sset.config.nodes), start)
    minutes0 = outage.checkpoints[-1]["fleet_minutes"]
    for poll in range(1, polls + 1):
        at = start + timedelta(seconds=POLL_INTERVAL_S * poll)
        await output(
            PollResult(samples=[msgspec.structs.replace(s, observed_at=at) for s in samples])
        )
        if poll % 240 == 0 or poll == polls:  # each fleet hour
            minutes = minutes0 + poll * POLL_INTERVAL_S / 60
            checkpoint(outage, f"+{poll} polls fed", minutes, buffer)


async def bring_back(
    broker: LocalKafka | None,
    bootstrap: str,
    sender: BufferedKafkaSender,
    buffer: DiskBuffer,
    prefix: str,
    outage: Outage,
) -> BufferedKafkaSender:
    """Kafka back: the local broker restarted on its ports and data (the same sender
    reconnects after its backoff), or - a broker of --bootstrap - a new sender on the buffer
    pointed at it (a collector restarted against the live broker). Times the drain."""
    if broker is not None:
        t0 = time.perf_counter()
        # on this thread, blocking the loop: the JVM dies with the thread that started it
        # (PR_SET_PDEATHSIG), and a to_thread worker ends with this asyncio.run
        broker.start()
        outage.broker_start_s = time.perf_counter() - t0
    else:
        await sender.stop()
        sender = BufferedKafkaSender(buffer, bootstrap, topic_prefix=prefix, security=SECURITY)
        await sender.start()
    up, sent0 = time.perf_counter(), sender.records_sent
    deadline = up + 600
    while sender.records_sent == sent0 and buffer.pending_records:
        if time.perf_counter() > deadline:
            raise RuntimeError("the sender sent nothing in 600 s after Kafka came back")
        await asyncio.sleep(0.02)
    outage.reconnect_s = time.perf_counter() - up
    if not await sender.drained(timeout_s=600):
        raise RuntimeError(f"{buffer.pending_records:,} records still buffered after 600 s")
    outage.drain_s = time.perf_counter() - up
    return sender


# --------------------------------------------------------------------------- tables


def print_poll_table(rows: list[dict[str, Any]], seconds: float, console: Console) -> None:
    table = Table(
        title=f"1. Collector polls back to back vs raw GETs of the same URLs (baseline), "
        f"{seconds:g} s each, servers in other processes, {os.cpu_count()} cores"
    )
    cols = (
        "sources", "kind", "run", "polls/s", "GETs/s", "readings/s", "samples/s",
        "CPU s per poll of 100 src", "cores, this process", "cores, servers", "vs raw",
        "failed reads",
    )  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("kind", "measurement") else "right")
    for r in rows:
        raw = r["measurement"] != "collector"
        table.add_row(
            f"{r['sources']}",
            r["kind"],
            "raw GETs" if raw else "collector",
            f"{r['polls_per_s']:.2f}",
            f"{r['gets_per_s']:,.0f}",
            "" if raw else f"{r['readings_per_s']:,.0f}",
            "" if raw else f"{r['samples_per_s']:,.0f}",
            f"{r['cpu_s_per_poll_of_100']:.3f}",
            f"{r['cpu_cores']:.2f}",
            f"{r['servers_cpu_cores']:.2f}",
            f"{r['ratio_to_raw']:.2f}×",
            f"{r['failures']:,}",
        )
    console.print(table)
    for r in rows:
        if r["measurement"] == "collector" and r["sources"] == rows[0]["sources"]:
            per_source = r["cpu_s_per_poll_of_100"] / 100
            console.print(
                f"{r['kind']}: one core of this machine's CPU time polls "
                f"~{POLL_INTERVAL_S / per_source:,.0f} such sources every {POLL_INTERVAL_S:g} s "
                f"({r['cpu_s_per_poll_of_100'] * 1000:.0f} ms CPU per poll of 100)"
            )


def print_kafka_table(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(
        title="2. Collector → Kafka: disk buffer and sender vs raw aiokafka, same records"
    )
    for col in ("measurement", "records", "seconds", "records/s", "CPU, cores", "vs raw"):
        table.add_column(col, justify="left" if col == "measurement" else "right")
    for r in rows:
        ratio = r["ratio_to_raw_produce"]
        table.add_row(
            r["measurement"],
            f"{r['records']:,}",
            f"{r['seconds']:.2f}",
            f"{r['records_per_s']:,.0f}",
            f"{r['cpu_cores']:.2f}",
            "" if ratio is None else f"{ratio:.2f}×",
        )
    console.print(table)
    appended = rows[0]
    console.print(
        f"DiskBuffer.append: {appended['records_per_s'] / 100:,.0f} appends/s of 100 records, "
        "each one fsync (this VM's disk acknowledges fsyncs fast; a spinning disk would not)"
    )


def print_outage_table(outage: Outage, nodes: int, console: Console) -> None:
    table = Table(
        title=f"3. Kafka down: {nodes} nodes (Redfish) at 15 s, {outage.mode}; "
        "RSS of the collector process"
    )
    for col in (
        "checkpoint",
        "fleet minutes",
        "records buffered",
        "disk MiB",
        "RSS MiB",
        "RSS Δ MiB",
    ):
        table.add_column(col, justify="left" if col == "checkpoint" else "right")
    rss0 = outage.checkpoints[0]["rss_mib"]
    for c in outage.checkpoints:
        table.add_row(
            c["at"],
            f"{c['fleet_minutes']:.0f}",
            f"{c['records_buffered']:,}",
            f"{c['disk_bytes'] / 2**20:.1f}",
            f"{c['rss_mib']:.0f}",
            f"{c['rss_mib'] - rss0:+.1f}",
        )
    console.print(table)
    start = (
        f"broker restart {outage.broker_start_s:.1f} s, then "
        if outage.broker_start_s is not None
        else "new sender on the live broker, "
    )
    console.print(
        f"sender while down: state {outage.sender_state}, {outage.send_failures} failed "
        f"attempts; buffer refused {outage.buffer_refused} records"
    )
    console.print(
        f"Kafka back: {start}first delivery after {outage.reconnect_s:.1f} s, backlog of "
        f"{outage.backlog:,} records drained in {outage.drain_s:.1f} s "
        f"({outage.backlog / outage.drain_s:,.0f} records/s including the reconnect wait)"
    )


# --------------------------------------------------------------------------- main


def broker_for(bootstrap: str | None, workdir: Path) -> tuple[str, LocalKafka | None]:
    if bootstrap:
        return bootstrap, None
    broker = LocalKafka(workdir / "kafka")
    return broker.start(), broker


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sources", default="100,300", help="sources per run (100,300)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per poll run (6)")
    parser.add_argument("--samples", type=int, default=50_000, help="records for part 2")
    parser.add_argument("--minutes", type=float, default=0, help="part 3 in real minutes (0)")
    parser.add_argument("--hours", type=float, default=2.0, help="part 3 backlog fed after (2)")
    parser.add_argument("--server-procs", type=int, default=2, help="Redfish server processes")
    parser.add_argument(
        "--exporters", type=int, default=2, help="node_exporter processes (at least 1 per 40)"
    )
    parser.add_argument("--bootstrap", default=os.environ.get(BOOTSTRAP_ENV))
    parser.add_argument("--out", type=Path, default=Path("bench/results/collect.json"))
    args = parser.parse_args()
    console = Console(width=max(Console().width, 150))  # the tables are wide
    workdir = Path(tempfile.mkdtemp(prefix="microdc-bench-collect-"))
    log_file = workdir / "collector.log"  # the collector logs as `microdc collect` (INFO)
    logging.basicConfig(filename=log_file, level=logging.INFO)

    os.environ[USER_ENV], os.environ[PASSWORD_ENV] = BMC_USER, BMC_PASSWORD

    # Part 3 first, while this process's heap is young (RSS never gives memory back: after
    # parts 1 and 2 a growth could hide in free heap); part 1 last, with the broker stopped.
    console.print("starting Kafka..." if not args.bootstrap else f"Kafka at {args.bootstrap}")
    bootstrap, broker = broker_for(args.bootstrap, workdir)
    farm: RedfishFarm | None = None
    try:
        farm = RedfishFarm(workdir / "bmcs-outage", FLEET_NODES, 1)
        sset = source_set("redfish", FLEET_NODES, load_fleet(), farm.ports, [])
        console.print(f"Kafka down: polling {FLEET_NODES} nodes ({args.minutes or 'compressed'})")
        outage = asyncio.run(outage_run(args, sset, broker, bootstrap, workdir))
        farm.stop()
        farm = None
        console.print(f"Kafka side: {args.samples:,} records...")
        samples = node_samples(load_fleet(), args.samples, datetime(2026, 12, 4, tzinfo=UTC))
        kafka = asyncio.run(kafka_rows(bootstrap, samples, workdir))
    finally:
        if farm is not None:
            farm.stop()
        if broker is not None:
            broker.stop()
    polls = poll_rows(args, workdir, console)

    print_poll_table(polls, args.seconds, console)
    print_kafka_table(kafka, console)
    print_outage_table(outage, FLEET_NODES, console)
    warnings = sum(
        " WARNING " in line or line.startswith("WARNING")
        for line in log_file.read_text().splitlines()
    )
    console.print(f"collector log: {log_file} ({warnings} warnings)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "poll": polls,
        "kafka": kafka,
        "outage": vars(outage),
        "broker_startup_s": broker.startup_seconds if broker is not None else None,
        "cores": os.cpu_count(),
        "argv": sys.argv[1:],
    }
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
