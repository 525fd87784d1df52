"""Real Debian node_exporter 1.5 and Prometheus 2.42 on loopback: scrape, query, counters -> W.

node_exporter reads a fake powercap/proc tree the test writes (package, core and dram zones,
two CPUs, three NICs); the test advances `energy_uj`, wraps it past `max_energy_range_uj`, and
checks the mean power `CounterRates` makes of `scrape`'s Readings. Then a Prometheus server
scrapes the same exporter each second and `query_server` must give the same quantities, with
the server's sample timestamps. Install the binaries: apt-get install prometheus-node-exporter
prometheus (the test fails, saying so, when they are missing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.collect.counters import CounterRates, Outcome
from pipeline.collect.prometheus import (
    PrometheusDataError,
    PrometheusUnavailableError,
    query_server,
    scrape,
)
from pipeline.collect.readings import Quantity, Reading
from pipeline.localkafka import free_ports
from tests.support.exporters import (
    HOW_TO_INSTALL,
    USER_HZ,
    Daemon,
    FakeHost,
    require_binary,
    start_node_exporter,
    start_prometheus,
)
from tests.support.worker_procs import wait_for

pytestmark = pytest.mark.slow

#: intel-rapl:0 max_energy_range_uj on a Xeon (262,143.328850 J), and a dram zone's
PACKAGE_MAX_UJ = 262_143_328_850
DRAM_MAX_UJ = 65_712_999_613
CPUS = [
    {"user": 60_000, "nice": 200, "system": 30_000, "idle": 500_000, "iowait": 10_000,
     "irq": 100, "softirq": 300, "steal": 0},
    {"user": 40_000, "system": 20_000, "idle": 550_000, "iowait": 5_000, "softirq": 200},
]  # fmt: skip
NICS = {"lo": (5_000, 5_000), "eth0": (123_456, 654_321), "docker0": (1_000, 2_000)}


@dataclasses.dataclass
class Node:
    host: FakeHost
    exporter: Daemon
    package_path: str
    dram_path: str

    @property
    def metrics_url(self) -> str:
        return self.exporter.url + "/metrics"

    @property
    def wrap_j(self) -> dict[str, float]:
        return {self.package_path: PACKAGE_MAX_UJ / 1e6, self.dram_path: DRAM_MAX_UJ / 1e6}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    host = FakeHost(tmp_path / "host")
    package = host.zone("intel-rapl:0", "package-0", PACKAGE_MAX_UJ - 3_000_000_000, PACKAGE_MAX_UJ)
    host.zone("intel-rapl:0:0", "core", 1_000_000, PACKAGE_MAX_UJ)
    dram = host.zone("intel-rapl:0:1", "dram", 10_000_000, DRAM_MAX_UJ)
    host.set_cpus(CPUS)
    host.set_nics(NICS)
    exporter = start_node_exporter(host, tmp_path / "node-exporter.log")
    try:
        yield Node(host, exporter, package, dram)
    finally:
        exporter.stop()


def by_quantity(readings: list[Reading]) -> dict[tuple[Quantity, str], Reading]:
    """Readings keyed by (quantity, source suffix after '#', '' for none)."""
    keyed = {(r.quantity, r.source.partition("#")[2]): r for r in readings}
    assert len(keyed) == len(readings), readings
    return keyed


def test_scraped_rapl_counters_give_the_mean_power_across_a_wrap(node: Node) -> None:
    times = iter([0, 10_000, 20_000, 30_000])  # the receive times, injected: exact intervals
    package, core, dram = "intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"

    def scraped() -> dict[tuple[Quantity, str], Reading]:
        got = asyncio.run(
            scrape(
                node.metrics_url, timeout_s=5, clock=lambda: next(times), rapl_wrap_j=node.wrap_j
            )
        )
        return by_quantity(got)

    rates = CounterRates({Quantity.ENERGY_J: 5_000.0})

    def power(readings: dict[tuple[Quantity, str], Reading]) -> list[tuple[Outcome, float | None]]:
        out = []
        for key in (
            (Quantity.ENERGY_J, "rapl:package:intel-rapl:0"),
            (Quantity.ENERGY_J, "rapl:dram:intel-rapl:0:1"),
        ):
            rate = rates.update(readings[key])
            out.append((rate.outcome, rate.per_s))
        return out

    first = scraped()
    energy = {k[1]: r for k, r in first.items() if k[0] is Quantity.ENERGY_J}
    # package and dram only, one Reading each; core (inside package) is not among them
    assert sorted(energy) == ["rapl:dram:intel-rapl:0:1", "rapl:package:intel-rapl:0"]
    assert energy["rapl:package:intel-rapl:0"].value == (PACKAGE_MAX_UJ - 3_000_000_000) / 1e6
    assert energy["rapl:package:intel-rapl:0"].wrap_at == PACKAGE_MAX_UJ / 1e6
    assert power(first) == [(Outcome.PRIMED, None), (Outcome.PRIMED, None)]

    # 10 s: package +2,000 J (200 W), dram +150 J (15 W); core jumps 900 J: never added
    node.host.set_energy(package, PACKAGE_MAX_UJ - 1_000_000_000)
    node.host.set_energy(dram, 160_000_000)
    node.host.set_energy(core, 901_000_000)
    assert power(scraped()) == [
        (Outcome.RATE, pytest.approx(200.0)),
        (Outcome.RATE, pytest.approx(15.0)),
    ]

    # 10 s: package 1,000 J to the top and 1,500 J past it, read as 1,500 J: 250 W, not -26 kW
    node.host.set_energy(package, 1_500_000_000)
    node.host.set_energy(dram, 260_000_000)
    node.host.set_energy(core, 1_000_000)  # core wrapped too: nothing of it shows
    third = scraped()
    assert third[(Quantity.ENERGY_J, "rapl:package:intel-rapl:0")].value == 1_500.0
    assert power(third) == [
        (Outcome.WRAPPED, pytest.approx(250.0)),
        (Outcome.RATE, pytest.approx(10.0)),
    ]
    # and on after the wrap: +2,000 J in 10 s
    node.host.set_energy(package, 3_500_000_000)
    fourth = scraped()
    r = fourth[(Quantity.ENERGY_J, "rapl:package:intel-rapl:0")]
    assert rates.update(r).per_s == pytest.approx(200.0)


def test_a_wrap_without_its_modulus_is_a_gap_never_a_negative_power(node: Node) -> None:
    times = iter([0, 10_000, 20_000])
    rates = CounterRates({Quantity.ENERGY_J: 5_000.0})
    key = (Quantity.ENERGY_J, "rapl:package:intel-rapl:0")
    got = []
    for energy_uj in (PACKAGE_MAX_UJ - 1_000_000_000, 1_500_000_000, 3_500_000_000):
        node.host.set_energy("intel-rapl:0", energy_uj)
        readings = asyncio.run(scrape(node.metrics_url, timeout_s=5, clock=lambda: next(times)))
        reading = by_quantity(readings)[key]
        assert reading.wrap_at is None
        rate = rates.update(reading)
        got.append((rate.outcome, rate.per_s))
    assert got == [
        (Outcome.PRIMED, None),
        (Outcome.RESET, None),
        (Outcome.RATE, pytest.approx(200.0)),
    ]


def test_scraped_cpu_seconds_and_nic_bytes(node: Node) -> None:
    got = by_quantity(asyncio.run(scrape(node.metrics_url, timeout_s=5, clock=lambda: 1)))
    busy_ticks = sum(t for cpu in CPUS for mode, t in cpu.items() if mode not in ("idle", "iowait"))
    total_ticks = sum(t for cpu in CPUS for t in cpu.values())
    assert got[(Quantity.CPU_BUSY_S, "")].value == pytest.approx(busy_ticks / USER_HZ)  # 1508
    assert got[(Quantity.CPU_TOTAL_S, "")].value == pytest.approx(total_ticks / USER_HZ)
    # eth0 only: node_exporter leaves lo out itself, docker0 is a bridge
    assert got[(Quantity.NET_RX_BYTES, "")].value == 123_456
    assert got[(Quantity.NET_TX_BYTES, "")].value == 654_321
    assert (Quantity.POWER_W, "") not in got and all(r.at_ms == 1 for r in got.values())


def test_query_server_gives_the_scraped_quantities_with_the_server_timestamps(
    node: Node, tmp_path: Path
) -> None:
    instance = f"127.0.0.1:{node.exporter.port}"
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = start_prometheus(instance, workdir, scrape_interval_s=1)
    try:
        direct = by_quantity(asyncio.run(scrape(node.metrics_url, timeout_s=5)))

        def queried() -> dict[tuple[Quantity, str], Reading] | None:
            got = asyncio.run(query_server(server.url, instance, timeout_s=5, job="node"))
            return by_quantity(got) if len(got) == len(direct) else None

        first = wait_for(queried, 60, "Prometheus to have scraped the exporter", every=0.5)
        assert {k: r.value for k, r in first.items()} == {k: r.value for k, r in direct.items()}
        now_ms = time.time() * 1000
        for r in first.values():
            assert r.source.startswith(f"prometheus:{server.url}/{instance}")
            assert now_ms - 60_000 < r.at_ms <= now_ms + 1000  # a scrape's time, in ms

        # the package draws 100 W for a while: the server's timestamps make the interval
        before = first[(Quantity.ENERGY_J, "rapl:package:intel-rapl:0")]
        node.host.set_energy("intel-rapl:0", PACKAGE_MAX_UJ - 2_000_000_000)

        def advanced() -> Reading | None:
            got = queried()
            r = got and got[(Quantity.ENERGY_J, "rapl:package:intel-rapl:0")]
            return r if r and r.value != before.value else None

        after = wait_for(advanced, 30, "Prometheus to scrape the new energy_uj", every=0.5)
        assert after.value - before.value == pytest.approx(1_000.0)
        assert after.at_ms > before.at_ms
        rates = CounterRates({Quantity.ENERGY_J: 1e9})
        rates.update(before)
        rate = rates.update(after)
        assert rate.outcome is Outcome.RATE
        assert rate.per_s == pytest.approx(1_000.0 / ((after.at_ms - before.at_ms) / 1000))
    finally:
        server.stop()


def test_a_missing_binary_fails_saying_how_to_install_it() -> None:
    with pytest.raises(pytest.fail.Exception) as info:
        require_binary("/nonexistent/prometheus-node-exporter")
    assert HOW_TO_INSTALL in str(info.value)
    assert "apt-get install -y prometheus-node-exporter prometheus" in str(info.value)


def test_scrape_errors_name_the_source(node: Node) -> None:
    (port,) = free_ports(1)  # nothing listens there
    with pytest.raises(PrometheusUnavailableError, match=f"prometheus:http://127.0.0.1:{port}/"):
        asyncio.run(scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=5))
    # node_exporter answers its HTML landing page on any other path: not an exposition
    with pytest.raises(PrometheusDataError, match="HTML page: is this the /metrics URL"):
        asyncio.run(scrape(node.exporter.url + "/nope", timeout_s=5))
