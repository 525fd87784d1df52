"""Debian's node_exporter and Prometheus as child processes, over a fake sysfs/procfs tree.

`FakeHost` writes the files node_exporter's rapl, cpu and netdev collectors read (powercap
`energy_uj` and `max_energy_range_uj`, `/proc/stat`, `/proc/net/dev`), each by an atomic rename
so a scrape never sees half a file. `Daemon` starts a binary that dies with the test process
(PR_SET_PDEATHSIG) and is killed by `stop()`; a missing binary fails the test with how to
install it, never skips.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from pipeline.localkafka import free_ports
from tests.support.worker_procs import _die_with_parent, log_tail, stop_child, wait_for

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMETHEUS = "/usr/bin/prometheus"
HOW_TO_INSTALL = (
    "install Debian's exporters as root: apt-get install -y prometheus-node-exporter prometheus"
)

#: /proc/stat counts in USER_HZ (100 per second on Linux): node_exporter divides by 100.
USER_HZ = 100
_STAT_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def require_binary(path: str) -> str:
    """`path` if it is an executable, else fail the test saying how to install it."""
    found = shutil.which(path)
    if not found:
        pytest.fail(f"{path} is missing: {HOW_TO_INSTALL}", pytrace=False)
    return found


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


class FakeHost:
    """A sysfs and a procfs root with RAPL zones, CPUs and NICs whose counters a test sets."""

    def __init__(self, root: Path) -> None:
        self.sysfs = root / "sys"
        self.procfs = root / "proc"
        self.powercap = self.sysfs / "class" / "powercap"
        self.powercap.mkdir(parents=True)

    def zone(self, folder: str, name: str, energy_uj: int, max_energy_range_uj: int) -> str:
        """Create powercap zone `folder` (e.g. intel-rapl:0:0); its path as node_exporter says."""
        _write(self.powercap / folder / "name", name + "\n")
        _write(self.powercap / folder / "max_energy_range_uj", f"{max_energy_range_uj}\n")
        self.set_energy(folder, energy_uj)
        return str(self.powercap / folder)

    def set_energy(self, folder: str, energy_uj: int) -> None:
        _write(self.powercap / folder / "energy_uj", f"{energy_uj}\n")

    def set_cpus(self, ticks: list[dict[str, int]]) -> None:
        """Per CPU, its mode -> USER_HZ ticks (missing modes are 0)."""
        rows = [[cpu.get(mode, 0) for mode in _STAT_MODES] + [0, 0] for cpu in ticks]
        total = [sum(col) for col in zip(*rows, strict=True)]
        lines = ["cpu  " + " ".join(map(str, total))]
        lines += [f"cpu{i} " + " ".join(map(str, row)) for i, row in enumerate(rows)]
        lines += ["intr 0", "ctxt 0", "btime 1764000000", "processes 1"]
        lines += ["procs_running 1", "procs_blocked 0"]
        _write(self.procfs / "stat", "\n".join(lines) + "\n")

    def set_nics(self, nics: dict[str, tuple[int, int]]) -> None:
        """Per device, (rx bytes, tx bytes)."""
        lines = [
            "Inter-|   Receive                                                |  Transmit",
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
            "errs drop fifo colls carrier compressed",
        ]
        for dev, (rx, tx) in nics.items():
            lines.append(f"{dev:>6}: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0")
        _write(self.procfs / "net" / "dev", "\n".join(lines) + "\n")


class Daemon:
    """One child process listening on 127.0.0.1:`port`, its output in `log`."""

    def __init__(self, name: str, args: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> str | None:
        """The body of GET `path`, or None while it does not answer 200."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as answer:
                return str(answer.read().decode()) if answer.status == 200 else None
        except OSError:
            return None

    def wait_ready(self, path: str, timeout: float = 30) -> None:
        wait_for(lambda: self.get(path), timeout, f"{self.name} to answer {path}")

    def tail(self) -> str:
        return log_tail(self.log)

    def stop(self) -> None:
        stop_child(self.proc)


def start_node_exporter(host: FakeHost, log: Path) -> Daemon:
    """node_exporter with only the rapl, cpu and netdev collectors, reading `host`'s tree."""
    binary = require_binary(NODE_EXPORTER)
    (port,) = free_ports(1)
    args = [
        binary,
        f"--path.sysfs={host.sysfs}",
        f"--path.procfs={host.procfs}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.rapl",
        "--collector.cpu",
        "--collector.netdev",
        # netlink would read this machine's real interfaces, not the fake /proc/net/dev
        "--no-collector.netdev.netlink",
    ]
    daemon = Daemon("prometheus-node-exporter", args, port, log)
    try:
        daemon.wait_ready("/metrics")
    except AssertionError:
        daemon.stop()
        raise
    return daemon


def start_prometheus(target: str, workdir: Path, scrape_interval_s: int = 1) -> Daemon:
    """A Prometheus server scraping `target` (host:port) every `scrape_interval_s` seconds."""
    binary = require_binary(PROMETHEUS)
    (port,) = free_ports(1)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval_s}s\n"
        f"  scrape_timeout: {scrape_interval_s}s\n"
        "scrape_configs:\n"
        "  - job_name: node\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    daemon = Daemon("prometheus", args, port, workdir / "prometheus.log")
    try:
        daemon.wait_ready("/-/ready", timeout=60)
    except AssertionError:
        daemon.stop()
        raise
    return daemon
