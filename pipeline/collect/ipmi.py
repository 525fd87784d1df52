"""IPMI reader: node power from BMCs without Redfish, by `ipmitool dcmi power reading` (DCMI).

Two layers, as in `snmp`:

- pure parsing (`parse_dcmi_power`, `interpret`) of what ipmitool printed and how it exited
  -> `Reading`s, with what was read but not used in `Parsed.skipped` and why;
- the I/O (`read_dcmi_power`): one `ipmitool -I lanplus -H host -p port -U user -E -v dcmi
  power reading` as an asyncio child process. The password reaches the child only through its
  `IPMI_PASSWORD` environment variable (`-E`), never its command line (which `ps` shows to
  every user). Any failure is one `IpmiError` naming the host: ipmitool missing, no session
  (BMC down, wrong port, LAN channel off), credentials refused (`IpmiAuthError`), a DCMI error,
  a hang past the deadline, output that is not a power reading.

What is read. DCMI Get Power Reading (netfn 0x2c, cmd 0x02, group extension 0xdc) gives the
power now, the minimum, maximum and average over a "sampling period", the BMC's timestamp and
whether the reading is activated. ipmitool prints them as (1.8.19; older versions put the
colon after padding, `Instantaneous power reading              : 215      Watts`):

        Instantaneous power reading:                   215 Watts
        Minimum during sampling period:                162 Watts
        Maximum during sampling period:                276 Watts
        Average power reading over sample period:      176 Watts
        IPMI timestamp:                           10/12/23 13:29:17 CEST    Sampling period:  ...
        Power reading state is:                   activated

(1.8.19 prints the timestamp without a newline, so "Sampling period" follows it on one line.)

Decisions:

- POWER_W is the *instantaneous* reading. The average looks like the better mean-power sample
  but its "sampling period" is the BMC's statistics window, not our poll interval: real BMCs
  report windows of 65 530 s, 898 033 s and 1 131 466 s (days since the statistics were last
  reset), so the average is a long-run figure that hides the last minutes entirely. Mean power
  over a poll interval comes from successive instantaneous samples (or an energy counter from
  another source), as for every other gauge.
- A reading whose state is "deactivated" is no reading (skipped with the value the BMC gave),
  never 0 W and never the value: OpenBMC answers "deactivated" with all zeros when it has no
  power sensor, and the DCMI spec says the values are then not valid. 0 W from an activated
  reading is skipped too: a BMC that answers is powered, its node draws at least standby
  power; a literal 0 is a missing sensor, and a gap is honest where a 0 W sample would
  understate energy, carbon and cost.
- A BMC without DCMI, or without a power reading now (completion codes 0xc1 invalid command,
  0xcb data not present, 0xd5/0xd6 not supported in present state), is no reading with that
  reason, not an error: it answered, and backing off will not make it support DCMI.
- `at_ms` is when ipmitool's answer arrived (an injected clock), not the "IPMI timestamp": BMC
  clocks are often unset (OpenBMC prints 1970), ipmitool prints the time in its own zone with
  an ambiguous abbreviation (CEST, CDT) and older versions print no zone at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.collect.readings import Quantity, Reading
from pipeline.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

HOW_TO_INSTALL = "install ipmitool (Debian/Ubuntu: apt-get install -y ipmitool)"
#: DCMI power values are 16-bit watts; 0xFFFF is no measurement.
_MAX_W = 0xFFFF
#: DCMI completion codes that mean "no power reading here", with what they say.
NOT_SUPPORTED_CODES: Mapping[int, str] = {
    0xC1: "the BMC does not support DCMI Get Power Reading (invalid command)",
    0xCB: "the BMC has no power reading (requested data not present)",
    0xD5: "the power reading is not supported in the BMC's present state",
    0xD6: "the power reading is disabled or unavailable on the BMC",
}
#: Environment variables ipmitool reads a password from; IPMITOOL_PASSWORD takes precedence.
_PASSWORD_ENV = ("IPMITOOL_PASSWORD", "IPMI_PASSWORD")


class IpmiError(PipelineError):
    """An IPMI request failed or answered something unusable; names the host and why."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"ipmi {host}: {reason}")


class IpmiDataError(IpmiError, ValueError):
    """ipmitool's output has no power reading in it: the collector dead-letters it."""


class IpmiAuthError(IpmiError):
    """The BMC refused the credentials (unknown user, wrong password)."""


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class IpmiTarget:
    """A BMC to ask: address, credentials, ipmitool's per-message timeout and retries."""

    host: str
    username: str
    password: str = field(repr=False)
    port: int = 623
    #: `lanplus` (IPMI 2.0, RMCP+) or `lan` (IPMI 1.5, for old BMCs).
    interface: Literal["lanplus", "lan"] = "lanplus"
    #: Seconds between ipmitool's retransmissions (`-N`, whole seconds, at least 1).
    timeout_s: float = 2.0
    #: ipmitool's retries per message (`-R`); 0 is sent as 1 since ipmitool reads 0 as its
    #: default of 4 (a dead BMC then takes 20 s instead of 2).
    retries: int = 1

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise ConfigError(f"ipmi: host {self.host!r} is not a host name or address")
        if self.username.startswith("-"):
            raise ConfigError(f"ipmi {self.host}: username may not start with '-'")
        if not 0 < self.port < 65536:
            raise ConfigError(f"ipmi {self.host}: port {self.port} outside 1..65535")
        if self.interface not in ("lanplus", "lan"):
            raise ConfigError(f"ipmi {self.host}: interface must be lanplus or lan")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"ipmi {self.host}: timeout_s must be > 0")
        if not 0 <= self.retries <= 10:
            raise ConfigError(f"ipmi {self.host}: retries must be in 0..10")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def retransmit_s(self) -> int:
        return max(1, math.ceil(self.timeout_s))

    @property
    def tries(self) -> int:
        return max(1, self.retries)

    @property
    def deadline_s(self) -> float:
        """How long one ipmitool run may take before it is killed: a lanplus session is up to
        eight exchanges (auth capabilities, cipher suites, open session, RAKP 1 and 3,
        privilege, the command, close), each retried; a guard against a hang, not a budget."""
        return self.retransmit_s * (self.tries + 1) * 8 + 5.0


def command(target: IpmiTarget, ipmitool: str = "ipmitool") -> list[str]:
    """ipmitool's argv for one DCMI power reading of `target`: no password in it (`-E`)."""
    argv = [ipmitool, "-I", target.interface, "-H", target.host, "-p", str(target.port)]
    if target.username:
        argv += ["-U", target.username]
    argv += ["-E", "-N", str(target.retransmit_s), "-R", str(target.tries)]
    # -v: ipmitool then says why a session failed (RAKP 2 HMAC invalid = wrong password).
    return [*argv, "-v", "dcmi", "power", "reading"]


def child_env(target: IpmiTarget, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: `base` (ours) with the password as IPMI_PASSWORD only, and C
    locale so the output is the English text `parse_dcmi_power` reads."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for name in _PASSWORD_ENV:
        env.pop(name, None)
    env["IPMI_PASSWORD"] = target.password
    env["LC_ALL"] = "C"
    return env


# --------------------------------------------------------------------------- pure parsing


@dataclass(frozen=True)
class DcmiPower:
    """What `ipmitool dcmi power reading` printed, in its units (W, s); None: not printed."""

    instantaneous_w: int
    minimum_w: int | None
    maximum_w: int | None
    average_w: int | None
    sampling_period_s: int | None
    is_activated: bool
    #: As printed, in ipmitool's local zone; for logs only (see the module's docstring).
    ipmi_timestamp: str | None


@dataclass(frozen=True)
class Skipped:
    """A value that was read (or asked for) but not used: what, and why."""

    what: str
    reason: str


@dataclass
class Parsed:
    readings: list[Reading] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    power: DcmiPower | None = None


def _watts(label: str, text: str) -> int | None:
    match = re.search(rf"^[ \t]*{label}[ \t]*:[ \t]*(\d+)[ \t]*Watts", text, re.M | re.I)
    return int(match.group(1)) if match else None


_INSTANT = r"Instantaneous power reading"
_STATE = re.compile(r"Power reading state is[ \t]*:[ \t]*(activated|deactivated)\b", re.I)
_PERIOD = re.compile(r"Sampling period[ \t]*:[ \t]*(\d+)[ \t]*Seconds", re.I)
_STAMP = re.compile(r"IPMI timestamp[ \t]*:[ \t]*(.*?)[ \t]*(?:Sampling period|$)", re.I | re.M)
_DCMI_FAILED = re.compile(r"DCMI request failed because:\s*(.*?)\s*\(([0-9a-fA-F]{1,2})\)")


def parse_dcmi_power(text: str, source: str, at_ms: int, *, host: str | None = None) -> Parsed:
    """ipmitool's `dcmi power reading` output -> POWER_W (the instantaneous reading), or no
    reading with a reason (deactivated, 0 W, 0xFFFF W). Output without an instantaneous reading
    and a reading state is an `IpmiError` naming `host` (or `source`)."""
    where = host or source
    instant = _watts(_INSTANT, text)
    state = _STATE.search(text)
    if instant is None or state is None:
        missing = "the instantaneous power reading" if instant is None else "the reading state"
        raise IpmiDataError(where, f"ipmitool printed no {missing}: {_excerpt(text)}")
    period = _PERIOD.search(text)
    stamp = _STAMP.search(text)
    power = DcmiPower(
        instantaneous_w=instant,
        minimum_w=_watts(r"Minimum during sampling period", text),
        maximum_w=_watts(r"Maximum during sampling period", text),
        average_w=_watts(r"Average power reading over sample period", text),
        sampling_period_s=int(period.group(1)) if period else None,
        is_activated=state.group(1).lower() == "activated",
        ipmi_timestamp=(stamp.group(1) or None) if stamp else None,
    )
    out = Parsed(power=power)
    what = "dcmi instantaneous power"
    if not power.is_activated:
        reason = f"power reading state is deactivated (the BMC gave {instant} W, not valid)"
        out.skipped.append(Skipped(what, reason))
    elif instant == 0:
        out.skipped.append(Skipped(what, "0 W with the reading activated: no power sensor"))
    elif instant >= _MAX_W:
        out.skipped.append(Skipped(what, f"{instant} W is DCMI's 'no measurement' (0xFFFF)"))
    else:
        out.readings.append(Reading(Quantity.POWER_W, float(instant), at_ms, source))
    return out


def _excerpt(text: str, limit: int = 200) -> str:
    """The last meaningful lines of ipmitool's output, for an error message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    noise = ("Loading IANA PEN Registry", "Running Get VSO Capabilities", "Discovered IPMB")
    kept = [ln for ln in lines if not ln.startswith(noise)]
    joined = " | ".join(kept) or "(nothing)"
    return joined if len(joined) <= limit else "..." + joined[-limit:]


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def interpret(
    returncode: int,
    stdout: str,
    stderr: str,
    *,
    host: str,
    source: str,
    at_ms: int,
) -> Parsed:
    """How ipmitool exited and what it printed -> `Parsed`, or the `IpmiError` it means."""
    if returncode == 0:
        return parse_dcmi_power(stdout, source, at_ms, host=host)
    both = f"{stdout}\n{stderr}"
    failed = _DCMI_FAILED.search(both)
    if failed:
        code = int(failed.group(2), 16)
        if code in NOT_SUPPORTED_CODES:
            skip = Skipped("dcmi power reading", f"{NOT_SUPPORTED_CODES[code]} (0x{code:02x})")
            return Parsed(skipped=[skip])
        raise IpmiError(host, f"DCMI request failed: {failed.group(1)} (0x{code:02x})")
    if "RAKP 2 HMAC is invalid" in both:
        raise IpmiAuthError(host, "the BMC refused the password (RAKP 2 HMAC is invalid)")
    if "unauthorized name" in both:
        raise IpmiAuthError(host, "the BMC does not know this username (unauthorized name)")
    if re.search(r"insufficient privilege|Authentication type .* not supported", both, re.I):
        raise IpmiAuthError(host, f"credentials refused: {_excerpt(both)}")
    if "Unable to establish" in both or "Get Auth Capabilities error" in both:
        raise IpmiError(
            host,
            "no IPMI session: BMC down or unreachable, wrong port, or its LAN channel is off"
            f" ({_excerpt(both)})",
        )
    raise IpmiError(host, f"ipmitool exited {returncode}: {_excerpt(both)}")


# --------------------------------------------------------------------------- the I/O


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def source_of(target: IpmiTarget) -> str:
    """The `Reading.source` of a DCMI power reading, e.g. `ipmi:bmc-7:623/dcmi`."""
    return f"ipmi:{target.address}/dcmi"


async def _run(target: IpmiTarget, ipmitool: str, deadline_s: float) -> tuple[int, str, str]:
    argv = command(target, ipmitool)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,  # no tty: ipmitool must never prompt
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(target),
        )
    except FileNotFoundError as e:
        raise IpmiError(target.address, f"{ipmitool} not found: {HOW_TO_INSTALL}") from e
    except PermissionError as e:
        raise IpmiError(target.address, f"{ipmitool} is not executable: {e.strerror}") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(), deadline_s)
    except TimeoutError as e:
        raise IpmiError(
            target.address, f"ipmitool gave no answer within {deadline_s:g} s (killed)"
        ) from e
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave it running
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    text = [_redact(b.decode("utf-8", "replace"), target.password) for b in (out, err)]
    return proc.returncode, text[0], text[1]


async def read_dcmi_power_parsed(
    target: IpmiTarget,
    *,
    ipmitool: str = "ipmitool",
    clock_ms: Callable[[], int] = _wall_clock_ms,
    deadline_s: float | None = None,
) -> Parsed:
    """`read_dcmi_power` with the parsed values and what was skipped and why."""
    code, out, err = await _run(target, ipmitool, deadline_s or target.deadline_s)
    return interpret(
        code, out, err, host=target.address, source=source_of(target), at_ms=clock_ms()
    )


async def read_dcmi_power(
    target: IpmiTarget,
    *,
    ipmitool: str = "ipmitool",
    clock_ms: Callable[[], int] = _wall_clock_ms,
    deadline_s: float | None = None,
) -> list[Reading]:
    """POWER_W of the node behind `target`'s BMC (DCMI instantaneous power), or [] when the
    BMC has no valid reading (logged with the reason)."""
    parsed = await read_dcmi_power_parsed(
        target, ipmitool=ipmitool, clock_ms=clock_ms, deadline_s=deadline_s
    )
    for skip in parsed.skipped:
        log.warning("ipmi %s %s skipped: %s", target.address, skip.what, skip.reason)
    return parsed.readings
