"""Stream/batch agreement: for every closed minute of a simulated day, the stream's silver
aggregates equal the same numbers recomputed in SQL from the bronze records it consumed."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from pipeline.embedded.landing import simulate_and_land
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build
from pipeline.simulate import SimConfig


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    root = tmp_path_factory.mktemp("agreement")
    fleet = load_fleet()
    config = SimConfig(start=datetime(2026, 3, 2, tzinfo=UTC), minutes=24 * 60, rps_scale=0.004)
    lake = Lake(root / "lake")
    simulate_and_land(fleet, config, lake)
    build(lake, fleet, root / "w.duckdb")
    return duckdb.connect(str(root / "w.duckdb"), read_only=True)


def test_node_energy_per_minute_matches_the_raw_power_samples(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    # The stream accumulates integer micro-watt-hours; SQL sums floats: 2 uWh of rounding.
    minutes, missing_in_batch, worst, nonzero_without_samples = warehouse.execute(
        """
        with stream as (
            select node_id, window_start, sum(it_energy_wh) as wh
            from stg_energy_minutes group by all
        ),
        batch as (select * from int_node_energy_minutes_from_bronze)
        select
            count(*),
            count(*) filter (where batch.it_energy_wh is null),
            max(abs(stream.wh - batch.it_energy_wh)),
            count(*) filter (where batch.it_energy_wh is null and stream.wh <> 0)
        from stream full join batch using (node_id, window_start)
        where stream.wh is not null
        """
    ).fetchone()
    assert minutes > 100_000  # 72 nodes x 1,440 minutes of a day, and more
    assert worst < 2e-6
    # Node-minutes the stream emitted without samples (requests during an outage) carry no energy.
    assert nonzero_without_samples == 0, f"{nonzero_without_samples} of {missing_in_batch}"
    only_batch = warehouse.execute(
        """
        select count(*) from int_node_energy_minutes_from_bronze b
        anti join (select distinct node_id, window_start from stg_energy_minutes) s
        using (node_id, window_start)
        """
    ).fetchone()
    assert only_batch == (0,)


def test_requests_and_errors_per_minute_match_the_request_logs(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    mismatches, rows, total = warehouse.execute(
        """
        with stream as (
            select site_id, node_id, service, window_start,
                   sum(requests) as requests, sum(errors_5xx) as errors
            from stg_energy_minutes where service <> '__idle__' group by all
        ),
        batch as (
            select site_id, node_id, service, date_trunc('minute', finished_at) as window_start,
                   count(*) as requests, count(*) filter (where status >= 500) as errors
            from stg_request_log group by all
        )
        select
            count(*) filter (where stream.requests is distinct from batch.requests
                             or stream.errors is distinct from batch.errors),
            count(*),
            sum(batch.requests)
        from stream full join batch using (site_id, node_id, service, window_start)
        """
    ).fetchone()
    assert total > 10_000
    assert mismatches == 0, f"{mismatches} of {rows} node x service minutes differ"
