"""Prometheus sources -> `Reading`s: an exporter's /metrics text, or a Prometheus server's API.

Metrics read (anything else in the exposition is ignored, whatever its value):

- ENERGY_J, one Reading per RAPL counter, each with its own `source` suffix
  (`#rapl:package:intel-rapl:0`), so every counter wraps and resets on its own in
  `CounterRates`; **the caller sums their rates** (never their values). From node_exporter's
  `node_rapl_{package,dram}_joules_total` (or `node_rapl_joules_total{rapl_zone}` with
  `--collector.rapl.enable-zone-label`); `core` and `uncore` are inside `package`, `psys`
  contains `package` on client parts: none of them is read. Without node_exporter RAPL,
  Kepler 0.10's `kepler_node_cpu_joules_total{zone="package"|"dram"}`, one Reading per series.
  `wrap_at`: node_exporter does not export `max_energy_range_uj`, so it is None (a wrap is
  then a reset: one interval of gap, never a negative or huge energy) unless the caller gives
  it per powercap path in `rapl_wrap_j` (joules: `max_energy_range_uj` / 1e6). Kepler handles
  the wrap itself (its counters are its own sums), so its Readings never carry `wrap_at`.
- POWER_W, one Reading, from the first source present in this order (wall before CPU-only; the
  `source` suffix says which, so a consumer knows its scope):
  1. `ipmi_dcmi_power_consumption_watts` (#ipmi_dcmi; the BMC's PSU-input power; 0 W means no
     measurement: ipmi_exporter before 1.7 wrote 0 then);
  2. `ipmi_power_watts` (#ipmi_sensor): sensors named like a total ("Pwr Consumption",
     "System/Total Power"), else the sum of PSU input sensors ("PS1 Input Power", "Power In");
     other sets of sensors are ambiguous (a total beside its parts) and are not used;
  3. node_exporter hwmon `node_hwmon_power_average_watt` (else `node_hwmon_power_watt`) of an
     ACPI `power_meter` chip (#hwmon_power_meter); other hwmon power sensors (GPUs, CPU
     drivers) measure parts and are not used;
  4. Kepler `kepler_platform_watts` (#kepler_platform; BMC via Redfish);
  5. Scaphandre `scaph_host_power_microwatts` / 1e6 (#scaphandre_host; RAPL-based: CPU+DRAM);
  6. Kepler `kepler_node_cpu_watts{zone="package"|"dram"}`, summed (#kepler_node_cpu).
  A whole-node gauge given by several series (Kepler's PowerControl entries, one job twice) is
  their maximum: the whole contains its parts, a sum would count them twice.
- CPU_BUSY_S / CPU_TOTAL_S from `node_cpu_seconds_total{cpu,mode}`, summed over CPUs: busy is
  every mode but idle and iowait, total is every mode.
- NET_RX_BYTES / NET_TX_BYTES from `node_network_{receive,transmit}_bytes_total`, summed over
  devices not matching `net_exclude` (default `DEFAULT_NET_EXCLUDE`: loopback and the virtual
  devices containers and VMs hang off a host's NIC - veth, bridges, CNI tunnels - whose traffic
  the physical NIC counts again). Bonds and VLANs count their member NIC's bytes again too, but
  their names are site-specific: pass a pattern that excludes one side.

A sample's own timestamp is used when it has one (a summed quantity takes the newest of its
terms), else `at_ms`.

Bad input: text that does not parse, a counter that is NaN, infinite or negative, a power that
is infinite or negative, or one series given twice raises `PrometheusDataError` (a ValueError)
naming the source and the sample, and nothing of that scrape is returned: the caller
dead-letters it. A power gauge that is NaN is a sensor saying "no reading" (ipmi_exporter does
so) and is left out like an absent one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Timestamp

from pipeline.collect.readings import Quantity, Reading
from pipeline.errors import PipelineError
from pipeline.wallclock import wall_clock_ms

#: Devices whose bytes are not the node's own network traffic (see the module doc).
DEFAULT_NET_EXCLUDE = re.compile(
    r"lo|veth.*|docker\d+|br-.*|virbr\d+(-nic)?|cni\d+|flannel\..*|cali.*|vxlan\..*"
    r"|tunl\d+|kube-ipvs\d+|genev_sys_.*|ovs-system"
)
#: The largest body `scrape` reads (node_exporter on a big host is a few hundred KiB).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: The metric names this module reads; a server query asks for these only.
METRIC_NAMES = re.compile(
    r"node_rapl_\w+_joules_total|node_rapl_joules_total|node_hwmon_power_(average_)?watt"
    r"|node_hwmon_chip_names|node_cpu_seconds_total|node_network_(receive|transmit)_bytes_total"
    r"|kepler_node_cpu_joules_total|kepler_node_cpu_watts|kepler_platform_watts"
    r"|scaph_host_power_microwatts|ipmi_dcmi_power_consumption_watts|ipmi_power_watts"
)

_RAPL_ZONES = frozenset({"package", "dram"})
_RAPL_BY_NAME = re.compile(r"node_rapl_(\w+)_joules_total")
_IPMI_TOTAL = re.compile(r"(?i)pwr consumption|(system|total|sys)[ _]?power")
_IPMI_PSU_INPUT = re.compile(r"(?i)input power|power in\b|\bpin\b")
_GAUGES = frozenset(
    {
        "node_hwmon_power_average_watt",
        "node_hwmon_power_watt",
        "node_hwmon_chip_names",
        "kepler_node_cpu_watts",
        "kepler_platform_watts",
        "scaph_host_power_microwatts",
        "ipmi_dcmi_power_consumption_watts",
        "ipmi_power_watts",
    }
)


class PrometheusSourceError(PipelineError):
    """A Prometheus source could not be read or gave data this module cannot use."""


class PrometheusDataError(PrometheusSourceError, ValueError):
    """The source answered with garbage; the message names the source and what was wrong."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}; dead-letter this scrape and check the exporter")


class PrometheusUnavailableError(PrometheusSourceError):
    """The source did not answer (refused, timed out, HTTP error)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}; check the URL and that the source is up")


@dataclass(frozen=True)
class Sample:
    """One series' value: its metric name, labels, value and own timestamp (None: not given)."""

    name: str
    labels: Mapping[str, str]
    value: float
    at_ms: int | None = None


# ---------------------------------------------------------------------------- parsing


def readings_from_exposition(
    text: str,
    *,
    source: str,
    at_ms: int,
    openmetrics: bool | None = None,
    rapl_wrap_j: Mapping[str, float] | None = None,
    net_exclude: re.Pattern[str] = DEFAULT_NET_EXCLUDE,
) -> list[Reading]:
    """The Readings of one Prometheus text (or OpenMetrics) exposition received at `at_ms`.

    `openmetrics` None: decided by the text (OpenMetrics ends with `# EOF`). `rapl_wrap_j`:
    a RAPL counter's modulus in joules by its powercap `path` label. Raises
    `PrometheusDataError` (see the module doc).
    """
    samples = parse_exposition(text, source=source, openmetrics=openmetrics)
    return readings_from_samples(
        samples, source=source, at_ms=at_ms, rapl_wrap_j=rapl_wrap_j, net_exclude=net_exclude
    )


def parse_exposition(text: str, *, source: str, openmetrics: bool | None = None) -> list[Sample]:
    """The samples of the metrics this module reads (`METRIC_NAMES`), others dropped."""
    if openmetrics is None:
        openmetrics = text.rstrip().endswith("# EOF")
    parse = openmetrics_families if openmetrics else text_families
    samples: list[Sample] = []
    try:
        for family in parse(text):
            for s in family.samples:
                if METRIC_NAMES.fullmatch(s.name):
                    samples.append(Sample(s.name, dict(s.labels), float(s.value), _ms(s.timestamp)))
    # The parsers raise ValueError on most garbage, and other errors on some: all mean the same.
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        kind = "an OpenMetrics" if openmetrics else "a Prometheus text"
        raise PrometheusDataError(source, f"not {kind} exposition: {exc}") from None
    return samples


def _ms(timestamp: object) -> int | None:
    if timestamp is None:
        return None
    if isinstance(timestamp, Timestamp):
        return timestamp.sec * 1000 + timestamp.nsec // 1_000_000
    if isinstance(timestamp, int | float) and math.isfinite(timestamp):
        return round(timestamp * 1000)
    raise ValueError(f"bad timestamp {timestamp!r}")


def readings_from_samples(
    samples: Iterable[Sample],
    *,
    source: str,
    at_ms: int,
    rapl_wrap_j: Mapping[str, float] | None = None,
    net_exclude: re.Pattern[str] = DEFAULT_NET_EXCLUDE,
) -> list[Reading]:
    """Map samples (from an exposition or a server) to Readings (see the module doc)."""
    by_name: dict[str, list[Sample]] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for s in samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        if key in seen:
            raise PrometheusDataError(source, f"{_show(s)} is given twice")
        seen.add(key)
        _check(s, source)
        by_name.setdefault(s.name, []).append(s)
    wrap = dict(rapl_wrap_j or {})
    readings = _energy(by_name, source, at_ms, wrap)
    power = _power(by_name, source, at_ms)
    if power is not None:
        readings.append(power)
    readings += _cpu(by_name, source, at_ms)
    readings += _net(by_name, source, at_ms, net_exclude)
    return readings


def _check(s: Sample, source: str) -> None:
    if s.name in _GAUGES:
        bad = math.isinf(s.value) or s.value < 0
    else:
        bad = not math.isfinite(s.value) or s.value < 0
    if bad:
        kind = "gauge" if s.name in _GAUGES else "counter"
        raise PrometheusDataError(source, f"{_show(s)} = {s.value!r} is not a valid {kind}")


def _show(s: Sample) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
    return f"{s.name}{{{labels}}}"


def _at(terms: Iterable[Sample], at_ms: int) -> int:
    stamps = [s.at_ms for s in terms if s.at_ms is not None]
    return max(stamps) if stamps else at_ms


# ---------------------------------------------------------------------------- quantities


def _energy(
    by_name: Mapping[str, list[Sample]], source: str, at_ms: int, wrap: Mapping[str, float]
) -> list[Reading]:
    rapl: list[tuple[str, Sample]] = []
    for name, series in by_name.items():
        named = _RAPL_BY_NAME.fullmatch(name)
        for s in series:
            zone = s.labels.get("rapl_zone") if name == "node_rapl_joules_total" else None
            zone = zone or (named.group(1) if named else None)
            if zone in _RAPL_ZONES:
                rapl.append((zone, s))
    readings = []
    for zone, s in rapl:
        path = s.labels.get("path", "")
        where = path.rsplit("/", 1)[-1] or s.labels.get("index", "")
        wrap_at = wrap.get(path)
        readings.append(
            Reading(
                Quantity.ENERGY_J,
                s.value,
                _at([s], at_ms),
                f"{source}#rapl:{zone}:{where}",
                wrap_at=wrap_at,
            )
        )
    if readings:
        return readings
    for s in by_name.get("kepler_node_cpu_joules_total", []):
        zone = s.labels.get("zone", "")
        if zone in _RAPL_ZONES:
            where = s.labels.get("path", "").rsplit("/", 1)[-1]
            suffix = f"#kepler:{zone}" + (f":{where}" if where else "")
            readings.append(Reading(Quantity.ENERGY_J, s.value, _at([s], at_ms), source + suffix))
    return readings


def _power(by_name: Mapping[str, list[Sample]], source: str, at_ms: int) -> Reading | None:
    for label, pick, divisor, is_sum in _POWER_PRECEDENCE:
        terms = pick(by_name)
        if terms:
            values = [s.value / divisor for s in terms]
            value = sum(values) if is_sum else max(values)
            return Reading(Quantity.POWER_W, value, _at(terms, at_ms), f"{source}#{label}")
    return None


def _live(by_name: Mapping[str, list[Sample]], name: str) -> list[Sample]:
    """The series of `name` that have a reading (NaN: the sensor has none)."""
    return [s for s in by_name.get(name, []) if not math.isnan(s.value)]


def _ipmi_total(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    return [s for s in _live(by_name, "ipmi_power_watts") if _IPMI_TOTAL.search(_sensor(s))]


def _ipmi_psu_inputs(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    return [s for s in _live(by_name, "ipmi_power_watts") if _IPMI_PSU_INPUT.search(_sensor(s))]


def _sensor(s: Sample) -> str:
    return s.labels.get("name", "")


def _hwmon_meter(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    chips = by_name.get("node_hwmon_chip_names", [])
    names = {s.labels.get("chip", ""): s.labels.get("chip_name", "") for s in chips}

    def is_meter(s: Sample) -> bool:
        chip = s.labels.get("chip", "")
        return "power_meter" in (names.get(chip) or chip)

    average = {_hwmon_key(s): s for s in _live(by_name, "node_hwmon_power_average_watt")}
    now = {_hwmon_key(s): s for s in _live(by_name, "node_hwmon_power_watt")}
    chosen = {**now, **average}  # a sensor's own average over its interval, else its input
    return [s for s in chosen.values() if is_meter(s)]


def _hwmon_key(s: Sample) -> tuple[str, str]:
    return (s.labels.get("chip", ""), s.labels.get("sensor", ""))


def _kepler_cpu(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    return [
        s for s in _live(by_name, "kepler_node_cpu_watts") if s.labels.get("zone") in _RAPL_ZONES
    ]


def _ipmi_dcmi(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    # 0 W is "no measurement" (ipmi_exporter < 1.7 wrote 0 when DCMI had none)
    return [s for s in _live(by_name, "ipmi_dcmi_power_consumption_watts") if s.value > 0]


def _kepler_platform(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    return _live(by_name, "kepler_platform_watts")


def _scaphandre(by_name: Mapping[str, list[Sample]]) -> list[Sample]:
    return _live(by_name, "scaph_host_power_microwatts")


_Pick = Callable[[Mapping[str, list[Sample]]], list[Sample]]
#: (source suffix, picker, divisor to W, sum the terms (else their max)), wall power first.
_POWER_PRECEDENCE: tuple[tuple[str, _Pick, float, bool], ...] = (
    ("ipmi_dcmi", _ipmi_dcmi, 1.0, False),
    ("ipmi_sensor", _ipmi_total, 1.0, False),
    ("ipmi_sensor", _ipmi_psu_inputs, 1.0, True),
    ("hwmon_power_meter", _hwmon_meter, 1.0, False),
    ("kepler_platform", _kepler_platform, 1.0, False),
    ("scaphandre_host", _scaphandre, 1e6, False),
    ("kepler_node_cpu", _kepler_cpu, 1.0, True),
)


def _cpu(by_name: Mapping[str, list[Sample]], source: str, at_ms: int) -> list[Reading]:
    series = by_name.get("node_cpu_seconds_total", [])
    if not series:
        return []
    busy = [s for s in series if s.labels.get("mode") not in ("idle", "iowait")]
    at = _at(series, at_ms)
    return [
        Reading(Quantity.CPU_BUSY_S, sum(s.value for s in busy), at, source),
        Reading(Quantity.CPU_TOTAL_S, sum(s.value for s in series), at, source),
    ]


def _net(
    by_name: Mapping[str, list[Sample]], source: str, at_ms: int, exclude: re.Pattern[str]
) -> list[Reading]:
    readings = []
    for name, quantity in (
        ("node_network_receive_bytes_total", Quantity.NET_RX_BYTES),
        ("node_network_transmit_bytes_total", Quantity.NET_TX_BYTES),
    ):
        series = by_name.get(name, [])
        kept = [s for s in series if not exclude.fullmatch(s.labels.get("device", ""))]
        if series:
            readings.append(
                Reading(quantity, float(sum(s.value for s in kept)), _at(series, at_ms), source)
            )
    return readings


# ---------------------------------------------------------------------------- I/O

_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


async def scrape(
    url: str,
    *,
    timeout_s: float,
    session: aiohttp.ClientSession | None = None,
    source: str | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    rapl_wrap_j: Mapping[str, float] | None = None,
    net_exclude: re.Pattern[str] = DEFAULT_NET_EXCLUDE,
) -> list[Reading]:
    """GET an exporter's /metrics and return its Readings (`source`: `prometheus:<url>`).

    Samples without their own timestamp get `clock()` at the moment the answer arrived.
    """
    source = source or f"prometheus:{url}"
    body, content_type, received_ms = await _get(url, {}, timeout_s, session, source, clock)
    if content_type.startswith("text/html"):
        raise PrometheusDataError(source, "the answer is an HTML page: is this the /metrics URL?")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PrometheusDataError(source, f"the body is not UTF-8: {exc}") from None
    return readings_from_exposition(
        text,
        source=source,
        at_ms=received_ms,
        openmetrics="openmetrics" in content_type,
        rapl_wrap_j=rapl_wrap_j,
        net_exclude=net_exclude,
    )


async def query_server(
    base_url: str,
    instance: str,
    *,
    timeout_s: float,
    session: aiohttp.ClientSession | None = None,
    source: str | None = None,
    lookback_s: int = 120,
    job: str | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    rapl_wrap_j: Mapping[str, float] | None = None,
    net_exclude: re.Pattern[str] = DEFAULT_NET_EXCLUDE,
) -> list[Reading]:
    """The same Readings for target `instance`, from a Prometheus server's HTTP API.

    One instant query of a range selector, `{__name__=~"...",instance="..."}[lookback_s]`: it
    returns the raw samples with the times they were scraped (a plain instant query would stamp
    every value with the query's time, so a counter read twice between two scrapes would look
    flat, then jump). Each series' newest sample is used; a target scraped less often than
    `lookback_s` is absent. Give `job` when several jobs scrape the same instance (else their
    series would be two Readings of one counter). `source`: `prometheus:<base_url>/<instance>`.
    """
    source = source or f"prometheus:{base_url.rstrip('/')}/{instance}"
    # a backtick string is raw in PromQL: the pattern's backslashes stay as they are
    matchers = [f"__name__=~`{METRIC_NAMES.pattern}`", f"instance={_promql_string(instance)}"]
    if job is not None:
        matchers.append(f"job={_promql_string(job)}")
    query = f"{{{','.join(matchers)}}}[{int(lookback_s)}s]"
    url = f"{base_url.rstrip('/')}/api/v1/query"
    body, _, received_ms = await _get(url, {"query": query}, timeout_s, session, source, clock)
    samples = samples_from_query_answer(body, source)
    return readings_from_samples(
        samples, source=source, at_ms=received_ms, rapl_wrap_j=rapl_wrap_j, net_exclude=net_exclude
    )


def _promql_string(value: str) -> str:
    """`value` as a double-quoted PromQL string literal."""
    return json.dumps(value)


def samples_from_query_answer(body: bytes, source: str) -> list[Sample]:
    """The newest sample of every series of a `/api/v1/query` matrix answer."""
    try:
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise ValueError(f"status {answer.get('status')!r}: {answer.get('error')!r}")
        data = answer["data"]
        if data["resultType"] != "matrix":
            raise ValueError(f"resultType {data['resultType']!r}, expected 'matrix'")
        samples = []
        for series in data["result"]:
            labels: dict[str, Any] = dict(series["metric"])
            name = str(labels.pop("__name__"))
            values = series["values"]
            if not values:
                continue
            ts, value = max(values, key=lambda tv: float(tv[0]))
            str_labels = {str(k): str(v) for k, v in labels.items()}
            samples.append(Sample(name, str_labels, float(value), round(float(ts) * 1000)))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise PrometheusDataError(source, f"not a Prometheus API matrix answer: {exc}") from None
    return samples


async def _get(
    url: str,
    params: Mapping[str, str],
    timeout_s: float,
    session: aiohttp.ClientSession | None,
    source: str,
    clock: Callable[[], int],
) -> tuple[bytes, str, int]:
    """(body, content type, clock() on arrival) of a GET; errors as PrometheusSourceError."""
    own = session is None
    client = session or aiohttp.ClientSession()
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with client.get(
            url, params=params, timeout=timeout, headers={"Accept": _ACCEPT}
        ) as response:
            body = await response.content.read(MAX_BODY_BYTES + 1)
            received_ms = clock()
            if response.status != 200:
                snippet = body[:200].decode("utf-8", "replace")
                raise PrometheusUnavailableError(source, f"HTTP {response.status}: {snippet}")
            if len(body) > MAX_BODY_BYTES:
                raise PrometheusDataError(source, f"the body is over {MAX_BODY_BYTES} bytes")
            return body, response.headers.get("Content-Type", ""), received_ms
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise PrometheusUnavailableError(source, f"GET {url} failed: {reason}") from None
    finally:
        if own:
            await client.close()
