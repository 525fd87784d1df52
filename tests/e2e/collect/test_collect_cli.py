"""`microdc collect` as a program against real sources on loopback: a Redfish service serving
DMTF's rack-server mockup (session auth) and Debian's node_exporter over a fake host whose CPU
and NIC counters advance. Node samples combine both (power and temperatures from the BMC,
utilisation and bytes from the exporter); a source that is down is logged once and counted,
and the other goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pipeline.contracts.records import NodeSample
from pipeline.fleet import load_fleet
from pipeline.localkafka import free_ports
from tests.support.exporters import FakeHost, start_node_exporter
from tests.support.redfish_server import RedfishServer, redfish_server
from tests.support.worker_procs import wait_for

pytestmark = pytest.mark.slow

#: What DMTF's public-rackmount1 mockup says (Chassis/1U EnvironmentMetrics, ThermalMetrics).
MOCKUP_POWER_W, MOCKUP_INLET_C, MOCKUP_OUTLET_C = 374.0, 24.8, 40.5


class Ticking:
    """Advances the fake host's CPU ticks (25 % busy) and NIC bytes until stopped."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        busy = idle = rx = 0
        while not self.stop.is_set():
            busy, idle, rx = busy + 25, idle + 75, rx + 10_000
            self.host.set_cpus([{"user": busy, "idle": idle}, {"system": busy, "idle": idle}])
            self.host.set_nics({"lo": (rx, rx), "eth0": (rx, 2 * rx)})
            time.sleep(0.1)

    def __enter__(self) -> Ticking:
        self._run_once()
        self.thread.start()
        return self

    def _run_once(self) -> None:
        self.host.set_cpus([{"idle": 1}, {"idle": 1}])
        self.host.set_nics({"lo": (0, 0), "eth0": (0, 0)})

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[RedfishServer]:
    with redfish_server("public-rackmount1", tmp_path) as server:
        yield server


def collector_file(path: Path, bmc_url: str, exporter_url: str) -> tuple[Path, str]:
    node = load_fleet().nodes[0]
    path.write_text(
        f"""poll_interval_s: 1
nodes:
  - node_id: {node.node_id}
    sources:
      - kind: redfish
        url: {bmc_url}
        chassis: 1U
        auth: session
        username_env: TEST_BMC_USER
        password_env: TEST_BMC_PASSWORD
        timeout_s: 2
      - kind: prometheus
        url: {exporter_url}
        timeout_s: 2
""",
        encoding="utf-8",
    )
    return path, node.node_id


def run_collector(
    tmp_path: Path, collectors: Path, bmc: RedfishServer, samples_wanted: int
) -> tuple[list[NodeSample], str, str]:
    """Run `microdc collect` until it wrote `samples_wanted` samples: (samples, /metrics,
    stderr)."""
    out = tmp_path / "out"
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "TEST_BMC_USER": bmc.username,
        "TEST_BMC_PASSWORD": bmc.password,
        "COLUMNS": "200",
    }
    args = [sys.executable, "-m", "pipeline", "collect", "--collectors", str(collectors)]
    args += ["--out", str(out), "--metrics-port", str(port)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = out / "mdc.node-telemetry.jsonl"
    try:
        wait_for(
            lambda: lines.exists() and len(lines.read_bytes().splitlines()) >= samples_wanted,
            timeout=30,
            what=f"{samples_wanted} node samples",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    decode = msgspec.json.Decoder(NodeSample).decode
    return [decode(line) for line in lines.read_bytes().splitlines()], metrics, err.decode()


def test_a_node_sample_combines_the_bmc_and_the_exporter(
    tmp_path: Path, bmc: RedfishServer
) -> None:
    host = FakeHost(tmp_path / "host")
    with Ticking(host):
        exporter = start_node_exporter(host, tmp_path / "node-exporter.log")
        try:
            collectors, node_id = collector_file(
                tmp_path / "collectors.yaml", bmc.url, exporter.url + "/metrics"
            )
            samples, metrics, _ = run_collector(tmp_path, collectors, bmc, samples_wanted=4)
        finally:
            exporter.stop()
    assert {s.node_id for s in samples} == {node_id}
    assert {(s.power_w, s.inlet_temp_c, s.outlet_temp_c) for s in samples} == {
        (MOCKUP_POWER_W, MOCKUP_INLET_C, MOCKUP_OUTLET_C)
    }
    first, *rest = samples
    assert first.cpu_util is None and first.net_rx_bytes is None  # counters primed: no guess
    assert [s.cpu_util for s in rest] == [pytest.approx(0.25)] * len(rest)  # 25 busy in 100
    # eth0 only (lo is not counted): tx advances twice as fast as rx; bytes are rounded
    assert all(s.net_rx_bytes and s.net_tx_bytes for s in rest), rest
    assert all(
        abs(s.net_tx_bytes - 2 * s.net_rx_bytes) <= 2
        for s in rest
        if s.net_rx_bytes and s.net_tx_bytes
    ), rest
    assert all(0.5 <= s.interval_s <= 2.5 for s in rest)
    assert bmc.logins == 1  # one Redfish session for every poll
    assert "microdc_collect_failures_total{" not in metrics


def test_a_source_that_is_down_is_counted_logged_once_and_the_other_goes_on(
    tmp_path: Path, bmc: RedfishServer
) -> None:
    (closed,) = free_ports(1)  # nothing listens there
    collectors, _ = collector_file(
        tmp_path / "collectors.yaml", bmc.url, f"http://127.0.0.1:{closed}/metrics"
    )
    samples, metrics, err = run_collector(tmp_path, collectors, bmc, samples_wanted=3)
    assert {(s.power_w, s.cpu_util) for s in samples} == {(MOCKUP_POWER_W, None)}
    label = f"prometheus:http://127.0.0.1:{closed}/metrics"
    assert (
        f'microdc_collect_failures_total{{reason="PrometheusUnavailableError",source="{label}"}}'
        in metrics
    )
    assert err.count("not answering") == 1, err
    assert bmc.password not in err


def test_a_site_sample_from_an_snmp_facility_meter_and_a_redfish_rack_pdu(tmp_path: Path) -> None:
    """`--once`: the APC meter's power gauge (hundredths of kW) is the facility power, the
    DMTF PDU mockup's PowerWatts the IT power; the site has no on-site generation."""
    from pipeline.collect.snmp import APC_ENERGY, APC_POWER
    from pipeline.contracts.records import FacilitySample
    from tests.support.snmpsim import INTEGER, snmpsim

    site = load_fleet().sites[0]
    walk = {f"{APC_POWER}.1": (INTEGER, 812), f"{APC_ENERGY}.1": (INTEGER, 12345)}
    with (
        snmpsim(tmp_path / "snmp", walk, community="meters") as meter,
        redfish_server("public-pdu", tmp_path) as pdu,
    ):
        collectors = tmp_path / "collectors.yaml"
        collectors.write_text(
            f"""sites:
  - site_id: {site.site_id}
    onsite_renewable: none
    sources:
      - kind: snmp
        measures: facility
        host: 127.0.0.1
        port: {meter.port}
        model: apc
        community_env: TEST_PDU_COMMUNITY
      - kind: redfish_pdu
        measures: it
        url: {pdu.url}
        auth: basic
        username_env: TEST_BMC_USER
        password_env: TEST_BMC_PASSWORD
""",
            encoding="utf-8",
        )
        out = tmp_path / "out"
        env = {
            **os.environ,
            "TEST_PDU_COMMUNITY": "meters",
            "TEST_BMC_USER": pdu.username,
            "TEST_BMC_PASSWORD": pdu.password,
            "COLUMNS": "200",
        }
        args = [sys.executable, "-m", "pipeline", "collect", "--once"]
        done = subprocess.run(
            [*args, "--collectors", str(collectors), "--out", str(out)],
            env=env,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr.decode()
    lines = (out / "mdc.facility-telemetry.jsonl").read_bytes().splitlines()
    (sample,) = [msgspec.json.decode(line, type=FacilitySample) for line in lines]
    assert sample.site_id == site.site_id
    assert (sample.facility_power_w, sample.it_power_w, sample.onsite_renewable_w) == (
        8120.0,
        6438.0,  # public-pdu: PowerEquipment/RackPDUs/1/Metrics PowerWatts
        0.0,
    )
    assert "meters" not in done.stderr.decode() + done.stdout.decode()  # the community is secret
