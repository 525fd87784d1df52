"""A small hand-made warehouse for the report tests: numbers chosen so every chart checks by hand.

Two sites have data (bog1, mex1; the fleet's sao1 has none), two UTC hours (15:00, 16:00):

| site | hour  | service      | requests | facility Wh | gCO2e (op + emb) | request latencies, ms |
|------|-------|--------------|----------|-------------|------------------|-----------------------|
| bog1 | 15:00 | checkout-api | 10       | 3.0         | 4 + 1            | 10, 20, 30, 40        |
| bog1 | 15:00 | auth         | 30       | 1.5         | 1 + 1            | 100, 200              |
| bog1 | 15:00 | __idle__     | 0        | 15.0        | 0                |                       |
| bog1 | 16:00 | checkout-api | 20       | 3.0         | 2 + 0            | (none logged)         |
| mex1 | 15:00 | checkout-api | 5        | 2.0         | 3 + 1            | 50                    |

Site minutes: bog1 100 Wh IT at PUE 1.5 and 50 Wh at 1.2 (day PUE 210 / 150 = 1.4); mex1 10 Wh
at PUE 2.0. SLO burn: checkout-api at bog1 ends the period with 98 % of its availability budget
and a worst burn of 14.5.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.contracts.outputs import EnergyMinute, SloBurn
from pipeline.contracts.topics import ENERGY_MINUTES, REQUEST_LOG, SITE_MINUTES, SLO_BURN
from pipeline.embedded.landing import EmbeddedLander
from pipeline.fleet import load_fleet
from pipeline.lake import Lake
from pipeline.models.build import build
from tests.support.factories import energy_minute, request_log, site_minute, slo_burn

T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TEAMS = {"checkout-api": "payments", "auth": "identity", "__idle__": "__idle__"}


def energy(site: str, minute: int, service: str, **kw: Any) -> EnergyMinute:
    node = f"{site}-r1-n01"
    return energy_minute(T + timedelta(minutes=minute), node, service, TEAMS[service], **kw)


def request(site: str, service: str, i: int, latency_ms: float) -> tuple[bytes, bytes]:
    node = f"{site}-r1-n01"
    value = request_log(
        T + timedelta(seconds=i),
        f"{site}-{service}-{i}",
        node,
        service,
        TEAMS[service],
        latency_ms=latency_ms,
        bytes_in=100,
        bytes_out=1000,
    )
    return node.encode(), value


def burn(minute: int, site: str, requests: int, bad: int, budget: float, worst: float) -> SloBurn:
    return slo_burn(
        T + timedelta(minutes=minute),
        "checkout-api",
        site,
        requests=requests,
        bad_availability=bad,
        availability_burn={"5m": worst, "1h": worst / 2},
        latency_burn={"5m": 0.5},
        availability_budget_remaining=budget,
    )


def energy_rows() -> list[EnergyMinute]:
    return [
        energy("bog1", 0, "checkout-api", requests=10, it_energy_wh=2.0, facility_energy_wh=3.0,
               operational_gco2e=4.0, embodied_gco2e=1.0, bytes_out=10_000),
        energy("bog1", 0, "auth", requests=30, it_energy_wh=1.0, facility_energy_wh=1.5,
               operational_gco2e=1.0, embodied_gco2e=1.0, bytes_out=30_000),
        energy("bog1", 0, "__idle__", it_energy_wh=10.0, facility_energy_wh=15.0),
        energy("bog1", 60, "checkout-api", requests=20, it_energy_wh=2.0, facility_energy_wh=3.0,
               operational_gco2e=2.0, bytes_out=20_000),
        energy("mex1", 0, "checkout-api", requests=5, it_energy_wh=1.0, facility_energy_wh=2.0,
               operational_gco2e=3.0, embodied_gco2e=1.0, bytes_out=5_000),
    ]  # fmt: skip


def build_warehouse(root: Path) -> Path:
    """Land the rows above into a lake under `root` and build `root/w.duckdb` from it."""
    lake = Lake(root / "lake")
    lander = EmbeddedLander(lake)
    for row in energy_rows():
        lander.add_output(ENERGY_MINUTES, row, 0)
    for row in (
        # the meter sees 4 Wh of IT load no node reported: 6 Wh of shared infrastructure
        site_minute(
            T,
            "bog1",
            node_it_energy_wh=100.0,
            it_energy_wh=104.0,
            facility_energy_wh=156.0,
            pue=1.5,
        ),
        site_minute(T + timedelta(minutes=1), "bog1", node_it_energy_wh=50.0, pue=1.2),
        site_minute(T, "mex1", node_it_energy_wh=10.0, pue=2.0),
    ):
        lander.add_output(SITE_MINUTES, row, 0)
    for row in (
        burn(0, "bog1", 100, 2, 0.99, 3.0),
        burn(1, "bog1", 300, 0, 0.98, 14.5),
        burn(1, "__all__", 400, 2, 0.985, 14.5),
    ):
        lander.add_output(SLO_BURN, row, 0)
    logs = [
        *(request("bog1", "checkout-api", i, v) for i, v in enumerate([10.0, 20.0, 30.0, 40.0])),
        *(request("bog1", "auth", i, v) for i, v in enumerate([100.0, 200.0])),
        request("mex1", "checkout-api", 0, 50.0),
    ]
    for key, value in logs:
        lander.add(REQUEST_LOG, key, value, 0)
    lander.close()
    db = root / "w.duckdb"
    build(lake, load_fleet(), db)
    return db
