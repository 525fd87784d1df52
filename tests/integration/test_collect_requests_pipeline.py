"""Real requests all the way: Debian's nginx -> `microdc collect --sink kafka` (tailing its
access log) + collected power + `microdc grid-backfill --csv` -> real Kafka -> worker -> lander
-> warehouse, and energy and carbon per request per service are the hand-computed ones.

nginx serves two hosts, each from two upstreams of the test: checkout.example.test from the
"nodes" bog1-r1-n01 and -n02 (checkout-api), search.example.test from -n06 and -n07
(catalog-search); the collector file maps each upstream address to its node. The requests are
sent within one wall-clock minute M (the test waits for the first 35 s of a minute), and round
robin gives every node at least one. Power comes from DMTF's rack-server mockup (374 W) behind
the Redfish test server, polled with an event clock from M - 2 min to M + 13 min (so M closes),
the site meters as in test_collect_pipeline (facility 8,120 W by SNMP, IT 6,438 W by the
rack-PDU mockup). The grid is a data-portal CSV per fleet zone, hourly, loaded by the CLI.
The request streams are quiet after M, so the worker runs with a short --max-source-skew.

By hand: a node's dynamic energy in a minute is (374 - 135) W x 60 s = 3.98333 Wh, all of it
the service of that minute's requests (busy-time attribution, one service per node), so a
service's IT Wh per request is 2 x 3.98333 Wh / its requests; facility Wh = IT x 8,120/6,438;
operational gCO2e per request = facility kWh x 171.4 g/kWh (CO's lifecycle value in the CSV).
"""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline.collect.grid import (
    CSV_DATETIME,
    CSV_DIRECT,
    CSV_ESTIMATED,
    CSV_LIFECYCLE,
    CSV_ZONE_ID,
)
from pipeline.contracts.topics import SITE_MINUTES, TopicSpec
from tests.integration.test_collect_pipeline import collect_to_kafka, power_sources
from tests.integration.test_rebuild import land_until_idle
from tests.support.kafka_read import read_topics
from tests.support.nginx import Nginx, Sent, Upstream, send_requests
from tests.support.worker_procs import Lander, WorkerPool

SITE = "bog1"
SERVICES = {
    "checkout.example.test": ("checkout-api", ("bog1-r1-n01", "bog1-r1-n02")),
    "search.example.test": ("catalog-search", ("bog1-r1-n06", "bog1-r1-n07")),
}
NODE_W, IDLE_W, FACILITY_W, METER_IT_W = 374.0, 135.0, 8_120.0, 6_438.0
PUE = FACILITY_W / METER_IT_W
NODE_DYNAMIC_WH = (NODE_W - IDLE_W) * 60 / 3600
INTENSITY = {"CO": 171.4, "MX": 430.0, "BR": 110.0}


def requests_text(log: Path, upstreams: dict[str, list[Upstream]]) -> str:
    rules = [
        f'    - {{match: "{u.address}", node_id: {node}}}'
        for host, (_, nodes) in SERVICES.items()
        for u, node in zip(upstreams[host], nodes, strict=True)
    ]
    services = [f"    - {{service: {s}, host: {host}}}" for host, (s, _) in SERVICES.items()]
    return "\n".join(
        [
            "requests:",
            f"  - {{kind: access_log, path: {log}}}",
            "request_mapping:",
            "  nodes:",
            *rules,
            "  services:",
            *services,
        ]
    )


def portal_csv(path: Path, zone: str, first_hour: datetime, hours: int) -> None:
    """Electricity Maps' data-portal hourly CSV, its documented columns."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([CSV_DATETIME, CSV_ZONE_ID, CSV_DIRECT, CSV_LIFECYCLE, CSV_ESTIMATED])
        for h in range(hours):
            at = first_hour + timedelta(hours=h)
            out.writerow([at.strftime("%Y-%m-%d %H:%M:%S"), zone, "98.0", INTENSITY[zone], "false"])


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.timeout(600)
def test_nginx_requests_and_collected_power_give_the_hand_computed_energy_and_carbon(
    kafka_bootstrap: str,
    kafka_topics: dict[str, TopicSpec],
    topic_prefix: str,
    pool: WorkerPool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka = ["--sink", "kafka", "--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix]
    upstreams = {host: [Upstream(f"{host}-{i}") for i in range(2)] for host in SERVICES}
    sent: list[Sent] = []
    try:
        with Nginx(tmp_path / "nginx", upstreams) as nginx:
            while datetime.now(UTC).second >= 35:  # every request inside one minute
                time.sleep(0.5)
            minute = datetime.now(UTC).replace(second=0, microsecond=0)
            for host in SERVICES:
                sent += send_requests(nginx.url, host, ["/", "/items", "/items/7"], 12)
            sent += send_requests(nginx.url, "checkout.example.test", ["/cart"], 5)
            assert datetime.now(UTC) < minute + timedelta(seconds=59)
            nginx.wait_logged(sent[-1].request_id)
            collectors = tmp_path / "requests.yaml"
            collectors.write_text(requests_text(nginx.log_path, upstreams))
            out = cli(
                "collect", "--collectors", str(collectors), "--once", "--state",
                str(tmp_path / "state"), "--buffer", str(tmp_path / "req-buffer"), *kafka,
            )  # fmt: skip
            assert f"{len(sent):,} requests" in out, out
    finally:
        for group in upstreams.values():
            for u in group:
                u.close()

    start = minute - timedelta(minutes=2)
    with power_sources(tmp_path, monkeypatch) as text:
        asyncio.run(
            collect_to_kafka(
                text, kafka_bootstrap, topic_prefix, tmp_path / "power", start=start, polls=60
            )
        )

    first_hour = start.replace(minute=0) - timedelta(hours=1)
    for zone in INTENSITY:
        path = tmp_path / f"{zone}.csv"
        portal_csv(path, zone, first_hour, 4)
        out = cli(
            "grid-backfill", "--csv", str(path), "--zone", zone,
            "--buffer", str(tmp_path / f"grid-buffer-{zone}"), *kafka,
        )  # fmt: skip
        assert "4 grid values" in out, out

    # the requests all end in minute M: the request streams go quiet while the node streams run
    # 13 minutes ahead; the worker stops waiting for a quiet stream after --max-source-skew of
    # wall clock (600 s by default; 20 s here, to keep the test short), then the minutes close
    pool.add("w1", max_source_skew_s=20).start().wait_ready()
    # the minutes up to M + 10 close: bog1's minute M among them
    site_minutes = read_topics(
        kafka_bootstrap, [kafka_topics[SITE_MINUTES.name]], 3 * 12, timeout=240
    )
    assert sum(b'"bog1"' in r.value for r in site_minutes) >= 12
    pool.close()

    lake = tmp_path / "lake"
    land_until_idle(
        Lander(kafka_bootstrap, topic_prefix, lake, tmp_path / "land.log", max_rows=50_000)
    )
    db = tmp_path / "warehouse.duckdb"
    cli("models", "build", "--lake", str(lake), "--db", str(db))

    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select service, sum(requests), sum(it_energy_wh), sum(facility_energy_wh), "
            "sum(operational_gco2e) from fct_energy_per_request_hourly "
            "where site_id = ? group by service order by service",
            [SITE],
        ).fetchall()
        landed = con.execute("select count(*) from stg_request_log").fetchone()
    assert landed == (len(sent),)
    by_service = {service: (requests, it, fac, co2) for service, requests, it, fac, co2 in rows}
    assert set(by_service) == {"catalog-search", "checkout-api"}
    for host, (service, nodes) in SERVICES.items():
        expected_requests = sum(1 for s in sent if s.host == host)
        requests, it_wh, facility_wh, operational_g = by_service[service]
        assert requests == expected_requests
        it_per_request = len(nodes) * NODE_DYNAMIC_WH / expected_requests
        # the stream keeps integer micro-Wh per node-minute: the hand value to 1e-6
        assert it_wh / requests == pytest.approx(it_per_request, rel=1e-6)
        assert facility_wh / requests == pytest.approx(it_per_request * PUE, rel=1e-6)
        assert operational_g / requests == pytest.approx(
            it_per_request * PUE / 1000 * INTENSITY["CO"], rel=1e-6
        )
