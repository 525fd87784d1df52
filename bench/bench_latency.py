"""How soon SLO burn rates and page alerts come out of a worker, with hourly grid values and with
the grid feed silent, for this revision and a baseline in the same run.

A live feed produces one simulated minute every `--pace` seconds of wall clock (from 14:00, so
the hourly grid values of 14:00 and 15:00 are in it). Requests of checkout-api at bog1 fail
from 14:10 to 14:20 (status 503): a fast-burn outage that must page. For each minute, the
latency is the wall-clock time from the moment the feed flushed that minute's last record to
the moment its first `mdc.slo-burn` row was in the broker; for the page, from the flush of the
minute the alert is stamped with to its arrival. The 120 s allowed lateness costs every
revision about three simulated minutes (the watermark must pass the minute's end plus 120 s):
figures are also given in simulated minutes, which do not depend on the pace.

Then the memory of holding back: the same feed without request logs (a dead shipper), so
stage 1 holds every minute open until `--max-source-skew` runs out, next to the same feed with
its request logs (nothing held): worker RSS and open minutes at the end of the feed (within
the bound) and after the bound.

    python bench/bench_latency.py [--pace 1.0] [--baseline-rev 7b46223] [--bootstrap HOST:PORT]
        [--hold-minutes 240]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
from rich.console import Console
from rich.table import Table

from pipeline.contracts.topics import ALERTS, SLO_BURN, iter_topics
from pipeline.fleet import load_fleet
from pipeline.kafka_admin import ensure_topics_sync
from pipeline.localkafka import free_ports
from pipeline.simulate import Envelope, SimConfig, Simulator
from pipeline.simulate.sinks import KafkaSink

sys.path.insert(0, str(Path(__file__).parent))
from bench_hostile import worktree
from bench_worker import broker_for, counter, rss_mb, stop_worker

ROOT = Path(__file__).resolve().parent.parent
#: The last revision before issue 12's closing rules (SLO waited for the next grid value).
BASELINE_REV = "7b46223"
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
MINUTES = 70
OUTAGE = (START + timedelta(minutes=10), START + timedelta(minutes=20))


def batches(grid: bool) -> list[list[Envelope]]:
    """The simulated minutes, with the outage; without grid values if `grid` is False."""
    config = SimConfig(start=START, minutes=MINUTES, seed=51, rps_scale=0.05)
    out = []
    lo, hi = (int(t.timestamp() * 1000) for t in OUTAGE)
    for minute in Simulator(load_fleet(), config).minutes():
        kept = []
        for env in minute:
            if env.topic.name == "mdc.grid-intensity" and not grid:
                continue
            if env.topic.name == "mdc.request-log" and lo <= env.event_ms < hi:
                doc = msgspec.json.decode(env.value)
                if doc["service"] == "checkout-api" and doc["site_id"] == "bog1":
                    doc["status"] = 503
                    env = Envelope(env.topic, env.key, msgspec.json.encode(doc), env.event_ms,
                                   env.emit_ms, env.fault)  # fmt: skip
            kept.append(env)
        out.append(kept)
    return out


class Arrivals(threading.Thread):
    """Reads the SLO-burn and alert topics from the start; wall time of each record's arrival."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"lat-{uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([f"{prefix}{SLO_BURN.name}", f"{prefix}{ALERTS.name}"])
        self.burn: dict[str, float] = {}  # window_start -> first arrival
        self.pages: dict[int, float] = {}  # at_ms of a firing page alert -> arrival
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            now = time.monotonic()
            doc = msgspec.json.decode(msg.value())
            if msg.topic().endswith(SLO_BURN.name):
                self.burn.setdefault(doc["window_start"], now)
            elif (
                doc.get("severity") == "page"
                and doc.get("state") == "firing"
                and "checkout-api" in doc["alert_id"]
                and "bog1" in doc["alert_id"]
            ):
                self.pages.setdefault(int(doc["at_ms"]), now)
        self.consumer.close()


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("worker exited during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("worker not ready")


def start_worker(
    bootstrap: str, prefix: str, source: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], int, Any]:
    ensure_topics_sync(bootstrap, iter_topics(prefix))
    port = free_ports(1)[0]
    state = Path(tempfile.mkdtemp(prefix="microdc-bench-latency-"))
    log = (state / "worker.log").open("wb")
    cmd = [sys.executable, "-m", "pipeline", "worker", "--bootstrap", bootstrap,
           "--topic-prefix", prefix, "--web-port", str(port), "--data-dir", str(state / "data"),
           "--store", "memory://", "--loglevel", "warning", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=source, env=env)
    wait_ready(port, proc)
    return proc, port, log


def feed_live(
    bootstrap: str, prefix: str, feed: list[list[Envelope]], pace: float
) -> dict[str, float]:
    """Produce one batch per `pace` s; the wall (monotonic) time each minute was flushed."""
    flushed: dict[str, float] = {}

    async def produce() -> None:
        async with KafkaSink(bootstrap, topic_prefix=prefix) as sink:
            for i, batch in enumerate(feed):
                await sink.write(batch)
                await sink.flush()
                minute = (START + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
                flushed[minute] = time.monotonic()
                await asyncio.sleep(pace)

    asyncio.run(produce())
    return flushed


def measure(
    bootstrap: str, source: Path, feed: list[list[Envelope]], pace: float
) -> dict[str, Any]:
    prefix = f"lat{uuid4().hex[:8]}."
    proc, _, log = start_worker(bootstrap, prefix, source)
    arrivals = Arrivals(bootstrap, prefix)
    try:
        arrivals.start()
        flushed = feed_live(bootstrap, prefix, feed, pace)
        time.sleep(15 * pace + 5)  # the last minutes need a few more of event time: none come
    finally:
        arrivals.stop.set()
        arrivals.join(10)
        stop_worker(proc, log)
    lat = [arrivals.burn[m] - t for m, t in flushed.items() if m in arrivals.burn]
    closed = len(lat)
    page = None
    for at_ms, t in sorted(arrivals.pages.items()):
        minute = datetime.fromtimestamp(at_ms / 1000, UTC).replace(second=0, microsecond=0)
        key = minute.isoformat().replace("+00:00", "Z")
        if key in flushed:
            page = t - flushed[key]
            break
    return {"minutes": len(flushed), "closed": closed, "burn": lat, "page": page}


def open_minutes(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return counter(text, "microdc_open_minutes", 'stage="stage-one"')


def held_back(bootstrap: str, minutes: int, skew_s: float, requests: bool) -> dict[str, float]:
    """RSS and open stage-1 minutes at the end of a fast feed of `minutes` simulated minutes
    (within the skew bound) and once the bound has run out."""
    config = SimConfig(start=START, minutes=minutes, seed=52, rps_scale=0.05)
    feed = [
        [e for e in m if requests or e.topic.name != "mdc.request-log"]
        for m in Simulator(load_fleet(), config).minutes()
    ]
    prefix = f"hold{uuid4().hex[:8]}."
    proc, port, log = start_worker(bootstrap, prefix, ROOT, "--max-source-skew", str(skew_s))
    try:
        started = time.monotonic()
        before = rss_mb(proc.pid)
        feed_live(bootstrap, prefix, feed, 0.05)
        time.sleep(5)
        held = {"rss_start": before, "rss_held": rss_mb(proc.pid), "open_held": open_minutes(port)}
        time.sleep(max(0.0, skew_s - (time.monotonic() - started)) + 10)
        held |= {"rss_after": rss_mb(proc.pid), "open_after": open_minutes(port)}
        held["fed_s"] = time.monotonic() - started
        return held
    finally:
        stop_worker(proc, log)


def row(label: str, figures: dict[str, Any], pace: float) -> list[str]:
    lat = figures["burn"]
    if not lat:
        return [label, f"0 / {figures['minutes']}", "never", "never", "never", "never"]
    med, worst = statistics.median(lat), max(lat)
    page = figures["page"]
    return [
        label,
        f"{figures['closed']} / {figures['minutes']}",
        f"{med:.1f} s ({med / pace:.1f} min)",
        f"{worst:.1f} s ({worst / pace:.1f} min)",
        "never" if page is None else f"{page:.1f} s ({page / pace:.1f} min)",
        f"{sum(1 for x in lat if x <= 5 * pace)}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pace", type=float, default=1.0, help="wall seconds per sim minute")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--bootstrap", default=os.environ.get("MICRODC_BENCH_BOOTSTRAP"))
    parser.add_argument("--hold-minutes", type=int, default=240, help="0 skips the RSS part")
    parser.add_argument("--hold-skew", type=float, default=60.0, help="its --max-source-skew")
    parser.add_argument("--no-latency", action="store_true", help="only the memory part")
    args = parser.parse_args()
    console = Console(width=150)
    bootstrap, broker = broker_for(args.bootstrap)
    base = worktree(args.baseline_rev)
    rows = []
    held: dict[str, dict[str, float]] = {}
    try:
        if args.hold_minutes:
            for requests in (True, False):
                what = "with request logs" if requests else "request logs silent"
                console.print(f"holding back: {args.hold_minutes} minutes, {what}...")
                held[what] = held_back(bootstrap, args.hold_minutes, args.hold_skew, requests)
        for grid in () if args.no_latency else (True, False):
            feed = batches(grid)
            for label, source in ((args.baseline_rev, base), ("this revision", ROOT)):
                what = "hourly grid" if grid else "grid silent"
                console.print(f"{label}, {what}...")
                rows.append(row(f"{label}, {what}", measure(bootstrap, source, feed, args.pace),
                                args.pace))  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       capture_output=True)  # fmt: skip
        if broker is not None:
            broker.stop()
    table = Table(title=f"SLO burn latency, one worker, {args.pace:g} s of wall clock per "
                  "simulated minute (2 cores)")  # fmt: skip
    columns = ("revision, grid feed", "minutes with SLO rows", "median latency",
               "worst latency", "page latency", "minutes within 5 sim min")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col.startswith("revision") else "right")
    for r in rows:
        table.add_row(*r)
    if rows:
        console.print(table)
    if held:
        mem = Table(title=f"Worker memory while stage 1 holds {args.hold_minutes} simulated "
                    f"minutes back (--max-source-skew {args.hold_skew:g})")  # fmt: skip
        for col in ("feed", "RSS before", "RSS at end of feed", "open minutes then",
                    "RSS after the bound", "open minutes after"):  # fmt: skip
            mem.add_column(col, justify="left" if col == "feed" else "right")
        for what, h in held.items():
            mem.add_row(what, f"{h['rss_start']:.0f} MiB", f"{h['rss_held']:.0f} MiB",
                        f"{h['open_held']:.0f}", f"{h['rss_after']:.0f} MiB",
                        f"{h['open_after']:.0f}")  # fmt: skip
        console.print(mem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
