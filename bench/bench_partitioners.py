"""What any-partitioner support costs the stream core, against the code before it, in one run.

The stream core in-process (embedded runner, no Kafka) over the same peak-hour traffic, each
run in its own child process, rounds alternating:

1. `--baseline-rev` (a `git worktree`; default the commit before stage 2 merged split
   node-minutes), records on the project's murmur2 partitions;
2. this revision, murmur2 partitions (keyed producers: nothing to merge);
3. this revision, every node-telemetry and request-log record on a random partition (an
   unkeyed producer): nearly every node-minute is reported by several stage-1 partitions and
   merged by stage 2. Its outputs are compared with run 2's, record by record.

    python bench/bench_partitioners.py [--events 400000] [--rounds 3] [--baseline-rev 00d9a1b]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from bench_hostile import ROOT, worktree
from rich.console import Console
from rich.table import Table

BASELINE_REV = "00d9a1b"  # before stage 2 merged node-minutes split over partitions

CHILD = textwrap.dedent(
    """
    import hashlib, itertools, json, random, sys, time
    from datetime import UTC, datetime
    import msgspec
    from pipeline.fleet import load_fleet
    from pipeline.embedded.driver import EmbeddedPipeline, from_envelopes
    from pipeline.simulate import SimConfig, Simulator
    events, spread = int(sys.argv[1]), sys.argv[2] == "random"
    fleet = load_fleet()
    start = datetime(2026, 3, 2, 15, tzinfo=UTC)
    config = SimConfig(start=start, minutes=max(3, events // 42_000 + 1), seed=42, rps_scale=1.0)
    messages = list(itertools.islice(from_envelopes(Simulator(fleet, config)), events))
    rng = random.Random(7)
    spread_topics = {"mdc.node-telemetry", "mdc.request-log"}
    where = [
        rng.randrange(spec.partitions) if spread and spec.name in spread_topics else None
        for spec, _, _ in messages
    ]
    pipeline = EmbeddedPipeline(fleet)
    started = time.perf_counter()
    if spread:
        for (spec, key, value), partition in zip(messages, where):
            pipeline.feed_one(spec, key, value, partition)
    else:
        pipeline.feed(messages)
    result = pipeline.close()
    seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for topic in ("mdc.energy-minutes", "mdc.site-minutes", "mdc.slo-burn", "mdc.alerts"):
        for row in sorted(msgspec.json.encode(r) for r in result.outputs.get(topic, [])):
            digest.update(row)
    print(json.dumps({"rate": len(messages) / seconds, "digest": digest.hexdigest(),
                      "merged": getattr(pipeline.stage_two, "split_node_minutes", 0)}))
    """
)


def run(source: Path, events: int, placement: str) -> dict[str, float | str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(events), placement], cwd=source,
                         env=env, check=True, capture_output=True, text=True)  # fmt: skip
    result: dict[str, float | str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    args = parser.parse_args()
    console = Console(width=110)
    base = worktree(args.baseline_rev)
    runs: dict[str, list[dict[str, float | str]]] = {"base": [], "keyed": [], "random": []}
    try:
        for i in range(args.rounds):
            console.print(f"round {i + 1}/{args.rounds}...")
            runs["base"].append(run(base, args.events, "keyed"))
            runs["keyed"].append(run(ROOT, args.events, "keyed"))
            runs["random"].append(run(ROOT, args.events, "random"))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False, capture_output=True)  # fmt: skip
    rate = {k: statistics.median(float(r["rate"]) for r in v) for k, v in runs.items()}
    same = {r["digest"] for r in runs["keyed"]} == {r["digest"] for r in runs["random"]}
    merged = int(runs["random"][0]["merged"])
    table = Table(
        title=f"Stream core, {args.events:,} events ({os.cpu_count()} cores, medians of "
        f"{args.rounds})"
    )
    for col in ("run", "events/s", "vs baseline", "outputs"):
        table.add_column(col, justify="left" if col in ("run", "outputs") else "right")
    table.add_row(f"{args.baseline_rev}, murmur2 = baseline", f"{rate['base']:,.0f}", "1.00×", "")
    table.add_row(
        "this revision, murmur2 (keyed)",
        f"{rate['keyed']:,.0f}",
        f"{rate['keyed'] / rate['base']:.2f}×",
        "reference",
    )
    table.add_row(
        f"this revision, random partitions ({merged:,} node-minutes merged)",
        f"{rate['random']:,.0f}",
        f"{rate['random'] / rate['base']:.2f}×",
        "equal to keyed" if same else "DIFFERENT",
    )
    console.print(table)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
