"""`microdc lake rebuild` on a lake that the real pipeline landed: a worker on a real broker
makes the simulator's late records late events, `microdc land` lands inputs and outputs, and
the rebuild of the first date puts the late records into its marts: every rebuilt dataset then
equals the stream core over the same records in event-time order, the other date is untouched
and a lander started afterwards resumes where it was, landing nothing twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from pipeline.embedded.driver import run_embedded
from pipeline.fleet import load_fleet
from pipeline.lake.rebuild import REBUILT
from pipeline.simulate import FaultConfig, SimConfig
from tests.integration.test_worker import (
    assert_same,
    expected_outputs,
    kafka_order,
    simulate,
    wait_for_outputs,
)
from tests.support.worker_procs import Lander, WorkerPool
from tests.unit.lake.test_rebuild import contents, expected, lineage_topics, silver

START = datetime(2026, 3, 2, 23, 20, tzinfo=UTC)  # 40 minutes on D1, 10 on D2
D1, D2 = date(2026, 3, 2), date(2026, 3, 3)
MIDNIGHT = datetime(2026, 3, 3, tzinfo=UTC)  # the grid value of 00:00 closes every D1 minute


def land_until_idle(lander: Lander) -> str:
    """`microdc land --until-idle`: lands every partition to its log end, then exits 0."""
    env = {**os.environ, "MICRODC_LAKE_IP_SECRET": lander.secret}
    done = subprocess.run(
        [*lander.cmd, "--until-idle"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_rebuild_of_a_landed_lake_puts_the_late_records_into_the_marts(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool, tmp_path: Path
) -> None:
    fleet = load_fleet()
    config = SimConfig(
        start=START, minutes=50, seed=23, rps_scale=0.05, faults=FaultConfig(late=0.02)
    )
    envelopes = simulate(kafka_bootstrap, topic_prefix, fleet, config)
    # What the worker computes: the records in its merge order, the late ones late events.
    streamed = expected_outputs(
        run_embedded(fleet, kafka_order(kafka_bootstrap, topic_prefix, len(envelopes)))
    )
    assert len(streamed["mdc.late-events"]) > 20
    # What a rebuild must compute: the same records in event-time order, nothing late.
    in_order = run_embedded(
        fleet, [(e.topic, e.key, e.value) for e in sorted(envelopes, key=lambda e: e.event_ms)]
    )
    assert not in_order.outputs.get("mdc.late-events")

    pool.add("w1").start().wait_ready()
    got = wait_for_outputs(kafka_bootstrap, topic_prefix, streamed, timeout=180, cutoff=MIDNIGHT)
    assert_same(got, streamed)
    pool.close()  # outputs stop; the lander can reach every log end
    lake = tmp_path / "lake"
    lander = Lander(kafka_bootstrap, topic_prefix, lake, tmp_path / "land.log", max_rows=3_000)
    land_until_idle(lander)

    landed = silver(lake, "energy_minutes", D1)
    want = expected(in_order, "energy_minutes", D1)
    assert sum(r["requests"] for r in landed.values()) < sum(r["requests"] for r in want.values())
    assert silver(lake, "late_events", D1)
    d2_before = {k: v for k, v in contents(lake, "silver").items() if "date=2026-03-03" in k}
    bronze_before = contents(lake, "bronze")

    def rebuild(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [microdc, "lake", "rebuild", "--lake", str(lake), "--from", "2026-03-02", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},  # rich wraps the tables at the width
        )

    microdc = str(Path(sys.executable).parent / "microdc")
    dry = rebuild("--to", "2026-03-02", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "nothing written" in dry.stdout
    assert silver(lake, "energy_minutes", D1) == landed
    # The newest date is where the lander writes: refused unless --force.
    live = rebuild("--to", "2026-03-03")
    assert live.returncode == 2 and "--force" in live.stderr  # a usage error, as for every CLI
    done = rebuild("--to", "2026-03-02")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebuilt" in done.stdout

    for ds in REBUILT:
        rows, want = silver(lake, ds.name, D1), expected(in_order, ds.name, D1)
        assert rows.keys() == want.keys(), ds.name
        for key, row in want.items():
            assert rows[key] == row, (ds.name, key)
        (topic,) = lineage_topics(lake, ds.name, D1)
        assert topic.startswith(f"{ds.topic.name}.rebuild-"), topic
    assert {k: v for k, v in contents(lake, "silver").items() if "date=2026-03-03" in k} == (
        d2_before
    )
    assert contents(lake, "bronze") == bronze_before

    # A lander started after the rebuild resumes after its last landed offsets: no row twice.
    after = contents(lake)
    land_until_idle(lander)
    assert contents(lake) == after
