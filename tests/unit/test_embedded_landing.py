"""`simulate_and_land`: landing in a second process lands exactly what landing inline does, and
a landing process that dies is one clear error, not a hang."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline.embedded.demo import DEMO_START, demo_fleet
from pipeline.embedded.landing import simulate_and_land
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.simulate import SimConfig

CONFIG = SimConfig(start=DEMO_START, minutes=45, seed=3, rps_scale=0.01)


def _lake_rows(root: Path) -> list[tuple[object, ...]]:
    with duckdb.connect() as con:
        return con.execute(
            f"""select regexp_extract(filename, '/(bronze|silver)/([a-z_]+)/', 2) as dataset,
                       _topic, _partition, count(*), min(_offset), max(_offset),
                       count(distinct _offset)
                from read_parquet('{root}/*/*/**/*.parquet', filename = true,
                                  hive_partitioning = false, union_by_name = true)
                group by all order by all"""
        ).fetchall()


def test_landing_in_a_second_process_lands_the_same_rows(tmp_path: Path) -> None:
    fleet = demo_fleet(load_fleet(None), 2)
    inline = simulate_and_land(fleet, CONFIG, Lake(tmp_path / "inline"))
    parallel = simulate_and_land(fleet, CONFIG, Lake(tmp_path / "parallel"), parallel=True)
    assert parallel.landed.rows_by_dataset == inline.landed.rows_by_dataset
    assert parallel.landed.rows == inline.landed.rows > parallel.emitted > 0
    rows = _lake_rows(tmp_path / "parallel")
    assert rows == _lake_rows(tmp_path / "inline")
    # every (topic, partition) holds a gap-free run of offsets from 0
    assert all(lo == 0 and hi == n - 1 == distinct - 1 for *_, n, lo, hi, distinct in rows)


FAILING_LAKE = """
import sys
from pathlib import Path
from pipeline.embedded.demo import DEMO_START, demo_fleet
from pipeline.embedded.landing import simulate_and_land
from pipeline.errors import PipelineError
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.simulate import SimConfig

if __name__ == "__main__":
    root = Path(sys.argv[1])
    lake = Lake(root)
    root.rmdir()
    root.write_text("a file where the lake should be")  # the landing child cannot open it
    config = SimConfig(start=DEMO_START, minutes=45, seed=3, rps_scale=0.01)
    try:
        simulate_and_land(demo_fleet(load_fleet(None), 1), config, lake, parallel=True)
    except PipelineError as exc:
        print(exc)
"""


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_a_landing_process_that_fails_is_one_error_and_no_hang(tmp_path: Path) -> None:
    # In a child interpreter: a queue the dead lander never read must not block its exit.
    script = tmp_path / "failing_lake.py"
    script.write_text(FAILING_LAKE)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"landing process failed: \w+Error: .*lake.*\n", proc.stdout), proc.stdout
