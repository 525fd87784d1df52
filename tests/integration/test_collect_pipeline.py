"""Collected telemetry all the way: real sources -> `Collector` -> disk buffer -> real Kafka ->
worker -> lander -> warehouse, and the site's PUE and energy per request are the hand-computed
ones.

Four nodes of site bog1 (one per stage-1 partition) read their power from a Redfish service
serving DMTF's rack-server mockup (EnvironmentMetrics PowerWatts 374 W); the site's facility
power comes from an APC meter served by snmpsim (rPDU2DeviceStatusPower 812 = 8,120 W) and its
IT power from DMTF's rack-PDU mockup (PowerWatts 6,438 W). The collector polls every 15 s of
event time (its clock is the test's: 12 minutes of polls take seconds); the test itself adds
what no collector makes here: one checkout-api request per node every 10 s (100 ms each) and a
grid intensity for the hour.

By hand: PUE = 8,120 / 6,438 for every metered minute. Each node draws 374 W, idles at 135 W
(fleet), so its dynamic energy, all of it checkout-api's (the only service with requests), is
(374 - 135) W x 60 s = 3.98333 Wh a minute over 6 requests: 0.663889 IT Wh per request, x PUE
in facility Wh.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.collect.buffer import DiskBuffer
from pipeline.collect.config import parse_collectors
from pipeline.collect.run import BufferedOutput
from pipeline.collect.sender import BufferedKafkaSender
from pipeline.collect.service import Collector, CollectorMetrics
from pipeline.collect.snmp import APC_ENERGY, APC_POWER
from pipeline.collect.sources import reader
from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.records import GridIntensity, RequestLog, epoch_ms
from pipeline.contracts.topics import GRID_INTENSITY, REQUEST_LOG, SITE_MINUTES, TopicSpec
from pipeline.fleet import load_fleet
from tests.integration.test_rebuild import land_until_idle
from tests.support.kafka_read import read_topics
from tests.support.redfish_server import redfish_server
from tests.support.snmpsim import INTEGER, snmpsim
from tests.support.worker_procs import Lander, WorkerPool

SITE = "bog1"
NODES = ("bog1-r1-n02", "bog1-r1-n01", "bog1-r1-n07", "bog1-r1-n06")  # partitions 0, 1, 2, 3
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLLS = 48  # 12 minutes at 15 s
NODE_W, IDLE_W, FACILITY_W, METER_IT_W = 374.0, 135.0, 8_120.0, 6_438.0
PUE = FACILITY_W / METER_IT_W
IT_WH_PER_REQUEST = (NODE_W - IDLE_W) * 60 / 3600 / 6


def collector_text(bmc: str, meter_port: int, pdu: str) -> str:
    creds = "auth: basic, username_env: TEST_BMC_USER, password_env: TEST_BMC_PASSWORD"
    lines = ["poll_interval_s: 15", "nodes:"]
    for node in NODES:
        lines += [
            f"  - node_id: {node}",
            "    sources:",
            f"      - {{kind: redfish, url: '{bmc}', chassis: 1U, {creds}}}",
        ]
    lines += [
        "sites:",
        f"  - site_id: {SITE}",
        "    sources:",
        "      - {kind: snmp, measures: facility, host: 127.0.0.1, "
        f"port: {meter_port}, model: apc, community_env: TEST_PDU_COMMUNITY}}",
        f"      - {{kind: redfish_pdu, measures: it, url: '{pdu}', {creds}}}",
    ]
    return "\n".join(lines) + "\n"


class EventClock:
    def __init__(self, start: datetime = START) -> None:
        self.ms = epoch_ms(start) + 15_000  # the first sample covers 12:00:00-12:00:15

    def __call__(self) -> int:
        return self.ms


@contextmanager
def power_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The BMC, meter and PDU servers of the four nodes and the site; yields the collector
    file that polls them."""
    walk = {f"{APC_POWER}.1": (INTEGER, 812), f"{APC_ENERGY}.1": (INTEGER, 12_345)}
    with (
        snmpsim(tmp_path / "snmp", walk, community="meters") as meter,
        redfish_server("public-rackmount1", tmp_path / "bmc") as bmc,
        redfish_server("public-pdu", tmp_path / "pdu") as pdu,
    ):
        monkeypatch.setenv("TEST_BMC_USER", bmc.username)
        monkeypatch.setenv("TEST_BMC_PASSWORD", bmc.password)
        monkeypatch.setenv("TEST_PDU_COMMUNITY", "meters")
        yield collector_text(bmc.url, meter.port, pdu.url)


async def collect_to_kafka(
    text: str,
    bootstrap: str,
    prefix: str,
    buffer_dir: Path,
    *,
    start: datetime = START,
    polls: int = POLLS,
) -> tuple[int, int]:
    """`polls` polls every 15 s of event time from `start`, through the disk buffer to Kafka."""
    fleet = load_fleet()
    config = parse_collectors(text, fleet)
    clock = EventClock(start)
    collector = Collector(config, fleet, reader, clock_ms=clock)
    node_samples = facility_samples = 0
    with DiskBuffer(buffer_dir, max_bytes=64 << 20, segment_bytes=1 << 20) as buffer:
        async with BufferedKafkaSender(buffer, bootstrap, topic_prefix=prefix) as sender:
            output = BufferedOutput(buffer, sender.notify, CollectorMetrics())
            try:
                for _ in range(polls):
                    result = await collector.poll()
                    assert not result.dead_letters and not result.gaps, result
                    node_samples += len(result.samples)
                    facility_samples += len(result.facility_samples)
                    await output(result)
                    clock.ms += 15_000
                assert await sender.drained(timeout_s=60)
            finally:
                await collector.close()
    return node_samples, facility_samples


async def produce_requests_and_grid(bootstrap: str, topics: dict[str, TopicSpec]) -> int:
    encode = msgspec.json.encode
    fleet = load_fleet()
    team = fleet.service_by_name["checkout-api"].team
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    sent = 0
    try:
        request_topic = topics[REQUEST_LOG.name]
        for second in range(5, POLLS * 15, 10):
            at = START + timedelta(seconds=second)
            for node in NODES:
                record = RequestLog(
                    finished_at=at,
                    request_id=f"{node}-{second}",
                    site_id=SITE,
                    node_id=node,
                    service="checkout-api",
                    team=team,
                    status=200,
                    latency_ms=100.0,
                    bytes_in=500,
                    bytes_out=2_000,
                )
                key = node.encode()
                part = partition_for(key, request_topic.partitions)
                await producer.send(request_topic.name, encode(record), key=key, partition=part)
                sent += 1
        # every zone of the fleet: stage 2 closes a minute once each zone has a value for it
        for zone in sorted({site.grid_zone for site in fleet.sites}):
            grid = GridIntensity(
                valid_from=START,
                valid_to=START + timedelta(hours=1),
                zone=zone,
                carbon_intensity_gco2e_per_kwh=259.5,
                emission_factor_type="lifecycle",
                signal="average",
                source="test",
                is_estimated=False,
            )
            await producer.send(topics[GRID_INTENSITY.name].name, encode(grid), key=zone.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return sent


@pytest.mark.timeout(600)
def test_collected_power_gives_the_hand_computed_pue_and_energy_per_request(
    kafka_bootstrap: str,
    kafka_topics: dict[str, TopicSpec],
    topic_prefix: str,
    pool: WorkerPool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with power_sources(tmp_path, monkeypatch) as text:
        nodes, sites = asyncio.run(
            collect_to_kafka(text, kafka_bootstrap, topic_prefix, tmp_path / "buffer")
        )
    assert (nodes, sites) == (POLLS * len(NODES), POLLS)
    asyncio.run(produce_requests_and_grid(kafka_bootstrap, kafka_topics))

    pool.add("w1").start().wait_ready()
    # minutes 12:00-12:08 close (the inputs end at 12:12, lateness 120 s): nine per site
    closed = 9
    site_minutes = read_topics(
        kafka_bootstrap, [kafka_topics[SITE_MINUTES.name]], closed * 3, timeout=240
    )
    assert sum(b'"bog1"' in r.value for r in site_minutes) >= closed
    pool.close()

    lake = tmp_path / "lake"
    lander = Lander(kafka_bootstrap, topic_prefix, lake, tmp_path / "land.log", max_rows=50_000)
    land_until_idle(lander)
    db = tmp_path / "warehouse.duckdb"
    built = subprocess.run(
        [sys.executable, "-m", "pipeline", "models", "build", "--lake", str(lake), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr

    with duckdb.connect(str(db), read_only=True) as con:
        ((pue, metered_minutes),) = con.execute(
            "select sum(metered_facility_energy_wh) / sum(metered_it_energy_wh), count(*) "
            "from stg_site_minutes "
            "where site_id = ? and pue_source = 'metered'",
            [SITE],
        ).fetchall()
        daily = con.execute(
            "select pue from fct_site_efficiency_daily where site_id = ?", [SITE]
        ).fetchall()
        per_request = con.execute(
            "select requests, it_wh_per_request, facility_wh_per_request "
            "from fct_energy_per_request_hourly where site_id = ? and service = 'checkout-api'",
            [SITE],
        ).fetchall()
    assert metered_minutes >= closed
    # the stream keeps energy in integer micro-Wh per minute (135.333332 Wh for 135.3333...):
    # agreement to 1e-7 is the hand value
    assert pue == pytest.approx(PUE, rel=1e-7)
    assert [p for (p,) in daily] == [pytest.approx(PUE, rel=1e-7)]
    ((requests, it_wh, facility_wh),) = per_request
    assert requests >= closed * 6 * len(NODES)  # every closed minute's requests
    assert it_wh == pytest.approx(IT_WH_PER_REQUEST, rel=1e-6)
    assert facility_wh == pytest.approx(IT_WH_PER_REQUEST * PUE, rel=1e-6)
