"""snmpsim (PyPI `snmpsim`, `snmpsim-command-responder`) as a child process on 127.0.0.1.

It serves one recorded walk (`<community>.snmprec` in a data folder of the test's own) to SNMP
v2c with that community, and to one SNMPv3 user (authPriv) with the community as the v3
context name: snmpsim picks a data file by context, and answers nothing to the default empty
context unless a file is laid out per transport address. `write` rewrites the walk between
polls; snmpsim re-reads a data file when its whole-second mtime changes, so every write also
sets a new, later mtime (a rewrite within the same second would otherwise go unseen). A
record's value may name a variation module (`"numeric"` with settings), which makes the
simulator change it by itself.

The child dies with the test process (PR_SET_PDEATHSIG) and `stop()` kills it; a missing
snmpsim fails the test saying how to install it, never skips.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.collect.snmp import SnmpError, SnmpTarget, SnmpV2c, SnmpV3, get
from tests.support.worker_procs import _die_with_parent, log_tail, stop_child, wait_for

HOW_TO_INSTALL = (
    "install the SNMP simulator into the project's venv: .venv/bin/pip install 'snmpsim>=1.2,<2'"
    " (it brings pysnmp 7 and needs pysmi)"
)
#: SNMP types by snmprec tag.
INTEGER, OCTET_STRING, COUNTER32, GAUGE32, COUNTER64 = 2, 4, 65, 66, 70
#: sysUpTime.0, always served: the readiness probe.
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"

#: OID -> (snmprec tag, value); a value "numeric:rate=..." uses that variation module.
Records = Mapping[str, tuple[int, int | str]]


@dataclass(frozen=True)
class V3User:
    user: str = "pdu-monitor"
    auth_key: str = "auth-passphrase-1"
    priv_key: str = "priv-passphrase-1"


def responder_binary() -> str:
    """snmpsim's command responder beside this Python, or on PATH; else fail the test."""
    beside = Path(sys.executable).with_name("snmpsim-command-responder")
    if beside.exists():
        return str(beside)
    found = shutil.which("snmpsim-command-responder")
    if not found:
        pytest.fail(f"snmpsim-command-responder is missing: {HOW_TO_INSTALL}", pytrace=False)
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.strip(".").split("."))


def snmprec(records: Records) -> str:
    """The snmprec text of `records`, in OID order as snmpsim wants it."""
    lines = [f"{SYS_UPTIME}|67|100"]
    for oid in sorted(records, key=_oid_key):
        tag, value = records[oid]
        if isinstance(value, str) and value.startswith("numeric:"):
            lines.append(f"{oid.strip('.')}|{tag}:numeric|{value.removeprefix('numeric:')}")
        else:
            lines.append(f"{oid.strip('.')}|{tag}|{value}")
    return "\n".join(lines) + "\n"


class SnmpSim:
    """One snmpsim responder serving `records` as community `community`, and to `v3`."""

    def __init__(self, folder: Path, records: Records, *, community: str, v3: V3User) -> None:
        self.community = community
        self.v3 = v3
        self.data = folder / "data"
        self.cache = folder / "cache"
        self.data.mkdir(parents=True)
        self.cache.mkdir()
        self.log = folder / "snmpsim.log"
        self.port = free_udp_port()
        self._mtime = int(time.time()) + 10
        self.write(records)
        args = [
            responder_binary(),
            f"--data-dir={self.data}",
            f"--cache-dir={self.cache}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
            f"--v3-user={v3.user}",
            f"--v3-auth-key={v3.auth_key}",
            "--v3-auth-proto=SHA",
            f"--v3-priv-key={v3.priv_key}",
            "--v3-priv-proto=AES",
        ]
        env = dict(os.environ)
        if os.geteuid() == 0:
            # It refuses to run as root unless told to or given a user to drop to; a test's
            # tmp folder is root's only, so stay root (it binds an unprivileged port anyway).
            env["SNMPSIM_ALLOW_ROOT"] = "true"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent()
            )

    @property
    def file(self) -> Path:
        return self.data / f"{self.community}.snmprec"

    def write(self, records: Records) -> None:
        """Replace the walk; snmpsim serves the new one from its next request on."""
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        tmp.write_text(snmprec(records))
        self._mtime += 10  # later than the last index snmpsim built: it re-indexes
        os.utime(tmp, (self._mtime, self._mtime))
        tmp.replace(self.file)

    def v2c(
        self, community: str | None = None, *, timeout_s: float = 1.0, retries: int = 0
    ) -> SnmpTarget:
        creds = SnmpV2c(community or self.community)
        return SnmpTarget("127.0.0.1", creds, port=self.port, timeout_s=timeout_s, retries=retries)

    def v3_target(self, **changes: str | float) -> SnmpTarget:
        timeout = float(changes.pop("timeout_s", 1.0))
        creds = SnmpV3(
            str(changes.get("user", self.v3.user)),
            auth_key=str(changes.get("auth_key", self.v3.auth_key)),
            priv_key=str(changes.get("priv_key", self.v3.priv_key)),
            context_name=self.community,
        )
        return SnmpTarget("127.0.0.1", creds, port=self.port, timeout_s=timeout, retries=0)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"snmpsim exited {self.proc.returncode}: {self.tail()}")
        target = SnmpTarget(
            "127.0.0.1", SnmpV2c(self.community), port=self.port, timeout_s=0.5, retries=0
        )
        try:
            asyncio.run(get(target, [SYS_UPTIME]))
        except SnmpError:
            return False
        return True

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(self._answers, timeout, f"snmpsim on udp 127.0.0.1:{self.port}")

    def tail(self) -> str:
        return log_tail(self.log)

    def stop(self) -> None:
        stop_child(self.proc)


@contextmanager
def snmpsim(
    folder: Path, records: Records, *, community: str = "public", v3: V3User | None = None
) -> Iterator[SnmpSim]:
    """A running responder serving `records`; killed on exit, whatever the test did."""
    sim = SnmpSim(folder, records, community=community, v3=v3 or V3User())
    try:
        sim.wait_ready()
        yield sim
    finally:
        sim.stop()
