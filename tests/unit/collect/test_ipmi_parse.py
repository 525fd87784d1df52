"""The IPMI reader's pure half: ipmitool's `dcmi power reading` output and exits -> readings.

The outputs are real: quoted from bug reports (GitHub issues named beside each) and recorded
from Debian's ipmitool 1.8.19 against ipmi_sim. Whitespace is as ipmitool prints it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.collect.config import IpmiSource, parse_collectors
from pipeline.collect.ipmi import (
    IpmiAuthError,
    IpmiError,
    IpmiTarget,
    child_env,
    command,
    interpret,
    parse_dcmi_power,
    source_of,
)
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.sources import SOURCE_ERRORS, reader
from pipeline.errors import CollectorFileError, ConfigError
from pipeline.fleet import load_fleet

AT_MS = 1_764_000_000_000
SOURCE = "ipmi:bmc-7:623/dcmi"
PASSWORD = "pa55-word-never-shown"

# lovoo/ipmi_exporter#18 (2017): asctime timestamp on its own line, activated.
SUPERMICRO_2017 = """
    Instantaneous power reading:                   215 Watts
    Minimum during sampling period:                162 Watts
    Maximum during sampling period:                276 Watts
    Average power reading over sample period:      176 Watts
    IPMI timestamp:                           Wed Feb 15 12:49:51 2017
    Sampling period:                          01131466 Seconds.
    Power reading state is:                   activated

"""

# ateodorescu/home-assistant-addons#38 (2026), ipmitool 1.8.19: the timestamp has no newline,
# "Sampling period" follows it on the same line.
IPMITOOL_1_8_19 = """
    Instantaneous power reading:                   186 Watts
    Minimum during sampling period:                129 Watts
    Maximum during sampling period:                386 Watts
    Average power reading over sample period:      198 Watts
    IPMI timestamp:                           07/26/26 16:57:12 CDT    Sampling period:                          00898033 Seconds.
    Power reading state is:                   activated

"""  # noqa: E501

# openbmc/openbmc#3257 (Witherspoon): plausible watts, but the state says they are not valid.
OPENBMC_DEACTIVATED = """
    Instantaneous power reading:                   319 Watts
    Minimum during sampling period:                319 Watts
    Maximum during sampling period:                319 Watts
    Average power reading over sample period:      319 Watts
    IPMI timestamp:                           Thu Jan  1 00:00:00 1970
    Sampling period:                          00000000 Seconds.
    Power reading state is:                   deactivated
"""

# openbmc/phosphor-host-ipmid#167: no power sensor configured, all zeros.
OPENBMC_ZEROS = """
    Instantaneous power reading:                     0 Watts
    Minimum during sampling period:                  0 Watts
    Maximum during sampling period:                  0 Watts
    Average power reading over sample period:        0 Watts
    IPMI timestamp:                           Thu Jan  1 00:00:00 1970
    Sampling period:                          00000000 Seconds.
    Power reading state is:                   deactivated
"""

# Recorded: ipmitool 1.8.19 (Debian 12) against ipmi_sim with the DCMI test module.
IPMI_SIM_RECORDED = (
    "\n"
    "    Instantaneous power reading:                   187 Watts\n"
    "    Minimum during sampling period:                120 Watts\n"
    "    Maximum during sampling period:                240 Watts\n"
    "    Average power reading over sample period:      190 Watts\n"
    "    IPMI timestamp:                           11/24/25 16:00:00 UTC"
    "    Sampling period:                          00000060 Seconds.\n"
    "    Power reading state is:                   activated\n"
    "\n\n"
)
IPMI_SIM_ACTIVATED_ZERO = IPMI_SIM_RECORDED.replace(" 187 Watts", "   0 Watts")
IPMI_SIM_FFFF = IPMI_SIM_RECORDED.replace("   187 Watts", " 65535 Watts")

# Recorded stderr of ipmitool 1.8.19 -v against ipmi_sim.
STDERR_DCMI_C1 = (
    "Loading IANA PEN Registry...\nUnable to Get Channel Cipher Suites\n"
    "Running Get VSO Capabilities my_addr 0x20, transit 0, target 0x20\n"
    "Invalid completion code received: Invalid command\nDiscovered IPMB address 0x0\n\n"
    "    DCMI request failed because: Invalid command (c1)\n"
)
STDERR_DCMI_D5 = (
    "Unable to Get Channel Cipher Suites\n\n"
    "    DCMI request failed because: Command not supported in present state (d5)\n"
)
STDERR_WRONG_PASSWORD = (
    "Loading IANA PEN Registry...\nUnable to Get Channel Cipher Suites\n"
    "> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n"
)
STDERR_UNKNOWN_USER = (
    "Unable to Get Channel Cipher Suites\n"
    "RAKP 2 message indicates an error : unauthorized name\n"
    "Error: Unable to establish IPMI v2 / RMCP+ session\n"
)
STDERR_NO_BMC = (
    "Loading IANA PEN Registry...\nGet Auth Capabilities error\n"
    "Error issuing Get Channel Authentication Capabilities request\n"
    "Error: Unable to establish IPMI v2 / RMCP+ session\n"
)


def parse(text: str) -> list[Reading]:
    return parse_dcmi_power(text, SOURCE, AT_MS).readings


# --------------------------------------------------------------------------- readings


def test_the_instantaneous_reading_is_power_w_at_the_receive_time() -> None:
    assert parse(SUPERMICRO_2017) == [Reading(Quantity.POWER_W, 215.0, AT_MS, SOURCE)]


def test_all_printed_values_are_kept_for_logs() -> None:
    power = parse_dcmi_power(SUPERMICRO_2017, SOURCE, AT_MS).power
    assert power is not None
    assert (power.minimum_w, power.maximum_w, power.average_w) == (162, 276, 176)
    assert power.sampling_period_s == 1_131_466
    assert power.is_activated
    assert power.ipmi_timestamp == "Wed Feb 15 12:49:51 2017"


def test_ipmitool_1_8_19_prints_the_sampling_period_after_the_timestamp() -> None:
    parsed = parse_dcmi_power(IPMITOOL_1_8_19, SOURCE, AT_MS)
    assert parsed.readings == [Reading(Quantity.POWER_W, 186.0, AT_MS, SOURCE)]
    assert parsed.power is not None
    assert parsed.power.sampling_period_s == 898_033
    assert parsed.power.ipmi_timestamp == "07/26/26 16:57:12 CDT"
    assert parsed.power.average_w == 198


def test_the_recorded_ipmi_sim_output_parses() -> None:
    parsed = parse_dcmi_power(IPMI_SIM_RECORDED, SOURCE, AT_MS)
    assert parsed.readings == [Reading(Quantity.POWER_W, 187.0, AT_MS, SOURCE)]
    assert parsed.skipped == []
    assert parsed.power is not None and parsed.power.sampling_period_s == 60


def test_the_padded_colon_layout_parses_too() -> None:
    # Synthetic: the label padded before the colon, the number padded after it.
    text = (
        "    Instantaneous power reading              : 215      Watts\n"
        "    Power reading state is                   : activated\n"
    )
    assert parse(text) == [Reading(Quantity.POWER_W, 215.0, AT_MS, SOURCE)]


# --------------------------------------------------------------------------- no reading


def test_a_deactivated_reading_is_no_reading_even_with_plausible_watts() -> None:
    parsed = parse_dcmi_power(OPENBMC_DEACTIVATED, SOURCE, AT_MS)
    assert parsed.readings == []
    [skip] = parsed.skipped
    assert "deactivated" in skip.reason and "319 W" in skip.reason


def test_a_deactivated_zero_is_no_reading_never_0_w() -> None:
    parsed = parse_dcmi_power(OPENBMC_ZEROS, SOURCE, AT_MS)
    assert parsed.readings == []
    assert "deactivated" in parsed.skipped[0].reason


def test_an_activated_zero_is_no_reading() -> None:
    parsed = parse_dcmi_power(IPMI_SIM_ACTIVATED_ZERO, SOURCE, AT_MS)
    assert parsed.readings == []
    assert "0 W" in parsed.skipped[0].reason


def test_0xffff_watts_is_no_measurement() -> None:
    parsed = parse_dcmi_power(IPMI_SIM_FFFF, SOURCE, AT_MS)
    assert parsed.readings == []
    assert "0xFFFF" in parsed.skipped[0].reason


@pytest.mark.parametrize(("stderr", "code"), [(STDERR_DCMI_C1, "0xc1"), (STDERR_DCMI_D5, "0xd5")])
def test_a_bmc_without_dcmi_power_is_skipped_not_an_error(stderr: str, code: str) -> None:
    parsed = interpret(1, "\n", stderr, host="bmc-7:623", source=SOURCE, at_ms=AT_MS)
    assert parsed.readings == []
    [skip] = parsed.skipped
    assert code in skip.reason


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Error: Unable to establish IPMI v2 / RMCP+ session\n",
        "    Instantaneous power reading:                   n/a Watts\n"
        "    Power reading state is:                   activated\n",
        SUPERMICRO_2017.replace("Power reading state is", "Power state"),
    ],
)
def test_output_that_is_no_power_reading_is_an_error_naming_the_host(text: str) -> None:
    with pytest.raises(IpmiError) as caught:
        parse_dcmi_power(text, SOURCE, AT_MS, host="bmc-7:623")
    assert caught.value.host == "bmc-7:623"
    assert str(caught.value).startswith("ipmi bmc-7:623: ")


def test_the_error_quotes_the_output_without_ipmitools_chatter() -> None:
    with pytest.raises(IpmiError, match="no IPMI session") as caught:
        interpret(1, "", STDERR_NO_BMC, host="bmc-7:623", source=SOURCE, at_ms=AT_MS)
    assert "IANA" not in str(caught.value)
    assert not isinstance(caught.value, IpmiAuthError)


@pytest.mark.parametrize(
    ("stderr", "says"),
    [(STDERR_WRONG_PASSWORD, "password"), (STDERR_UNKNOWN_USER, "username")],
)
def test_refused_credentials_are_an_auth_error(stderr: str, says: str) -> None:
    with pytest.raises(IpmiAuthError, match=says):
        interpret(1, "", stderr, host="bmc-7:623", source=SOURCE, at_ms=AT_MS)


def test_another_dcmi_completion_code_is_an_error() -> None:
    stderr = "\n    DCMI request failed because: Timeout (c3)\n"
    with pytest.raises(IpmiError, match=r"Timeout \(0xc3\)"):
        interpret(1, "", stderr, host="bmc-7:623", source=SOURCE, at_ms=AT_MS)


def test_an_unknown_failure_says_the_exit_code() -> None:
    with pytest.raises(IpmiError, match="exited 2: something odd"):
        interpret(2, "", "something odd\n", host="bmc-7:623", source=SOURCE, at_ms=AT_MS)


def test_a_zero_exit_is_parsed() -> None:
    parsed = interpret(0, SUPERMICRO_2017, "", host="h:623", source=SOURCE, at_ms=AT_MS)
    assert [r.value for r in parsed.readings] == [215.0]


# --------------------------------------------------------------------------- the command


def target(**changes: object) -> IpmiTarget:
    fields: dict[str, object] = {"host": "bmc-7", "username": "monitor", "password": PASSWORD}
    fields.update(changes)
    return IpmiTarget(**fields)  # type: ignore[arg-type]


def test_the_password_is_never_on_the_command_line_nor_in_repr() -> None:
    t = target()
    argv = command(t)
    assert PASSWORD not in " ".join(argv) and "-P" not in argv
    assert PASSWORD not in repr(t)
    assert argv[:7] == ["ipmitool", "-I", "lanplus", "-H", "bmc-7", "-p", "623"]
    assert argv[-3:] == ["dcmi", "power", "reading"]
    assert "-E" in argv and argv[argv.index("-U") + 1] == "monitor"


def test_the_password_goes_to_the_child_as_ipmi_password_only() -> None:
    env = child_env(target(), {"PATH": "/usr/bin", "IPMITOOL_PASSWORD": "someone-elses"})
    assert env["IPMI_PASSWORD"] == PASSWORD
    assert "IPMITOOL_PASSWORD" not in env  # it would take precedence over ours
    assert env["PATH"] == "/usr/bin" and env["LC_ALL"] == "C"


def test_timeout_and_retries_become_whole_seconds_and_at_least_one_retry() -> None:
    argv = command(target(timeout_s=1.5, retries=0), "/opt/ipmitool")
    assert argv[0] == "/opt/ipmitool"
    assert argv[argv.index("-N") + 1] == "2"
    assert argv[argv.index("-R") + 1] == "1"  # ipmitool reads -R 0 as its default, 4


def test_an_empty_username_is_the_null_user() -> None:
    assert "-U" not in command(target(username=""))


def test_source_and_address_name_host_and_port() -> None:
    assert source_of(target(port=6230)) == "ipmi:bmc-7:6230/dcmi"
    assert target(host="fd00::7").address == "[fd00::7]:623"


@pytest.mark.parametrize(
    "changes",
    [
        {"host": ""},
        {"host": "-oProxyCommand"},
        {"host": "bmc 7"},
        {"username": "-P"},
        {"port": 0},
        {"timeout_s": 0.0},
        {"retries": -1},
        {"interface": "open"},
    ],
)
def test_a_bad_target_is_a_config_error(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        target(**changes)


# --------------------------------------------------------------------------- the wiring


def collectors(node_id: str, source: str) -> str:
    return f"nodes:\n  - node_id: {node_id}\n    sources:\n{source}"


def test_an_ipmi_source_in_the_collector_file_becomes_a_reader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet = load_fleet()
    node_id = fleet.nodes[0].node_id
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    monkeypatch.setenv("BMC_USER", "monitor")
    text = collectors(
        node_id,
        "      - kind: ipmi\n"
        "        host: 10.20.0.11\n"
        "        username_env: BMC_USER\n"
        f"        password_file: {tmp_path / 'pw'}\n",
    )
    [source] = parse_collectors(text, fleet).nodes[0].sources
    assert isinstance(source, IpmiSource)
    assert (source.port, source.interface, source.retries) == (623, "lanplus", 1)
    made = reader(source)
    assert made.label == "ipmi:10.20.0.11:623"
    assert PASSWORD not in made.label
    assert IpmiError in SOURCE_ERRORS


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ("        host: bmc-1\n", "password_env or password_file"),
        ("        host: -bmc\n        password_env: PW\n", "host"),
        ("        host: bmc-1\n        password_env: PW\n        password_file: /x\n", "not both"),
    ],
)
def test_a_bad_ipmi_source_is_located(lines: str, says: str) -> None:
    fleet = load_fleet()
    text = collectors(fleet.nodes[0].node_id, "      - kind: ipmi\n" + lines)
    with pytest.raises(CollectorFileError, match=says):
        parse_collectors(text, fleet)
