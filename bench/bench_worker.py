"""Throughput and memory of ONE stream worker process, next to baselines from the same run.

1. The simulator fills fresh topics with N request-log-heavy events (rps scale 1.0).
2. RAW CONSUME LIMIT: aiokafka `getmany` + msgspec decoding of the request-log topic, no other
   work (bench_kafka.py's measurement) - the ceiling any Python consumer on this machine has.
3. The worker (`microdc worker`, a child process) consumes everything from the
   start: request-log events/s from its first consumed record until every input partition is
   consumed and applied (consumer lag 0, nothing held by the merge), read from its /health and
   /metrics. Its RSS is sampled along the way: it should follow open minutes and keys, not events.
4. Baselines that explain the result: the stream core alone in-process (the embedded runner, no
   Kafka) over the first records, and a stock Faust per-event agent that does nothing.

    python bench/bench_worker.py [--events 2000000] [--store memory://|rocksdb://]
        [--bootstrap HOST:PORT] [--faust-baseline 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from pipeline.contracts import ALL_TOPICS
from pipeline.contracts.topics import REQUEST_LOG
from pipeline.embedded.driver import EmbeddedPipeline, from_envelopes
from pipeline.fleet import load_fleet
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.localkafka import BOOTSTRAP_ENV, LocalKafka, free_ports
from pipeline.simulate import SimConfig, Simulator, simulate_to_kafka

sys.path.insert(0, str(Path(__file__).parent))
from bench_kafka import SECURITY, consume

START = datetime(2026, 3, 2, 15, tzinfo=UTC)  # late morning in Bogotá and Mexico: near peak
EVENTS_PER_MINUTE = 42_000  # at rps scale 1.0 from START on, on average (demo fleet)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process `pid` has used so far (NaN if unknown)."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counter(metrics: str, name: str, label: str | None = None) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name) and (label is None or label in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_worker(
    bootstrap: str,
    prefix: str,
    store: str,
    total_events: int,
    n_req: int,
    checkpoints: int,
    broker_pid: int | None,
    source: Path | None = None,
) -> dict[str, Any]:
    """Start a worker, time it over the whole backlog, sample RSS; return the figures.

    `source`: a checkout of another revision whose `pipeline` package the worker runs (a
    baseline from `git worktree`); default, this one."""
    port = free_ports(1)[0]
    state = Path(tempfile.mkdtemp(prefix="microdc-bench-worker-"))
    log = (state / "worker.log").open("wb")
    cmd = [
        sys.executable, "-m", "pipeline", "worker", "--bootstrap", bootstrap,
        "--topic-prefix", prefix, "--web-port", str(port), "--data-dir", str(state / "data"),
        "--store", store, "--loglevel", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)} if source is not None else None
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=source, env=env)
    base = f"http://127.0.0.1:{port}"
    samples: list[tuple[float, float, float]] = []  # (events in, request-log in, RSS MiB)
    marks = [total_events * (i + 1) / checkpoints for i in range(checkpoints)]
    try:
        started = None
        deadline = time.monotonic() + 60 + total_events / 5_000
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {state / 'worker.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not finish in time; see {state / 'worker.log'}")
            try:
                metrics = get(f"{base}/metrics").decode()
            except OSError:
                time.sleep(0.05)
                continue
            events = counter(metrics, "microdc_events_in_total")
            req = counter(metrics, "microdc_events_in_total", f'{REQUEST_LOG.name}"')
            if started is None and events > 0:
                started = time.perf_counter()
                cpu0 = cpu_s(proc.pid), cpu_s(broker_pid)
            while marks and events >= marks[0]:
                marks.pop(0)
                samples.append((events, req, rss_mb(proc.pid)))
            if req >= n_req:
                health = json.loads(get(f"{base}/health"))
                stages = health["stages"]
                idle = len(stages) == 5 and all(
                    p["buffered"] == 0 and not any(p["consumer_lag"].values()) for p in stages
                )
                if idle:
                    finished = time.perf_counter()
                    cpu1 = cpu_s(proc.pid), cpu_s(broker_pid)
                    break
            time.sleep(0.2)  # polling costs the worker CPU: keep it rare
        assert started is not None
        busy = counter(metrics, "microdc_batch_seconds_total")
        rss_end = rss_mb(proc.pid)
        open_minutes = counter(get(f"{base}/metrics").decode(), "microdc_open_minutes")
        return {
            "seconds": finished - started,
            "busy_seconds": busy,
            "events": events,
            "request_events": req,
            "samples": samples,
            "rss_end_mb": rss_end,
            "open_minutes": open_minutes,
            "outputs": counter(metrics, "microdc_outputs_total"),
            "worker_cpu_share": (cpu1[0] - cpu0[0]) / (finished - started),
            "broker_cpu_share": (cpu1[1] - cpu0[1]) / (finished - started),
        }
    finally:
        stop_worker(proc, log)


def stop_worker(proc: subprocess.Popen[Any], log: Any = None) -> None:
    """SIGTERM a worker child, SIGKILL it if it has not exited within 30 s; close its log."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if log is not None:
        log.close()


FAUST_AGENT = textwrap.dedent(
    """
    import sys, time, faust
    from pipeline.config import Settings
    from pipeline.kafka_security import KafkaSecurity, faust_credentials
    bootstrap, topic, n, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    credentials = faust_credentials(KafkaSecurity.from_settings(Settings()))  # as SECURITY
    app = faust.App(f"bench-stock-{time.time_ns()}", broker=f"kafka://{bootstrap}",
                    broker_credentials=credentials,
                    store="memory://", web_port=port, web_bind="127.0.0.1",
                    topic_disable_leader=True, datadir=sys.argv[5],
                    worker_redirect_stdouts=False)
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    seen, t0 = [0], [0.0]
    @app.agent(source)
    async def count(stream):
        async for _ in stream:
            if not seen[0]:
                t0[0] = time.perf_counter()
            seen[0] += 1
            if seen[0] == n:
                sys.__stdout__.write(f"RATE {n / (time.perf_counter() - t0[0])}\\n")
                sys.__stdout__.flush()
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
    """
)


def stock_faust_rate(bootstrap: str, topic: str, n: int) -> float:
    """Events/s of a stock Faust agent that only counts (Faust's per-message path)."""
    state = Path(tempfile.mkdtemp(prefix="microdc-bench-faust-"))
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [sys.executable, "-c", FAUST_AGENT, bootstrap, topic, str(n), str(port), str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RATE"):
                return float(line.split()[1])
        raise RuntimeError("stock Faust agent exited without a rate")
    finally:
        stop_worker(proc)


def embedded_rate(fleet: Any, config: SimConfig, limit: int) -> tuple[int, float]:
    """The stream core in-process over the first `limit` simulated records (no Kafka)."""
    messages = list(itertools.islice(from_envelopes(Simulator(fleet, config)), limit))
    pipeline = EmbeddedPipeline(fleet)
    started = time.perf_counter()
    pipeline.feed(messages)
    return len(messages), time.perf_counter() - started


def sim_config(events: int) -> SimConfig:
    """Peak-hour simulated minutes enough for about `events` input events."""
    minutes = max(3, -(-events // EVENTS_PER_MINUTE))
    return SimConfig(start=START, minutes=minutes, seed=42, rps_scale=1.0)


def broker_for(bootstrap: str | None) -> tuple[str, LocalKafka | None]:
    """The given broker, or a fresh local one (the caller stops it)."""
    if bootstrap:
        return bootstrap, None
    broker = LocalKafka(Path(tempfile.mkdtemp(prefix="microdc-bench-")))
    return broker.start(), broker


def produce(
    bootstrap: str, prefix: str, topics: Any, fleet: Any, events: int, console: Console
) -> tuple[Any, SimConfig]:
    """Create `topics` under `prefix` and simulate about `events` events of `fleet` into them:
    (the SimResult, the SimConfig)."""
    config = sim_config(events)
    ensure_topics_sync(bootstrap, [t.with_prefix(prefix) for t in topics], security=SECURITY)
    console.print(f"producing {config.minutes} simulated minutes (~{events:,} events)...")
    produced = simulate_to_kafka(fleet, config, bootstrap, topic_prefix=prefix, security=SECURITY)
    return produced, config


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000, help="input events (2M)")
    parser.add_argument("--checkpoints", type=int, default=8, help="RSS samples (8)")
    parser.add_argument("--store", default="memory://", choices=("memory://", "rocksdb://"))
    parser.add_argument(
        "--faust-baseline",
        type=int,
        default=100_000,
        help="events for the stock Faust agent baseline (0 skips it)",
    )
    parser.add_argument("--bootstrap", default=os.environ.get(BOOTSTRAP_ENV))
    parser.add_argument("--out", type=Path, default=Path("bench/results/worker.json"))
    args = parser.parse_args()
    console = Console()
    fleet = load_fleet()
    bootstrap, broker = broker_for(args.bootstrap)
    try:
        prefix = f"benchw{uuid4().hex[:8]}."
        produced, config = produce(bootstrap, prefix, ALL_TOPICS, fleet, args.events, console)
        total, n_req = produced.stats.emitted, produced.stats.valid[REQUEST_LOG.name]
        topic = f"{prefix}{REQUEST_LOG.name}"

        # The VM's speed drifts (other tenants): the raw limit is measured before and after the
        # worker and averaged.
        raw_before = asyncio.run(consume(bootstrap, topic, REQUEST_LOG.partitions, n_req, True))
        core_n, core_s = embedded_rate(fleet, config, min(total, 500_000))
        console.print("running the worker...")
        worker = run_worker(
            bootstrap,
            prefix,
            args.store,
            total,
            n_req,
            args.checkpoints,
            broker.pid if broker is not None else None,
        )
        raw_after = asyncio.run(consume(bootstrap, topic, REQUEST_LOG.partitions, n_req, True))
        raw_s = (raw_before + raw_after) / 2
        stock = (
            stock_faust_rate(bootstrap, topic, min(args.faust_baseline, n_req))
            if args.faust_baseline
            else None
        )
    finally:
        if broker is not None:
            broker.stop()

    raw_rate = n_req / raw_s
    rows: list[tuple[str, int, float, float | None]] = [
        ("getmany + msgspec decode = RAW CONSUME LIMIT (baseline)", n_req, raw_rate, 1.0),
        ("stream core in-process, no Kafka (embedded runner)", core_n, core_n / core_s, None),
        (
            f"ONE worker ({args.store}), request-log events/s, end to end",
            n_req,
            n_req / worker["seconds"],
            None,
        ),
        ("  same, all input events/s", total, total / worker["seconds"], None),
    ]
    if stock is not None:
        rows.append(("stock Faust per-event agent doing nothing", args.faust_baseline, stock, None))
    table = Table(title=f"Stream worker vs raw consume, {total:,} events, {os.cpu_count()} cores")
    for col, right in (
        ("measurement", False),
        ("events", True),
        ("events/s", True),
        ("vs raw limit", True),
    ):
        table.add_column(col, justify="right" if right else "left")
    results = []
    for name, n, rate, _ in rows:
        ratio = rate / raw_rate
        table.add_row(name, f"{n:,}", f"{rate:,.0f}", f"{ratio:.2f}×")
        results.append(
            {
                "measurement": name.strip(),
                "events": n,
                "events_per_s": rate,
                "ratio_to_raw_limit": ratio,
            }
        )
    console.print(table)
    console.print(
        f"raw consume limit before / after the worker: {n_req / raw_before:,.0f} / "
        f"{n_req / raw_after:,.0f} events/s"
    )
    busy = worker["busy_seconds"] / worker["seconds"]
    console.print(
        f"worker: {worker['seconds']:.1f} s wall, {busy:.0%} of it inside batch processing; "
        f"{worker['outputs']:,.0f} output records; {worker['open_minutes']:.0f} open minutes "
        "at the end"
    )
    console.print(
        f"CPU while the worker ran: worker process {worker['worker_cpu_share']:.0%} of a core, "
        f"broker JVM {worker['broker_cpu_share']:.0%} (machine: {os.cpu_count()} cores)"
    )
    rss = Table(title="worker RSS vs events consumed")
    for col in ("events consumed", "request-log", "RSS MiB"):
        rss.add_column(col, justify="right")
    for events, req, mb in worker["samples"]:
        rss.add_row(f"{events:,.0f}", f"{req:,.0f}", f"{mb:,.0f}")
    rss.add_row("end (idle)", "", f"{worker['rss_end_mb']:,.0f}")
    console.print(rss)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"results": results, "worker": worker, "argv": sys.argv[1:]}
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
