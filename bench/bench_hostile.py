"""Hostile input: the fuzz campaign's figures, and what the checks cost, against the code
before them, in the same run.

1. FUZZ: N hostile records of every kind (`pipeline.simulate.hostile`) mixed into valid
   traffic, through the embedded runner: per kind, records tried, dead letters of the kind it
   must be, late events, anything else, and crashes (an exception out of the runner).
2. CORE: events/s of the stream core in-process (embedded runner, no Kafka) over the same clean
   peak-hour traffic, this revision vs `--baseline-rev` (a `git worktree`, default the commit
   before issue 11's checks), alternating rounds in child processes; median of each.
3. WORKER: one stream worker on a real broker, over the same backlog produced twice (one copy
   per revision: a worker's topics and group follow its prefix): request-log events/s end to
   end, this revision vs the baseline, next to the raw consume limit.

    python bench/bench_hostile.py [--hostile 100000] [--events 400000] [--rounds 3]
        [--baseline-rev a25f113] [--bootstrap HOST:PORT] [--no-worker]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from pipeline.contracts import ALL_TOPICS
from pipeline.contracts.topics import REQUEST_LOG
from pipeline.embedded.driver import EmbeddedPipeline
from pipeline.fleet import load_fleet
from pipeline.simulate import SimConfig, Simulator
from pipeline.simulate.hostile import KINDS, expected_of, mix_hostile

sys.path.insert(0, str(Path(__file__).parent))
from bench_kafka import consume
from bench_worker import broker_for, produce, run_worker

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "a25f113"  # the tree before issue 11's contract bounds and core checks

CORE_CHILD = textwrap.dedent(
    """
    import sys, time, itertools
    from datetime import UTC, datetime
    from pipeline.fleet import load_fleet
    from pipeline.embedded.driver import EmbeddedPipeline, from_envelopes
    from pipeline.simulate import SimConfig, Simulator
    events = int(sys.argv[1])
    fleet = load_fleet()
    start = datetime(2026, 3, 2, 15, tzinfo=UTC)
    minutes = max(3, events // 42_000 + 1)
    config = SimConfig(start=start, minutes=minutes, seed=42, rps_scale=1.0)
    messages = list(itertools.islice(from_envelopes(Simulator(fleet, config)), events))
    pipeline = EmbeddedPipeline(fleet)
    started = time.perf_counter()
    pipeline.feed(messages)
    print(len(messages) / (time.perf_counter() - started))
    """
)


def fuzz(hostile: int, console: Console) -> tuple[Table, dict[str, int]]:
    fleet = load_fleet()
    config = SimConfig(start=datetime(2026, 3, 2, 13, 50, tzinfo=UTC), minutes=20, seed=21,
                       rps_scale=0.03)  # fmt: skip
    valid = list(Simulator(fleet, config))
    mixed = mix_hostile(valid, fleet, hostile, seed=7)
    console.print(f"fuzz: {hostile:,} hostile records among {len(valid):,} valid ones...")
    pipeline = EmbeddedPipeline(fleet)
    crashes = 0
    started = time.perf_counter()
    for env in mixed:
        try:
            pipeline.feed_one(env.topic, env.key, env.value)
        except Exception:  # noqa: BLE001 - counted: the figure this table exists for
            crashes += 1
    result = pipeline.close()
    seconds = time.perf_counter() - started
    letters = {(d.value, d.source_topic): d.error_kind for d in result.outputs["mdc.dead-letters"]}
    late = Counter(e.value for e in result.outputs["mdc.late-events"])
    rows: dict[str, Counter[str]] = {k.name: Counter() for k in KINDS}
    for env in mixed:
        if not env.fault:
            continue
        kind = env.fault.removeprefix("hostile:")
        want = expected_of(env)
        got = letters.get((env.value, env.topic.name))
        row = rows[kind]
        row["tried"] += 1
        is_late = want == "late" and late[env.value.decode("utf-8", "replace")] > 0
        if is_late or got == want:
            row["as expected"] += 1
        else:
            row["otherwise"] += 1
    table = Table(title=f"Fuzz campaign through the embedded runner ({seconds:.1f} s)")
    for col in ("kind", "must become", "tried", "as expected", "otherwise"):
        table.add_column(col, justify="left" if col in ("kind", "must become") else "right")
    for k in KINDS:
        row = rows[k.name]
        table.add_row(k.name, k.expected, f"{row['tried']:,}", f"{row['as expected']:,}",
                      f"{row['otherwise']:,}")  # fmt: skip
    total = {
        "tried": sum(r["tried"] for r in rows.values()),
        "as_expected": sum(r["as expected"] for r in rows.values()),
        "otherwise": sum(r["otherwise"] for r in rows.values()),
        "crashes": crashes,
        "internal_errors": result.internal_errors,
        "dead_letters": len(result.outputs["mdc.dead-letters"]),
    }
    table.add_row("TOTAL", "", f"{total['tried']:,}", f"{total['as_expected']:,}",
                  f"{total['otherwise']:,}", style="bold")  # fmt: skip
    return table, total


def worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="microdc-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)  # fmt: skip
    return path


def core_rate(source: Path, events: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run([sys.executable, "-c", CORE_CHILD, str(events)], cwd=source, env=env,
                         check=True, capture_output=True, text=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--hostile", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=400_000, help="clean events per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--bootstrap", default=os.environ.get("MICRODC_BENCH_BOOTSTRAP"))
    parser.add_argument("--no-worker", action="store_true", help="skip the Kafka worker part")
    args = parser.parse_args()
    console = Console(width=110)

    table, total = fuzz(args.hostile, console)
    console.print(table)
    console.print(
        f"crashes: {total['crashes']}, internal errors: {total['internal_errors']}, "
        f"dead letters: {total['dead_letters']:,}"
    )

    base = worktree(args.baseline_rev)
    try:
        here_rates, base_rates = [], []
        for i in range(args.rounds):
            console.print(f"core round {i + 1}/{args.rounds}...")
            base_rates.append(core_rate(base, args.events))
            here_rates.append(core_rate(ROOT, args.events))
        here, then = statistics.median(here_rates), statistics.median(base_rates)
        rows = [
            (f"stream core, {args.baseline_rev} (no checks) = baseline", then, 1.0),
            ("stream core, this revision (bounds + fleet + time checks)", here, here / then),
        ]
        if not args.no_worker:
            rows += worker_rows(args, base, console)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False, capture_output=True)  # fmt: skip
    cost = Table(title=f"What the checks cost ({os.cpu_count()} cores, medians of {args.rounds})")
    for col in ("measurement", "events/s", "vs baseline"):
        cost.add_column(col, justify="left" if col == "measurement" else "right")
    for name, rate, ratio in rows:
        cost.add_row(name, f"{rate:,.0f}", f"{ratio:.2f}×")
    console.print(cost)
    return 0


def worker_rows(
    args: argparse.Namespace, base: Path, console: Console
) -> list[tuple[str, float, float]]:
    """One worker of each revision over the same backlog (produced once per revision)."""
    fleet = load_fleet()
    bootstrap, broker = broker_for(args.bootstrap)
    try:
        runs: dict[str, float] = {}
        raw = 0.0
        for label, source in (("baseline", base), ("this", None)):
            prefix = f"benchh{uuid4().hex[:8]}."
            produced, _ = produce(bootstrap, prefix, ALL_TOPICS, fleet, args.events, console)
            total, n_req = produced.stats.emitted, produced.stats.valid[REQUEST_LOG.name]
            topic = f"{prefix}{REQUEST_LOG.name}"
            raw_s = asyncio.run(consume(bootstrap, topic, REQUEST_LOG.partitions, n_req, True))
            raw = max(raw, n_req / raw_s)
            console.print(f"running the {label} worker...")
            pid = broker.pid if broker is not None else None
            figures = run_worker(bootstrap, prefix, "memory://", total, n_req, 4, pid, source)
            runs[label] = n_req / figures["seconds"]
    finally:
        if broker is not None:
            broker.stop()
    then = runs["baseline"]
    return [
        ("raw consume limit (getmany + msgspec), request-log", raw, raw / then),
        (f"ONE worker, {args.baseline_rev}, request-log events/s", then, 1.0),
        ("ONE worker, this revision, request-log events/s", runs["this"], runs["this"] / then),
    ]


if __name__ == "__main__":
    sys.exit(main())
