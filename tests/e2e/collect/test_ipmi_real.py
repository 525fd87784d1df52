"""The IPMI reader against a real BMC protocol stack: Debian's ipmitool and OpenIPMI's ipmi_sim.

ipmitool talks IPMI 2.0 (RMCP+, RAKP authentication) over UDP to ipmi_sim on 127.0.0.1, which
answers DCMI Get Power Reading through the test module of `tests.support.ipmi_sim` (ipmi_sim
has no DCMI of its own). Values change between polls by rewriting the module's reading file.
Failures are real ones: a refused password or user, a port nobody serves, ipmitool missing, an
ipmitool that hangs past the deadline.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.collect.ipmi import (
    IpmiAuthError,
    IpmiError,
    read_dcmi_power,
    read_dcmi_power_parsed,
)
from pipeline.collect.readings import Quantity, Reading
from tests.support.ipmi_sim import DcmiReading, IpmiSim, free_udp_port, ipmi_sim

pytestmark = pytest.mark.slow

T0_MS = 1_764_000_000_000


def clock() -> int:
    return T0_MS


@pytest.fixture(scope="module")
def bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    with ipmi_sim(tmp_path_factory.mktemp("ipmi-sim")) as sim:
        yield sim


def read(sim: IpmiSim, **changes: str | float | int) -> list[Reading]:
    return asyncio.run(read_dcmi_power(sim.target(**changes), clock_ms=clock))


def test_ipmi_sim_answers_mc_info_to_the_real_ipmitool(bmc: IpmiSim) -> None:
    done = bmc.ipmitool("mc", "info")
    assert done.returncode == 0, done.stderr
    assert "IPMI Version              : 2.0" in done.stdout


def test_dcmi_power_reading_end_to_end_and_it_follows_the_bmc(bmc: IpmiSim) -> None:
    source = f"ipmi:127.0.0.1:{bmc.port}/dcmi"
    bmc.write(DcmiReading(current_w=187))
    assert read(bmc) == [Reading(Quantity.POWER_W, 187.0, T0_MS, source)]
    bmc.write(DcmiReading(current_w=215, minimum_w=162, maximum_w=276, average_w=176))
    parsed = asyncio.run(read_dcmi_power_parsed(bmc.target(), clock_ms=clock))
    assert parsed.readings == [Reading(Quantity.POWER_W, 215.0, T0_MS, source)]
    assert parsed.power is not None
    assert (parsed.power.minimum_w, parsed.power.maximum_w, parsed.power.average_w) == (
        162,
        276,
        176,
    )
    assert parsed.power.sampling_period_s == 60 and parsed.power.is_activated


def test_a_deactivated_reading_is_no_reading(bmc: IpmiSim) -> None:
    bmc.write(DcmiReading(current_w=319, is_activated=False))
    parsed = asyncio.run(read_dcmi_power_parsed(bmc.target(), clock_ms=clock))
    assert parsed.readings == []
    assert "deactivated" in parsed.skipped[0].reason


@pytest.mark.parametrize("code", [0xC1, 0xD5])
def test_a_bmc_without_dcmi_power_is_no_reading_not_an_error(bmc: IpmiSim, code: int) -> None:
    bmc.write(DcmiReading(completion_code=code))
    parsed = asyncio.run(read_dcmi_power_parsed(bmc.target(), clock_ms=clock))
    assert parsed.readings == []
    assert f"0x{code:02x}" in parsed.skipped[0].reason


def test_another_dcmi_failure_is_an_error(bmc: IpmiSim) -> None:
    bmc.write(DcmiReading(completion_code=0xC3))  # timeout while processing
    with pytest.raises(IpmiError, match=r"0xc3"):
        read(bmc)


def test_a_wrong_password_is_an_auth_error_that_never_shows_it(bmc: IpmiSim) -> None:
    bmc.write(DcmiReading())
    wrong = "not-the-password-42"
    with pytest.raises(IpmiAuthError, match="password") as caught:
        read(bmc, password=wrong)
    assert caught.value.host == f"127.0.0.1:{bmc.port}"
    assert wrong not in str(caught.value) and bmc.password not in str(caught.value)


def test_an_unknown_user_is_an_auth_error(bmc: IpmiSim) -> None:
    with pytest.raises(IpmiAuthError, match="username"):
        read(bmc, username="nobody")


def test_a_port_nobody_serves_is_an_error_after_ipmitools_timeout(bmc: IpmiSim) -> None:
    with pytest.raises(IpmiError, match="no IPMI session") as caught:
        read(bmc, port=free_udp_port(), timeout_s=1, retries=1)
    assert not isinstance(caught.value, IpmiAuthError)
    assert bmc.password not in str(caught.value)


def test_ipmitool_missing_is_an_error_saying_how_to_install(bmc: IpmiSim, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-ipmitool")
    with pytest.raises(IpmiError, match="apt-get install -y ipmitool"):
        asyncio.run(read_dcmi_power(bmc.target(), ipmitool=missing, clock_ms=clock))


def fake_ipmitool(folder: Path, body: str) -> str:
    """A stand-in ipmitool (a Python script) that records its argv, env and pid."""
    script = folder / "ipmitool"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"folder = {str(folder)!r}\n"
        "open(os.path.join(folder, 'argv'), 'w').write('\\n'.join(sys.argv))\n"
        "open(os.path.join(folder, 'password'), 'w').write(os.environ.get('IPMI_PASSWORD', ''))\n"
        "open(os.path.join(folder, 'pid'), 'w').write(str(os.getpid()))\n" + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_an_ipmitool_that_hangs_is_killed_at_the_deadline(bmc: IpmiSim, tmp_path: Path) -> None:
    hanging = fake_ipmitool(tmp_path, "time.sleep(120)\n")
    with pytest.raises(IpmiError, match=r"no answer within 1\.5 s"):
        asyncio.run(read_dcmi_power(bmc.target(), ipmitool=hanging, clock_ms=clock, deadline_s=1.5))
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_the_password_reaches_the_child_by_environment_only(bmc: IpmiSim, tmp_path: Path) -> None:
    recorded = (
        "    Instantaneous power reading:                   150 Watts\n"
        "    Power reading state is:                   activated\n"
    )
    printing = fake_ipmitool(tmp_path, f"sys.stdout.write({recorded!r})\n")
    readings = asyncio.run(read_dcmi_power(bmc.target(), ipmitool=printing, clock_ms=clock))
    assert [r.value for r in readings] == [150.0]
    argv = (tmp_path / "argv").read_text()
    assert bmc.password not in argv and "-E" in argv.splitlines()
    assert (tmp_path / "password").read_text() == bmc.password
