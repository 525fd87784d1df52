"""OpenIPMI's BMC simulator `ipmi_sim` as a child process on 127.0.0.1, answering DCMI power.

ipmi_sim (Debian `openipmi`) speaks IPMI 1.5 and 2.0 (RMCP+) over UDP with real session
authentication, but has no DCMI: Get Power Reading (netfn 0x2c, cmd 0x02, group extension
0xdc) answers "Invalid command" (0xc1). Its `loadlib` config line loads a shared object whose
`ipmi_sim_module_init` may call `ipmi_emu_register_group_extension_handler(0xdc, ...)`, which
the `ipmi_sim` binary exports. `DCMI_MODULE_C` is such a module: it answers Get Power Reading
from a text file the test rewrites between polls (`write`), in DCMI's wire format, so the real
ipmitool decodes and prints a real DCMI response. It is compiled with gcc into the test's own
folder. The handler reads `cmd` from ipmi_sim's `msg_t`, whose layout is not installed as a
header: the offsets (cmd 0x56, data 0x58, len 0x60 on x86_64) are those of OpenIPMI 2.0.33,
checked against `check_msg_length` and the group-extension dispatch in Debian's binary.

The child dies with the test process (PR_SET_PDEATHSIG) and `stop()` kills it; a missing
ipmi_sim, ipmitool or gcc fails the test saying how to install it, never skips.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.collect.ipmi import IpmiTarget
from tests.support.worker_procs import _die_with_parent, log_tail, stop_child, wait_for

HOW_TO_INSTALL = {
    "ipmi_sim": "apt-get install -y openipmi",
    "ipmitool": "apt-get install -y ipmitool",
    "gcc": "apt-get install -y gcc",
}

DCMI_MODULE_C = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ipmi_sim's msg_t up to cmd, data and len (OpenIPMI 2.0.33, x86_64). */
typedef struct {
    unsigned char head[0x56];
    unsigned char cmd;
    unsigned char *data;
    unsigned int len;
} msg_head_t;
_Static_assert(offsetof(msg_head_t, cmd) == 0x56, "msg_t.cmd");
_Static_assert(offsetof(msg_head_t, data) == 0x58, "msg_t.data");
_Static_assert(offsetof(msg_head_t, len) == 0x60, "msg_t.len");

typedef void (*cmd_handler_f)(void *mc, void *msg, unsigned char *rdata,
                              unsigned int *rdata_len, void *cb_data);
extern void ipmi_emu_register_group_extension_handler(uint8_t ge, cmd_handler_f h, void *cb);

static char reading_file[4096];

static void put16(unsigned char *p, unsigned int v) { p[0] = v; p[1] = v >> 8; }
static void put32(unsigned char *p, unsigned long v) {
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

/* DCMI Get Power Reading: cc, 0xdc, current, min, max, average (16-bit W), timestamp,
   period (ms, 32-bit), state (bit 6: activated). All from "cc cur min max avg ts ms state". */
static void dcmi(void *mc, void *m, unsigned char *rdata, unsigned int *rdata_len, void *cb) {
    msg_head_t *msg = m;
    unsigned int cc, cur, min, max, avg, state;
    unsigned long ts, period_ms;
    FILE *f;

    if (msg->cmd != 0x02) { rdata[0] = 0xc1; *rdata_len = 1; return; }
    f = fopen(reading_file, "r");
    if (!f) { rdata[0] = 0xff; *rdata_len = 1; return; }
    if (fscanf(f, "%x %u %u %u %u %lu %lu %x", &cc, &cur, &min, &max, &avg, &ts, &period_ms,
               &state) != 8) { fclose(f); rdata[0] = 0xff; *rdata_len = 1; return; }
    fclose(f);
    rdata[0] = cc;
    if (cc != 0) { *rdata_len = 1; return; }
    rdata[1] = 0xdc;
    put16(rdata + 2, cur); put16(rdata + 4, min); put16(rdata + 6, max); put16(rdata + 8, avg);
    put32(rdata + 10, ts); put32(rdata + 14, period_ms);
    rdata[18] = state;
    *rdata_len = 19;
}

int ipmi_sim_module_print_version(void *sys, char *options) {
    printf("microdc dcmi power test module 1\n");
    return 0;
}

int ipmi_sim_module_init(void *sys, const char *options) {
    if (!options || !*options) return 22; /* EINVAL: the reading file is the option */
    strncpy(reading_file, options, sizeof(reading_file) - 1);
    ipmi_emu_register_group_extension_handler(0xdc, dcmi, NULL);
    return 0;
}
"""


@dataclass(frozen=True)
class DcmiReading:
    """What the simulated BMC answers to Get Power Reading next; `completion_code` != 0 answers
    only that code (0xc1: no DCMI, 0xd5: not in the present state)."""

    current_w: int = 187
    minimum_w: int = 120
    maximum_w: int = 240
    average_w: int = 190
    timestamp_s: int = 1_764_000_000
    period_ms: int = 60_000
    is_activated: bool = True
    completion_code: int = 0

    def line(self) -> str:
        state = 0x40 if self.is_activated else 0
        return (
            f"{self.completion_code:x} {self.current_w} {self.minimum_w} {self.maximum_w}"
            f" {self.average_w} {self.timestamp_s} {self.period_ms} {state:x}\n"
        )


def binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: {HOW_TO_INSTALL[name]} (as root)", pytrace=False)
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_module(folder: Path) -> Path:
    """The DCMI module compiled into `folder`; a compiler error fails the test with it."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.fail(f"the DCMI module's msg_t offsets are x86_64's, not {platform.machine()}")
    source, built = folder / "dcmi_power.c", folder / "dcmi_power.so"
    source.write_text(DCMI_MODULE_C)
    done = subprocess.run(
        [binary("gcc"), "-shared", "-fPIC", "-O2", "-o", str(built), str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"gcc could not build the DCMI module:\n{done.stderr}", pytrace=False)
    return built


class IpmiSim:
    """One ipmi_sim BMC on udp 127.0.0.1:`port` with one admin user, answering DCMI power."""

    username = "monitor"
    password = "bmc-pass-7e1"

    def __init__(self, folder: Path, reading: DcmiReading) -> None:
        self.folder = folder
        self.port = free_udp_port()
        self.reading_file = folder / "dcmi-reading.txt"
        self.write(reading)
        module = build_module(folder)
        state = folder / "state"
        state.mkdir()
        lan_conf = folder / "lan.conf"
        lan_conf.write_text(
            f'name "microdc-bmc"\n'
            f'loadlib "{module}" "{self.reading_file}"\n'
            "set_working_mc 0x20\n"
            "  startlan 1\n"
            f"    addr 127.0.0.1 {self.port}\n"
            "    priv_limit admin\n"
            "    allowed_auths_callback none md2 md5 straight\n"
            "    allowed_auths_user none md2 md5 straight\n"
            "    allowed_auths_operator none md2 md5 straight\n"
            "    allowed_auths_admin none md2 md5 straight\n"
            "    guid a123456789abcdefa123456789abcdef\n"
            "  endlan\n"
            f'  user 2 true "{self.username}" "{self.password}" admin 10 none md2 md5 straight\n'
        )
        emu = folder / "bmc.emu"
        emu.write_text(
            "mc_setbmc 0x20\n"
            "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n"
            "mc_enable 0x20\n"
        )
        self.log = folder / "ipmi_sim.log"
        args = [binary("ipmi_sim"), "-c", str(lan_conf), "-f", str(emu), "-s", str(state), "-n"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
                preexec_fn=_die_with_parent(),
            )

    def write(self, reading: DcmiReading) -> None:
        """What the next Get Power Reading answers (the module reads the file per request)."""
        tmp = self.reading_file.with_name(f".{self.reading_file.name}.tmp")
        tmp.write_text(reading.line())
        tmp.replace(self.reading_file)

    def target(self, **changes: str | float | int) -> IpmiTarget:
        return IpmiTarget(
            "127.0.0.1",
            username=str(changes.get("username", self.username)),
            password=str(changes.get("password", self.password)),
            port=int(changes.get("port", self.port)),
            timeout_s=float(changes.get("timeout_s", 1.0)),
            retries=int(changes.get("retries", 1)),
        )

    def ipmitool(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real ipmitool against this BMC (lanplus, password by -E)."""
        env = dict(os.environ, IPMI_PASSWORD=self.password)
        env.pop("IPMITOOL_PASSWORD", None)
        argv = [binary("ipmitool"), "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.port)]
        argv += ["-U", self.username, "-E", "-N", "1", "-R", "1", *args]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"ipmi_sim exited {self.proc.returncode}: {self.tail()}")
        return self.ipmitool("mc", "info").returncode == 0

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(self._answers, timeout, f"ipmi_sim on udp 127.0.0.1:{self.port}", every=0.3)

    def tail(self) -> str:
        return log_tail(self.log)

    def stop(self) -> None:
        stop_child(self.proc)


@contextmanager
def ipmi_sim(folder: Path, reading: DcmiReading | None = None) -> Iterator[IpmiSim]:
    """A running simulated BMC; killed on exit, whatever the test did."""
    binary("ipmitool")
    sim = IpmiSim(folder, reading or DcmiReading())
    try:
        sim.wait_ready()
        yield sim
    finally:
        sim.stop()
